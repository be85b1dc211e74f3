"""Fixtures for the firmware script tests: run the real scripts against temporary roots.

Nothing here touches the real system: provisioning goes to `--root` trees, updates to a prefix
under tmp_path with a stand-in `systemctl` that (re)starts the real kiosk, flashing to regular files
behind a fake /sys/block tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from edge.bundle import Bundle

REPO = Path(__file__).resolve().parents[2]
FIRMWARE = REPO / "firmware_scripts"
SCRIPT_TIMEOUT_S = 300
#: Where `make wheelhouse` puts the kiosk's wheels for this machine (pip download -r requirements-edge.txt).
DEFAULT_WHEELHOUSE = Path.home() / ".cache" / "pneumoedge" / "wheelhouse"


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


def build_bundle(
    env: dict[str, str], model: Path, output: Path, version: str, wheelhouse: Path, *extra: str
) -> Path:
    """build-bundle.sh for this machine from a local wheelhouse; return the tarball."""
    result = run_script(
        "build-bundle.sh", "--target", "local", "--model", model, "--output", output,
        "--version", version, "--wheelhouse", wheelhouse, *extra, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    tarball = Path(result.stdout.strip().splitlines()[-1])
    assert tarball.is_file()
    return tarball


def repack(tarball: Path, out: Path, mutate: Callable[[Path], None], resum: bool = False) -> Path:
    """Unpack a bundle, let `mutate` change its folder, pack it again as `out` (no .sha256 file).

    `resum=True` rewrites SHA256SUMS after the change, as a careless or hostile builder would.
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
            cwd=top, capture_output=True, text=True, check=True,
        )  # fmt: skip
        (top / "SHA256SUMS").write_text(sums.stdout)
    with tarfile.open(out, "w:gz") as tar:
        tar.add(top, arcname=top.name)
    shutil.rmtree(work)
    return out


@pytest.fixture(scope="session")
def tiny_wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A wheelhouse with one tiny pure-Python wheel built offline, and a requirements file naming it.

    Lets the quick tests build and provision real bundles without the kiosk's 50 MB of wheels.
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
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "-w", str(wheels), str(project)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    requirements = root / "requirements.txt"
    requirements.write_text("pneumoedge-fixture-dep==1.0\n")
    return wheels, requirements


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
