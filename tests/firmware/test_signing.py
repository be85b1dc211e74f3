"""Signed bundles: build-bundle.sh signs, provision.sh and update.sh run nothing from a bundle whose
Ed25519 signature does not verify with the device's trusted key."""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.firmware.conftest import (
    SigningKey,
    build_bundle,
    make_signing_key,
    provision_rooted,
    repack,
    run_local_build,
    run_script,
    script_env,
    signed_rebuild,
    trusted_pubkey,
)


def _inject(canary: Path) -> Callable[[Path], None]:
    """A mutation that makes the release's own code write `canary` when the installer imports it."""

    def mutate(top: Path) -> None:
        (wheel,) = (top / "wheels").glob("pneumoedge-*.whl")
        with zipfile.ZipFile(wheel) as old:
            files = {name: old.read(name) for name in old.namelist()}
        payload = f"open({str(canary)!r}, 'w').write('ran')\n".encode()
        files["edge/bundle.py"] = payload + files["edge/bundle.py"]
        with zipfile.ZipFile(wheel, "w") as new:
            for name, data in files.items():
                new.writestr(name, data)

    return mutate


def _installed_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and "var/log" not in str(p)]


def test_build_signs_the_bundle_with_the_office_key(tiny_dep_bundle: Path, signing_key: SigningKey) -> None:
    verified = subprocess.run(
        [
            "openssl",
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            signing_key.public,
            "-rawin",
            "-in",
            f"{tiny_dep_bundle}.sha256",
            "-sigfile",
            f"{tiny_dep_bundle}.sig",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_build_without_a_signing_key_is_refused(
    tmp_path: Path, tiny_bundle_int8, tiny_wheelhouse: tuple[Path, Path]
) -> None:
    wheels, requirements = tiny_wheelhouse
    env = script_env(tmp_path, SIGNING_KEY="")
    result = run_local_build(
        env, tiny_bundle_int8.root, tmp_path / "dist", wheels, "--requirements", requirements
    )
    assert result.returncode != 0
    assert "no signing key" in result.stderr
    assert not list((tmp_path / "dist").glob("*.tar.gz"))


@pytest.mark.parametrize("signer", ["another key", "no signature", "stale signature"])
def test_a_tampered_bundle_runs_nothing_on_provisioning(
    signer: str, tiny_dep_bundle: Path, tmp_path: Path, signing_key: SigningKey
) -> None:
    """The attack in issue 10: change the code, recompute SHA256SUMS and the .sha256, (re)sign."""
    canary = tmp_path / "injected-code-ran"
    sign_with = {
        "another key": make_signing_key(tmp_path / "attacker").private,
        "no signature": None,
        "stale signature": signing_key.private,  # its .sig is replaced by the genuine bundle's below
    }[signer]
    bad = repack(tiny_dep_bundle, tmp_path / "bad.tar.gz", _inject(canary), resum=True, sign_with=sign_with)
    if signer == "stale signature":
        shutil.copy(f"{tiny_dep_bundle}.sig", f"{bad}.sig")
    root = tmp_path / "root"
    result = run_script(
        "provision.sh", "--root", root, "--pubkey", trusted_pubkey(), bad, env=script_env(tmp_path)
    )
    assert result.returncode != 0
    assert "Nothing was installed" in result.stderr
    assert (
        "not signed" if signer == "no signature" else "not valid for this device's trusted key"
    ) in result.stderr
    assert not canary.exists(), "code from an unverified bundle ran"
    assert _installed_files(root) == []


def test_a_bundle_signed_with_another_key_is_refused_by_update(
    tiny_dep_bundles: dict[str, Path], tmp_path: Path
) -> None:
    root, env = provision_rooted(tmp_path, tiny_dep_bundles["1.0.0"])
    canary = tmp_path / "injected-code-ran"
    attacker = make_signing_key(tmp_path / "attacker")
    bad = signed_rebuild(tiny_dep_bundles["2.0.0"], tmp_path / "bad.tar.gz", _inject(canary), attacker)
    result = run_script("update.sh", "--root", root, bad, env=env)
    assert result.returncode != 0
    assert "not valid for this device's trusted key" in result.stderr
    assert not canary.exists()
    assert (root / "opt/pneumoedge/current").readlink() == Path("releases/1.0.0")
    assert not (root / "opt/pneumoedge/releases/2.0.0").exists()


def test_provisioning_installs_the_trusted_key_and_reuses_it(tiny_dep_bundle: Path, tmp_path: Path) -> None:
    root, env = provision_rooted(tmp_path, tiny_dep_bundle)
    installed = root / "etc/pneumoedge/bundle-signing.pub"
    assert installed.read_bytes() == trusted_pubkey().read_bytes()
    assert oct(installed.stat().st_mode & 0o777) == "0o644"
    again = run_script("provision.sh", "--root", root, "--no-kiosk", tiny_dep_bundle, env=env)
    assert again.returncode == 0, again.stderr
    assert "trusted signing key SHA256:" in again.stderr


def test_provisioning_needs_an_ed25519_public_key(tiny_dep_bundle: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    env = script_env(tmp_path)
    missing = run_script("provision.sh", "--root", root, tiny_dep_bundle, env=env)
    assert missing.returncode != 0 and "--pubkey" in missing.stderr
    rsa = tmp_path / "rsa.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "rsa", "-out", rsa], check=True, capture_output=True)
    subprocess.run(["openssl", "pkey", "-in", rsa, "-pubout", "-out", tmp_path / "rsa.pub"], check=True)
    wrong = run_script(
        "provision.sh", "--root", root, "--pubkey", tmp_path / "rsa.pub", tiny_dep_bundle, env=env
    )
    assert wrong.returncode != 0 and "not an Ed25519 public key" in wrong.stderr
    assert _installed_files(root) == []


def test_a_signed_rebuild_installs(
    tmp_path: Path, tiny_bundle_int8, tiny_wheelhouse: tuple[Path, Path]
) -> None:
    """A bundle signed with a passphrase-less key given by --signing-key, not the environment."""
    office = make_signing_key(tmp_path / "office")
    wheels, requirements = tiny_wheelhouse
    env = script_env(tmp_path, SIGNING_KEY="")
    tarball = build_bundle(
        env,
        tiny_bundle_int8.root,
        tmp_path / "dist",
        "1.0.0",
        wheels,
        "--requirements",
        requirements,
        "--signing-key",
        office.private,
    )
    result = run_script(
        "provision.sh", "--root", tmp_path / "root", "--pubkey", office.public, "--no-kiosk", tarball, env=env
    )
    assert result.returncode == 0, result.stderr
    assert "signature verified" in result.stderr
