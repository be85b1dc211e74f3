"""Fixtures for the firmware script tests: run the real scripts against temporary roots.

Nothing here touches the real system: provisioning goes to `--root` trees, updates to a prefix
under tmp_path with a stand-in `systemctl` that (re)starts the real kiosk (or, for the quick tests,
tests/firmware/fake_kiosk.py), flashing to regular files behind a fake /sys/block tree. Bundles are
signed with a throwaway Ed25519 key made for the session (`signing_key`).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edge.bundle import Bundle

REPO = Path(__file__).resolve().parents[2]
FIRMWARE = REPO / "firmware_scripts"
FAKE_KIOSK = Path(__file__).with_name("fake_kiosk.py")
SCRIPT_TIMEOUT_S = 300
#: Where `make wheelhouse` puts the kiosk's wheels for this machine (pip download -r requirements-edge.txt).
DEFAULT_WHEELHOUSE = Path.home() / ".cache" / "pneumoedge" / "wheelhouse"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test here `firmware`, so the developer loop (`make test-dev`) leaves the rehearsals out."""
    for item in items:
        if Path(__file__).parent in item.path.parents:
            item.add_marker(pytest.mark.firmware)


@dataclass(frozen=True)
class SigningKey:
    """An Ed25519 key pair in PEM, as the office makes it with openssl (docs/deployment.md)."""

    private: Path
    public: Path


def make_signing_key(folder: Path, name: str = "pneumoedge-signing") -> SigningKey:
    """Generate a key pair under `folder` with the openssl command line."""
    folder.mkdir(parents=True, exist_ok=True)
    key = SigningKey(folder / f"{name}.key", folder / f"{name}.pub")
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", key.private], check=True)
    subprocess.run(["openssl", "pkey", "-in", key.private, "-pubout", "-out", key.public], check=True)
    return key


def sign_bundle(tarball: Path, key: Path) -> Path:
    """Write the tarball's .sha256 and its .sig made with `key`, as build-bundle.sh does."""
    digest = subprocess.run(["sha256sum", tarball.name], cwd=tarball.parent, capture_output=True, check=True)
    sidecar = Path(f"{tarball}.sha256")
    sidecar.write_bytes(digest.stdout)
    subprocess.run(
        ["openssl", "pkeyutl", "-sign", "-rawin", "-inkey", key, "-in", sidecar, "-out", f"{tarball}.sig"],
        check=True,
    )
    return tarball


def trusted_pubkey() -> Path:
    """The public half of the session's signing key (see the `signing_key` fixture)."""
    return Path(os.environ["SIGNING_KEY"]).with_suffix(".pub")


