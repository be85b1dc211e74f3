"""build-bundle.sh: one verified tarball with the app, the model, the wheels and checksums."""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

import edge
from edge.bundle import Bundle, write_bundle
from tests.firmware.conftest import (
    REPO,
    build_bundle,
    make_signing_key,
    run_local_build,
    run_script,
    script_env,
)


def _members(tarball: Path) -> list[str]:
    with tarfile.open(tarball) as tar:
        return tar.getnames()


def test_bundle_holds_app_model_wheels_and_checksums(tiny_dep_bundle: Path, tmp_path: Path) -> None:
    names = _members(tiny_dep_bundle)
    top = "pneumoedge-1.0.0-local"
    for expected in (
        "VERSION",
        "MANIFEST",
        "SHA256SUMS",
        "app/requirements.txt",
        "models/tiny-int8/model.tflite",
        "models/tiny-int8/bundle.json",
        "firmware_scripts/provision.sh",
        "firmware_scripts/update.sh",
    ):
        assert f"{top}/{expected}" in names, expected
    assert any(n.startswith(f"{top}/wheels/pneumoedge_fixture_dep-1.0-") for n in names)
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert not [n for n in names if n.startswith(f"{top}/app/") and n != f"{top}/app/requirements.txt"]
    (app_wheel,) = [n for n in names if n.startswith(f"{top}/wheels/pneumoedge-")]
    assert app_wheel.endswith(f"-{edge.__version__}-py3-none-any.whl")

    with tarfile.open(tiny_dep_bundle) as tar:
        tar.extractall(tmp_path, filter="data")
    root = tmp_path / top
    check = subprocess.run(["sha256sum", "--check", "--strict", "SHA256SUMS"], cwd=root, capture_output=True)
    assert check.returncode == 0, check.stdout
    listed = {
        line.split(maxsplit=1)[1].lstrip("*") for line in (root / "SHA256SUMS").read_text().splitlines()
    }
    on_disk = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != "SHA256SUMS"}
    assert listed == on_disk
    with zipfile.ZipFile(root / app_wheel.split("/", 1)[1]) as wheel:
        packaged = set(wheel.namelist())
    for module in ("edge/bundle.py", "edge/webapp/templates/base.html", "edge/webapp/static/kiosk.css"):
        assert module in packaged, module
    assert "edge/models/mobilenetv2-int8/model.tflite" in packaged  # serve's and score's default
    manifest = dict(line.split("=", 1) for line in (root / "MANIFEST").read_text().splitlines())
    assert manifest["version"] == "1.0.0" and (root / "VERSION").read_text().strip() == "1.0.0"
    assert manifest["model_name"] == "tiny-int8"
    assert manifest["runtime_module"] == "none"  # the tiny requirements name no TFLite runtime

    sidecar = Path(f"{tiny_dep_bundle}.sha256").read_text().split()
    digest = subprocess.run(["sha256sum", str(tiny_dep_bundle)], capture_output=True, text=True, check=True)
    assert sidecar == [digest.stdout.split()[0], tiny_dep_bundle.name]


def _build(
    tmp_path: Path, target: str, model: Path, *options: str | Path
) -> subprocess.CompletedProcess[str]:
    """build-bundle.sh for `target`, pass or fail, its scratch and logs under tmp_path."""
    return run_script(
        "build-bundle.sh", "--target", target, "--model", model, *options, env=script_env(tmp_path)
    )


def _tampered_model(folder: Path, good: Bundle) -> None:
    """The model's bytes no longer match the sha256 in bundle.json."""
    write_bundle(folder, good.model_path.read_bytes(), dict(good.metadata))
    (folder / "model.tflite").write_bytes(b"tampered")


def _not_a_model(folder: Path, good: Bundle) -> None:
    """The sha256 in bundle.json matches these bytes, but they are no TFLite flatbuffer."""
    write_bundle(folder, b"this is not a TFLite flatbuffer" * 64, dict(good.metadata))


@pytest.mark.parametrize(
    ("make_model", "refusal"),
    [
        (_tampered_model, "failed verification"),
        (_not_a_model, "does not load or run with the kiosk's TFLite runtime"),
    ],
    ids=["fails-verification", "verifies-but-does-not-load"],
)
def test_refuses_a_bad_model(
    make_model: Callable[[Path, Bundle], None],
    refusal: str,
    tmp_path: Path,
    tiny_bundle_int8: Bundle,
    tiny_wheelhouse: tuple[Path, Path],
) -> None:
    bad = tmp_path / "bad-model"
    make_model(bad, tiny_bundle_int8)
    wheels, requirements = tiny_wheelhouse
    result = run_local_build(
        script_env(tmp_path), bad, tmp_path / "dist", wheels, "--requirements", requirements
    )
    assert result.returncode != 0
    assert refusal in result.stderr
    assert not list((tmp_path / "dist").glob("*.tar.gz"))


def test_unknown_target_lists_the_valid_ones(tmp_path: Path, tiny_bundle_int8: Bundle) -> None:
    result = _build(tmp_path, "pi3-jessie", tiny_bundle_int8.root)
    assert result.returncode != 0
    assert "pi64-bookworm pi64-trixie pi32-bookworm local" in result.stderr


