"""Ed25519 signatures with the openssl command line (OpenSSL >= 3.0), as firmware_scripts/lib/signing.sh.

The kiosk signs its exports and `fleet pool` checks them. Both call `openssl` rather than a Python
crypto package, so the kiosk's small dependency set stays as it is: Raspberry Pi OS ships OpenSSL 3
(the firmware already relies on it). openssl's one-shot Ed25519 (`-rawin`) needs files, not pipes,
so data passes through a private temporary folder.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
import subprocess
import tempfile
from pathlib import Path

OPENSSL_TIMEOUT_S = 30
# An Ed25519 public key in DER (SubjectPublicKeyInfo) is this prefix and the key's 32 bytes.
ED25519_DER_PREFIX = bytes.fromhex("302a300506032b6570032100")
PEM_PUBLIC_KEY = re.compile(rb"-----BEGIN PUBLIC KEY-----(.+?)-----END PUBLIC KEY-----", re.DOTALL)


class SigningError(RuntimeError):
    """openssl is missing, too old or failed, or a key is not Ed25519; the message says which."""


def make_private_key() -> bytes:
    """A new Ed25519 private key in PEM; the caller stores it (it is never written here)."""
    return _openssl(["genpkey", "-algorithm", "ed25519"])


def public_key(private_key: Path) -> bytes:
    """The PEM public half of the private key in `private_key`."""
    return _openssl(["pkey", "-in", str(private_key), "-pubout"])


def fingerprint(public_pem: bytes) -> str:
    """The key's "SHA256:<hex>" (sha256 of its DER), as key_fingerprint in signing.sh prints it."""
    match = PEM_PUBLIC_KEY.search(public_pem)
    try:
        der = base64.b64decode(b"".join(match.group(1).split()), validate=True) if match else b""
    except binascii.Error:
        der = b""
    if len(der) != len(ED25519_DER_PREFIX) + 32 or not der.startswith(ED25519_DER_PREFIX):
        raise SigningError("the public key is not an Ed25519 key in PEM (what `openssl pkey -pubout` writes)")
    return "SHA256:" + hashlib.sha256(der).hexdigest()


def sign(private_key: Path, data: bytes) -> bytes:
    """The 64-byte Ed25519 signature of `data` by the key in `private_key`."""
    with tempfile.TemporaryDirectory() as tmp:
        message, signature = Path(tmp, "message"), Path(tmp, "signature")
        message.write_bytes(data)
        args = ["pkeyutl", "-sign", "-rawin", "-inkey", str(private_key)]
        _openssl([*args, "-in", str(message), "-out", str(signature)])
        return signature.read_bytes()


def verify(public_pem: bytes, data: bytes, signature: bytes) -> bool:
    """Whether `signature` is the Ed25519 signature of `data` by the key `public_pem`."""
    fingerprint(public_pem)  # refuse anything but an Ed25519 key before openssl reads it
    with tempfile.TemporaryDirectory() as tmp:
        paths = {name: Path(tmp, name) for name in ("key", "message", "signature")}
        for name, content in zip(paths, (public_pem, data, signature), strict=True):
            paths[name].write_bytes(content)
        args = ["pkeyutl", "-verify", "-pubin", "-inkey", str(paths["key"]), "-rawin"]
        done = _run([*args, "-in", str(paths["message"]), "-sigfile", str(paths["signature"])])
    if done.returncode == 0:
        return True
    if b"Signature Verification Failure" in done.stdout:
        return False
    raise SigningError(f"openssl could not check the signature: {_complaint(done)}")


def _openssl(args: list[str]) -> bytes:
    """stdout of `openssl ARGS`, or SigningError with openssl's own complaint."""
    done = _run(args)
    if done.returncode != 0:
        raise SigningError(f"openssl {args[0]} failed: {_complaint(done)}")
    return done.stdout


def _run(args: list[str]) -> subprocess.CompletedProcess[bytes]:
    check_openssl()
    return _call(["openssl", *args])


@functools.cache
def check_openssl() -> str:
    """The openssl version, once per process; SigningError if it is missing or older than 3.0."""
    version = _call(["openssl", "version"]).stdout.decode(errors="replace").strip()
    found = re.match(r"OpenSSL (\d+)\.", version)
    if not found or int(found.group(1)) < 3:
        raise SigningError(
            f"Ed25519 signing needs OpenSSL 3.0 or later, found {version!r}: install the openssl "
            "package of Raspberry Pi OS 12 (or later)"
        )
    return version


def _call(command: list[str]) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(command, capture_output=True, timeout=OPENSSL_TIMEOUT_S, check=False)
    except FileNotFoundError as e:
        raise SigningError("the openssl command is not installed: install the openssl package") from e
    except subprocess.TimeoutExpired as e:
        raise SigningError(f"openssl {command[1]} did not finish in {OPENSSL_TIMEOUT_S} s") from e


def _complaint(done: subprocess.CompletedProcess[bytes]) -> str:
    lines = (done.stderr or done.stdout).decode(errors="replace").strip().splitlines()
    return lines[0] if lines else f"exit status {done.returncode}"