@pytest.fixture(scope="session", autouse=True)
def signing_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SigningKey]:
    """The session's office key: build-bundle.sh signs with it ($SIGNING_KEY), devices trust it."""
    key = make_signing_key(tmp_path_factory.mktemp("signing-key"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SIGNING_KEY", str(key.private))
        yield key


def base_python() -> str:
    """The interpreter behind this test run's venv: what a device's /usr/bin/python3 would be."""
    return str(getattr(sys, "_base_executable", sys.executable))


def script_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """An environment that keeps every script's scratch, logs and state under tmp_path."""
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "PNEUMOEDGE_CONFIG"}
    env.update(
        TMPDIR=str(scratch),
        XDG_STATE_HOME=str(tmp_path / "state"),
        BUILD_PYTHON=sys.executable,
        DEVICE_PYTHON=base_python(),
        PIP_NO_INDEX="1",  # the scripts must never need a package index in tests
    )
    env.update(overrides)
    return env


def run_script(
    name: str, *args: str | Path, env: dict[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run firmware_scripts/NAME with ARGS; return the finished process (never raises on failure)."""
    return subprocess.run(
        [str(FIRMWARE / name), *map(str, args)],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT_S,
        check=False,
    )


def run_local_build(
    env: dict[str, str], model: Path, output: Path, wheelhouse: Path, *extra: str | Path
) -> subprocess.CompletedProcess[str]:
    """build-bundle.sh for this machine from a local wheelhouse, finished or refused."""
    return run_script(
        "build-bundle.sh",
        "--target",
        "local",
        "--model",
        model,
        "--output",
        output,
        "--wheelhouse",
        wheelhouse,
        "--allow-dirty",  # a developer's checkout under test: its tracked files' working copies
        *extra,
        env=env,
    )


def build_bundle(
    env: dict[str, str], model: Path, output: Path, version: str, wheelhouse: Path, *extra: str
) -> Path:
    """build-bundle.sh for this machine from a local wheelhouse; return the tarball."""
    result = run_local_build(env, model, output, wheelhouse, "--version", version, *extra)
    assert result.returncode == 0, result.stderr
    tarball = Path(result.stdout.strip().splitlines()[-1])
    assert tarball.is_file()
    return tarball


def repack(
    tarball: Path,
    out: Path,
    mutate: Callable[[Path], None],
    resum: bool = False,
    sign_with: Path | None = None,
) -> Path:
    """Unpack a bundle, let `mutate` change its folder, pack it again as `out` (no .sha256 file).

    `resum=True` rewrites SHA256SUMS after the change, as a careless or hostile builder would;
    `sign_with` a private key also writes the .sha256 and the .sig, as build-bundle.sh would.
    """
    work = out.parent / f".{out.name}.work"
    with tarfile.open(tarball) as tar:
        tar.extractall(work, filter="data")
    (top,) = work.iterdir()
    mutate(top)
    if resum:
        files = sorted(p for p in top.rglob("*") if p.is_file() and p.name != "SHA256SUMS")
        sums = subprocess.run(
            ["sha256sum", *[str(p.relative_to(top)) for p in files]],
            cwd=top,
            capture_output=True,
            text=True,
            check=True,
        )
        (top / "SHA256SUMS").write_text(sums.stdout)
    with tarfile.open(out, "w:gz") as tar:
        tar.add(top, arcname=top.name)
    shutil.rmtree(work)
    return sign_bundle(out, sign_with) if sign_with else out


def signed_rebuild(tarball: Path, out: Path, mutate: Callable[[Path], None], key: SigningKey) -> Path:
    """`tarball` changed by `mutate`, re-summed and signed with `key`: a bundle whose checksums and
    signature hold, so only the scripts' other checks can refuse it."""
    return repack(tarball, out, mutate, resum=True, sign_with=key.private)


@pytest.fixture(scope="session")
def tiny_wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A wheelhouse with one tiny pure-Python wheel built offline and numpy, and a requirements file.

    Lets the quick tests build and provision real bundles without the kiosk's 50 MB of wheels. numpy
    is there because the installer verifies the model with the release's edge.bundle, which needs it.
    """
    root = tmp_path_factory.mktemp("tiny-wheelhouse")
    project = root / "project"
    (project / "pneumoedge_fixture_dep").mkdir(parents=True)
    (project / "pneumoedge_fixture_dep" / "__init__.py").write_text('VALUE = "installed from the bundle"\n')
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "pneumoedge-fixture-dep"\nversion = "1.0"\n'
    )
    wheels = root / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            str(wheels),
            str(project),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    numpy = add_numpy_wheel(wheels)
    add_build_backend(wheels)
    requirements = root / "requirements.txt"
    requirements.write_text(f"pneumoedge-fixture-dep==1.0\n{numpy}\n")
    return wheels, requirements


def add_numpy_wheel(wheels: Path) -> str:
    """Put this Python's numpy wheel into `wheels`: from the kiosk wheelhouse, else pip's index or cache.

    Returns the requirement (numpy==version); skips the test when no wheel can be found offline.
    """
    version = importlib.metadata.version("numpy")
    requirement = f"numpy=={version}"
    kiosk_wheels = Path(os.environ.get("PNEUMOEDGE_WHEELHOUSE", DEFAULT_WHEELHOUSE))
    source = (
        ["--no-index", "--find-links", str(kiosk_wheels)]
        if any(kiosk_wheels.glob(f"numpy-{version}-*.whl"))
        else []
    )
    download = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"]
    found = subprocess.run(
        [*download, "-d", str(wheels), *source, requirement],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if found.returncode != 0:
        pytest.skip(
            f"no {requirement} wheel available offline (make wheelhouse): {found.stderr.strip()[-300:]}"
        )
    return requirement


def add_build_backend(wheels: Path) -> None:
    """Put the build backend (requirements-build.txt) into `wheels`, so build-bundle.sh --wheelhouse
    can build the pneumoedge wheel offline: from the kiosk wheelhouse, else pip's index or cache."""
    kiosk_wheels = Path(os.environ.get("PNEUMOEDGE_WHEELHOUSE", DEFAULT_WHEELHOUSE))
    download = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "-d", str(wheels)]
    download += ["-r", str(REPO / "requirements-build.txt")]
    for source in (["--no-index", "--find-links", str(kiosk_wheels)], []):
        found = subprocess.run([*download, *source], capture_output=True, text=True, timeout=300, check=False)
        if found.returncode == 0:
            return
    pytest.skip(f"no build backend wheels offline (make wheelhouse): {found.stderr.strip()[-300:]}")


@pytest.fixture(scope="session")
def tiny_dep_bundle(
    tmp_path_factory: pytest.TempPathFactory, tiny_wheelhouse: tuple[Path, Path], tiny_bundle_int8: Bundle
) -> Path:
    """A real bundle (tiny model, one tiny wheel, no TFLite runtime) for provisioning tests."""
    tmp = tmp_path_factory.mktemp("tiny-dep-bundle")
    wheels, requirements = tiny_wheelhouse
    env = script_env(tmp)
    return build_bundle(
        env, tiny_bundle_int8.root, tmp / "dist", "1.0.0", wheels, "--requirements", requirements
    )


@pytest.fixture(scope="session")
def tiny_dep_bundles(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_wheelhouse: tuple[Path, Path],
    tiny_bundle_float: Bundle,
    tiny_dep_bundle: Path,
) -> dict[str, Path]:
    """Tiny-wheel bundles 1.0.0 (int8 model), 2.0.0 and 3.0.0 (float model)."""
    tmp = tmp_path_factory.mktemp("tiny-dep-bundles")
    wheels, requirements = tiny_wheelhouse
    env = script_env(tmp)
    bundles = {"1.0.0": tiny_dep_bundle}
    for version in ("2.0.0", "3.0.0"):
        bundles[version] = build_bundle(
            env, tiny_bundle_float.root, tmp / "dist", version, wheels, "--requirements", requirements
        )
    return bundles


def provision_rooted(tmp_path: Path, tarball: Path) -> tuple[Path, dict[str, str]]:
    """provision.sh --root into tmp_path/root, trusting the session key; return the root and env."""
    root = tmp_path / "root"
    env = script_env(tmp_path)
    provisioned = run_script(
        "provision.sh", "--root", root, "--no-kiosk", "--pubkey", trusted_pubkey(), tarball, env=env
    )
    assert provisioned.returncode == 0, provisioned.stderr
    return root, env


@pytest.fixture(scope="session")
def edge_wheelhouse() -> Path:
    """The kiosk's real wheels for this machine, prepared offline beforehand (`make wheelhouse`)."""
    path = Path(os.environ.get("PNEUMOEDGE_WHEELHOUSE", DEFAULT_WHEELHOUSE))
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    if not any(path.glob(f"ai_edge_litert-*-{tag}-*.whl")):
        pytest.skip(
            f"no kiosk wheelhouse for {tag} at {path}: run `pip download -r requirements-edge.txt -d {path}` "
            "(make wheelhouse) or set PNEUMOEDGE_WHEELHOUSE"
        )
    return path


STUB_SYSTEMCTL = """#!/usr/bin/env bash
# Test stand-in for systemctl (no systemd in the test sandbox). 'restart pneumoedge.service' stops
# the kiosk it started before and starts the real one from INSTALL_PREFIX/current through the
# release's own serve.sh, as the unit does; 'show' reports whether it still runs. Every call is recorded.
# With FAKE_KIOSK set, tests/firmware/fake_kiosk.py stands in for the kiosk. The screen's unit
# (pneumoedge-kiosk.service) runs the release `current` named when it was last restarted, and
# exits again and again (as systemd reports it) when that release holds a file SCREEN_BROKEN.
set -euo pipefail
echo "$*" >>"$STUB_STATE/calls"
if [[ "$1" == restart && "$2" == pneumoedge-kiosk.service ]]; then
    readlink -f "$INSTALL_PREFIX/current" >"$STUB_STATE/screen"
    exit 0
fi
if [[ "$1" == show && "${!#}" == pneumoedge-kiosk.service ]]; then
    screen="$(cat "$STUB_STATE/screen" 2>/dev/null || true)"
    if [[ -z "$screen" ]]; then
        printf 'ActiveState=inactive\nSubState=dead\nNRestarts=0\nConditionResult=yes\n'
    elif [[ -e "$screen/SCREEN_BROKEN" ]]; then
        printf 'ActiveState=activating\nSubState=auto-restart\nNRestarts=1\nConditionResult=yes\n'
    else
        printf 'ActiveState=active\nSubState=running\nNRestarts=0\nConditionResult=yes\n'
    fi
    exit 0
fi
if [[ "$1" == show ]]; then  # the app's state, as systemd reports a Type=notify unit with Restart=
    pid="$(cat "$STUB_STATE/pid" 2>/dev/null || true)"
    state="$(awk '{ print $3 }' "/proc/${pid:-0}/stat" 2>/dev/null || true)"
    if [[ -n "$state" && "$state" != Z ]]; then
        printf 'ActiveState=active\nSubState=running\n'
    else
        printf 'ActiveState=activating\nSubState=auto-restart\n'
    fi
    exit 0
fi
if [[ "$1" == restart && "$2" == pneumoedge.service ]]; then
    if [[ -f "$STUB_STATE/pid" ]]; then
        pid="$(cat "$STUB_STATE/pid")"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    if [[ -n "${FAKE_KIOSK:-}" ]]; then
        kiosk=("$DEVICE_PYTHON" "$FAKE_KIOSK")
    else
        kiosk=("$INSTALL_PREFIX/current/firmware_scripts/serve.sh")
    fi
    "${kiosk[@]}" >>"$STUB_STATE/serve.log" 2>&1 </dev/null &
    echo $! >"$STUB_STATE/pid"
fi
"""


class Device:
    """A provisioned device under tmp_path: its root, the env update.sh runs with, its kiosk URL."""

    def __init__(self, tmp_path: Path, port: int, fake_kiosk: bool = False) -> None:
        self.root = tmp_path / "root"
        self.prefix = self.root / "opt/pneumoedge"
        self.state = tmp_path / "systemctl-state"
        self.state.mkdir()
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        (bin_dir / "systemctl").write_text(STUB_SYSTEMCTL)
        (bin_dir / "systemctl").chmod(0o755)
        self.url = f"http://127.0.0.1:{port}/healthz"
        self.provision_env = script_env(tmp_path)
        # update.sh and the kiosk run without --root: the device's paths point into the root.
        self.env = script_env(
            tmp_path,
            INSTALL_PREFIX=str(self.prefix),
            DATA_DIR=str(self.root / "var/lib/pneumoedge"),
            LOG_DIR=str(self.root / "var/log/pneumoedge"),
            APP_PORT=str(port),
            HEALTH_TIMEOUT_SEC="60",
            SCREEN_SETTLE_SEC="2",
            STUB_STATE=str(self.state),
            TRUSTED_PUBKEY=str(self.root / "etc/pneumoedge/bundle-signing.pub"),
            PATH=f"{bin_dir}:{os.environ['PATH']}",
        )
        if fake_kiosk:
            self.env["FAKE_KIOSK"] = str(FAKE_KIOSK)

    def provision(self, tarball: Path) -> None:
        result = run_script(
            "provision.sh",
            "--root",
            self.root,
            "--no-kiosk",
            "--pubkey",
            trusted_pubkey(),
            tarball,
            env=self.provision_env,
        )
        assert result.returncode == 0, result.stderr
        self.env["PNEUMOEDGE_CONFIG"] = str(self.root / "etc/pneumoedge/pneumoedge.conf")

    def start(self) -> None:
        subprocess.run(["systemctl", "restart", "pneumoedge.service"], env=self.env, check=True)

    def update(self, *args: str | Path, **env: str) -> subprocess.CompletedProcess[str]:
        return run_script("update.sh", *args, env={**self.env, **env})

    def current(self) -> str:
        return (self.prefix / "current").readlink().name

    def restarts(self) -> int:
        calls = (self.state / "calls").read_text().splitlines()
        return calls.count("restart pneumoedge.service")

    def stop(self) -> None:
        pid_file = self.state / "pid"
        if pid_file.exists():
            subprocess.run(["kill", pid_file.read_text().strip()], check=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serving_sha256(url: str, timeout: float = 60.0) -> str:
    """Wait for the kiosk at `url` to be healthy; return the model sha256 it serves."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                body = json.loads(response.read())
            if body["status"] == "ok":
                return str(body["model"]["sha256"])
        except (OSError, ValueError):
            if time.monotonic() > deadline:
                raise
        time.sleep(0.5)


@pytest.fixture(scope="session")
def edge_bundles(
    tmp_path_factory: pytest.TempPathFactory,
    edge_wheelhouse: Path,
    tiny_bundle_int8: Bundle,
    tiny_bundle_float: Bundle,
) -> dict[str, Path]:
    """Real kiosk bundles for this machine: 1.0.0 (int8 model) and 2.0.0 (float model)."""
    tmp = tmp_path_factory.mktemp("edge-bundles")
    env = script_env(tmp)
    return {
        "1.0.0": build_bundle(env, tiny_bundle_int8.root, tmp / "dist", "1.0.0", edge_wheelhouse),
        "2.0.0": build_bundle(env, tiny_bundle_float.root, tmp / "dist", "2.0.0", edge_wheelhouse),
    }


@pytest.fixture
def device(tmp_path: Path, edge_bundles: dict[str, Path]) -> Iterator[Device]:
    """A device provisioned with release 1.0.0 whose real kiosk is serving."""
    device = Device(tmp_path, free_port())
    device.provision(edge_bundles["1.0.0"])
    device.start()
    serving_sha256(device.url)
    # What provision.sh's health check records on a device; under --root it starts nothing.
    (device.prefix / "releases/1.0.0/.healthy").write_text("passed its health check\n")
    try:
        yield device
    finally:
        device.stop()