def test_dry_run_writes_nothing(tmp_path: Path, tiny_bundle_int8: Bundle) -> None:
    result = _build(
        tmp_path,
        "pi64-bookworm",
        tiny_bundle_int8.root,
        "--output",
        tmp_path / "dist",
        "--version",
        "2.0.0",
        "--dry-run",
    )
    assert result.returncode == 0, result.stderr
    assert "--platform manylinux_2_36_aarch64" in result.stderr
    assert "--python-version 3.11" in result.stderr
    assert not (tmp_path / "dist").exists()


def test_pi32_target_uses_tflite_runtime_requirements(tmp_path: Path, tiny_bundle_int8: Bundle) -> None:
    result = _build(tmp_path, "pi32-bookworm", tiny_bundle_int8.root, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "requirements-edge-tflite-runtime.txt" in result.stderr
    assert "linux_armv7l" in result.stderr and "piwheels" in result.stderr
    text = (REPO / "requirements-edge-tflite-runtime.txt").read_text()
    assert "tflite-runtime==2.14.0" in text and "numpy==1." in text


def test_building_twice_gives_the_same_contents(
    tmp_path: Path, tiny_bundle_int8: Bundle, tiny_wheelhouse: tuple[Path, Path], tiny_dep_bundle: Path
) -> None:
    wheels, requirements = tiny_wheelhouse
    env = script_env(tmp_path)
    again = build_bundle(
        env, tiny_bundle_int8.root, tmp_path / "dist", "1.0.0", wheels, "--requirements", requirements
    )
    assert _members(again) == _members(tiny_dep_bundle)


def test_two_builds_with_the_same_inputs_give_the_same_signed_tarball(
    tmp_path: Path, tiny_bundle_int8: Bundle, tiny_wheelhouse: tuple[Path, Path]
) -> None:
    wheels, requirements = tiny_wheelhouse
    results = []
    for n in (1, 2):
        (tmp_path / f"build{n}").mkdir()
        env = script_env(tmp_path / f"build{n}", SOURCE_DATE_EPOCH="1764000000")
        tarball = build_bundle(
            env, tiny_bundle_int8.root, tmp_path / f"dist{n}", "1.0.0", wheels, "--requirements", requirements
        )
        results.append((Path(f"{tarball}.sha256").read_text(), Path(f"{tarball}.sig").read_bytes()))
    assert results[0] == results[1]
    with tarfile.open(tarball) as tar:
        manifest = tar.extractfile("pneumoedge-1.0.0-local/MANIFEST").read().decode()
        assert {member.mtime for member in tar.getmembers()} == {1764000000}
    assert "created_utc=2025-11-24T16:00:00Z" in manifest


def _checkout(tmp_path: Path) -> Path:
    """A git repository holding this checkout's tracked files (as they are now), committed."""
    repo = tmp_path / "checkout"
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        if (REPO / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, repo / name)
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "the release")
    return repo


def _git(repo: Path, *args: str) -> str:
    identity = ["-c", "user.name=office", "-c", "user.email=office@example.org"]
    return subprocess.run(
        ["git", *identity, *args], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_the_bundle_is_the_commit_never_stray_files_nor_a_private_key(
    tmp_path: Path, tiny_bundle_int8: Bundle, tiny_wheelhouse: tuple[Path, Path]
) -> None:
    """Issue 17, item 4: an untracked signing key and env file were shipped in a signed bundle."""
    repo = _checkout(tmp_path)
    stray = make_signing_key(repo / "firmware_scripts", "office-signing")
    (repo / "firmware_scripts/local.env").write_text("PNEUMOEDGE_ACCESS_CODE=not-for-devices\n")
    wheels, requirements = tiny_wheelhouse

    def build(*extra: str) -> subprocess.CompletedProcess[str]:
        options = ["--target", "local", "--version", "1.0.0", "--model", str(tiny_bundle_int8.root)]
        options += ["--output", str(tmp_path / "dist"), "--wheelhouse", str(wheels)]
        options += ["--requirements", str(requirements), *extra]
        return subprocess.run(
            [str(repo / "firmware_scripts/build-bundle.sh"), *options],
            env=script_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )

    clean = build()
    assert clean.returncode == 0, clean.stderr
    tarball = Path(clean.stdout.strip().splitlines()[-1])
    names = _members(tarball)
    assert "pneumoedge-1.0.0-local/firmware_scripts/update.sh" in names
    assert not [n for n in names if n.endswith(("office-signing.key", "office-signing.pub", "local.env"))]
    with tarfile.open(tarball) as tar:
        manifest = tar.extractfile("pneumoedge-1.0.0-local/MANIFEST").read().decode()
    assert f"git_commit={_git(repo, 'rev-parse', 'HEAD')}\ngit_tree=clean\n" in manifest

    readme = repo / "firmware_scripts/README.md"
    readme.write_text(readme.read_text() + "An edit nobody committed.\n")
    dirty = build()
    assert dirty.returncode != 0 and "uncommitted changes" in dirty.stderr and "--allow-dirty" in dirty.stderr
    _git(repo, "checkout", "--", "firmware_scripts/README.md")

    (repo / "firmware_scripts/keys").mkdir()
    shutil.copy(stray.private, repo / "firmware_scripts/keys/office.pem")
    _git(repo, "add", "firmware_scripts/keys/office.pem")
    _git(repo, "commit", "-q", "-m", "a key committed by mistake")
    leaked = build()
    assert leaked.returncode != 0
    assert "PEM private key" in leaked.stderr and "firmware_scripts/keys/office.pem" in leaked.stderr
    assert _members(tarball) == names  # the earlier bundle was not replaced
