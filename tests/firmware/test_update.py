"""update.sh: side-by-side install, atomic switch, health check and automatic rollback.

The quick tests work on `--root` trees with tiny bundles (no restart, so no health check). The
slow ones run a provisioned device with its real kiosk; they install 50 MB of wheels several times
and need the kiosk's wheelhouse for this machine (`make wheelhouse`): `pytest -m slow tests/firmware`.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import pytest

from edge.bundle import Bundle, write_bundle
from tests.firmware.conftest import (
    Device,
    SigningKey,
    provision_rooted,
    run_script,
    serving_sha256,
    sign_bundle,
    signed_rebuild,
)


def test_update_under_root_installs_beside_and_switches(
    tmp_path: Path, tiny_dep_bundles: dict[str, Path]
) -> None:
    root, env = provision_rooted(tmp_path, tiny_dep_bundles["1.0.0"])
    prefix = root / "opt/pneumoedge"
    dry = run_script("update.sh", "--root", root, "--dry-run", tiny_dep_bundles["2.0.0"], env=env)
    assert dry.returncode == 0, dry.stderr
    assert (prefix / "current").readlink() == Path("releases/1.0.0")
    assert not (prefix / "releases/2.0.0").exists()

    result = run_script("update.sh", "--root", root, tiny_dep_bundles["2.0.0"], env=env)
    assert result.returncode == 0, result.stderr
    assert (prefix / "current").readlink() == Path("releases/2.0.0")
    assert (prefix / "previous").readlink() == Path("releases/1.0.0")
    assert (prefix / "releases/2.0.0/.installed").is_file() and (
        prefix / "releases/1.0.0/.installed"
    ).is_file()
    assert "would run (skipped under --root" in result.stderr and "systemctl restart" in result.stderr
    assert "without a health check" in result.stderr


def test_old_releases_are_pruned_but_never_current_or_previous(
    tmp_path: Path, tiny_dep_bundles: dict[str, Path]
) -> None:
    root, env = provision_rooted(tmp_path, tiny_dep_bundles["1.0.0"])
    env["KEEP_RELEASES"] = "1"
    for version in ("2.0.0", "3.0.0"):
        result = run_script("update.sh", "--root", root, tiny_dep_bundles[version], env=env)
        assert result.returncode == 0, result.stderr
    releases = sorted(p.name for p in (root / "opt/pneumoedge/releases").iterdir())
    assert releases == ["2.0.0", "3.0.0"]  # 1.0.0 removed; 3.0.0 current, 2.0.0 previous


def test_a_bad_model_under_root_is_never_switched_to(
    tmp_path: Path, tiny_dep_bundles: dict[str, Path], signing_key: SigningKey
) -> None:
    root, env = provision_rooted(tmp_path, tiny_dep_bundles["1.0.0"])

    def swap_model(top: Path) -> None:
        model = next((top / "models").iterdir()) / "model.tflite"
        model.write_bytes(model.read_bytes()[:-16] + b"\0" * 16)

    bad = signed_rebuild(tiny_dep_bundles["2.0.0"], tmp_path / "bad.tar.gz", swap_model, signing_key)
    result = run_script("update.sh", "--root", root, bad, env=env)
    assert result.returncode != 0
    assert "failed verification" in result.stderr
    prefix = root / "opt/pneumoedge"
    assert (prefix / "current").readlink() == Path("releases/1.0.0")
    assert not (prefix / "releases/2.0.0").exists()


def sha256_of_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _model_sha(tarball_version: str, device: Device) -> str:
    return (
        (device.prefix / "releases" / tarball_version / "MANIFEST").read_text().split("model_sha256=")[1][:64]
    )


@pytest.mark.slow
def test_update_switches_keeps_the_previous_release_and_rolls_back_on_request(
    device: Device, edge_bundles: dict[str, Path]
) -> None:
    old_sha = serving_sha256(device.url)
    result = device.update(edge_bundles["2.0.0"])
    assert result.returncode == 0, result.stderr
    assert device.current() == "2.0.0"
    assert (device.prefix / "previous").readlink() == Path("releases/1.0.0")
    assert (device.prefix / "releases/1.0.0/.installed").is_file()
    new_sha = serving_sha256(device.url)
    assert new_sha == _model_sha("2.0.0", device) != old_sha
    log = (device.root / "var/log/pneumoedge/update.log").read_text()
    assert "Begin 05 Switch, restart and health-check" in log and "is healthy" in log

    again = device.update(edge_bundles["2.0.0"])
    assert again.returncode == 0, again.stderr
    assert "already the current one" in again.stderr

    back = device.update("--rollback")
    assert back.returncode == 0, back.stderr
    assert device.current() == "1.0.0"
    assert serving_sha256(device.url) == old_sha


@pytest.mark.slow
def test_a_model_that_fails_verification_is_never_switched_to(
    device: Device, edge_bundles: dict[str, Path], tmp_path: Path, signing_key: SigningKey
) -> None:
    old_sha = serving_sha256(device.url)

    def swap_model(top: Path) -> None:
        (top / "MANIFEST").write_text(
            (top / "MANIFEST").read_text().replace("version=2.0.0", "version=3.0.0")
        )
        model = next((top / "models").iterdir()) / "model.tflite"
        model.write_bytes(model.read_bytes()[:-16] + b"\0" * 16)  # no longer the measured model

    bad = signed_rebuild(edge_bundles["2.0.0"], tmp_path / "bad-model.tar.gz", swap_model, signing_key)
    restarts = device.restarts()
    result = device.update(bad)
    assert result.returncode != 0
    assert "failed verification" in result.stderr
    assert device.current() == "1.0.0"
    assert not (device.prefix / "releases/3.0.0").exists()
    assert device.restarts() == restarts  # the running kiosk was never touched
    assert serving_sha256(device.url) == old_sha


@pytest.mark.slow
def test_a_release_that_fails_its_health_check_is_rolled_back(
    device: Device,
    edge_bundles: dict[str, Path],
    tiny_bundle_int8: Bundle,
    tmp_path: Path,
    signing_key: SigningKey,
) -> None:
    old_sha = serving_sha256(device.url)
    # A signed bundle that verifies (the sha256s match) but whose model the runtime cannot load:
    # the new kiosk never becomes healthy. build-bundle.sh refuses such a model, so it is repacked.
    broken_model = b"this is not a TFLite flatbuffer" * 64
    assert sha256_of_bytes(broken_model) != old_sha

    def break_model(top: Path) -> None:
        (model,) = (top / "models").iterdir()
        shutil.rmtree(model)
        write_bundle(model, broken_model, dict(tiny_bundle_int8.metadata))
        manifest = (top / "MANIFEST").read_text().replace("version=2.0.0", "version=3.0.0")
        manifest = re.sub(r"(?m)^model_sha256=.*$", f"model_sha256={sha256_of_bytes(broken_model)}", manifest)
        (top / "MANIFEST").write_text(manifest)

    tarball = signed_rebuild(edge_bundles["2.0.0"], tmp_path / "broken.tar.gz", break_model, signing_key)

    result = device.update(tarball, HEALTH_TIMEOUT_SEC="15")
    assert result.returncode != 0
    assert "rolled back" in result.stderr and "1.0.0 is serving" in result.stderr
    assert device.current() == "1.0.0"
    assert not (device.prefix / "previous").exists()
    assert not (device.prefix / "releases/3.0.0").exists()
    assert serving_sha256(device.url) == old_sha


def test_a_different_bundle_named_like_the_running_release_is_refused(
    tmp_path: Path, tiny_dep_bundles: dict[str, Path], signing_key: SigningKey
) -> None:
    root, env = provision_rooted(tmp_path, tiny_dep_bundles["1.0.0"])
    prefix = root / "opt/pneumoedge"
    assert run_script("update.sh", "--root", root, tiny_dep_bundles["2.0.0"], env=env).returncode == 0
    running = sorted(p.relative_to(prefix) for p in (prefix / "releases/2.0.0").rglob("*"))

    def change(top: Path) -> None:
        (top / "app/extra.py").write_text("# a rebuild that kept the old version name\n")

    renamed = signed_rebuild(tiny_dep_bundles["2.0.0"], tmp_path / "same-name.tar.gz", change, signing_key)
    for args in ([renamed], ["--reinstall", renamed]):
        result = run_script("update.sh", "--root", root, *args, env=env)
        assert result.returncode != 0
        assert "like the running release" in result.stderr
        assert (prefix / "current").readlink() == Path("releases/2.0.0")
        assert sorted(p.relative_to(prefix) for p in (prefix / "releases/2.0.0").rglob("*")) == running
    # provision.sh shares the rule: it never deletes the release `current` points at.
    reprovision = run_script("provision.sh", "--root", root, "--no-kiosk", renamed, env=env)
    assert reprovision.returncode != 0 and "like the running release" in reprovision.stderr
    assert (prefix / "releases/2.0.0/.installed").is_file()


def test_an_older_release_needs_reinstall_and_the_same_one_changes_nothing(
    tmp_path: Path, tiny_dep_bundles: dict[str, Path]
) -> None:
    root, env = provision_rooted(tmp_path, tiny_dep_bundles["1.0.0"])
    prefix = root / "opt/pneumoedge"
    assert run_script("update.sh", "--root", root, tiny_dep_bundles["2.0.0"], env=env).returncode == 0

    same = run_script("update.sh", "--root", root, tiny_dep_bundles["2.0.0"], env=env)
    assert same.returncode == 0, same.stderr
    assert "already the current one" in same.stderr

    older = run_script("update.sh", "--root", root, tiny_dep_bundles["1.0.0"], env=env)
    assert older.returncode != 0
    assert "older than the running 2.0.0" in older.stderr and "--reinstall" in older.stderr
    assert (prefix / "current").readlink() == Path("releases/2.0.0")

    downgrade = run_script("update.sh", "--root", root, "--reinstall", tiny_dep_bundles["1.0.0"], env=env)
    assert downgrade.returncode == 0, downgrade.stderr
    assert (prefix / "current").readlink() == Path("releases/1.0.0")


SYNC_RECORDER = """#!/usr/bin/env bash
# Test stand-in for sync: record the arguments and where `current` points, then really sync.
echo "$* current=$(readlink "$PREFIX/current")" >>"$SYNC_LOG"
exec {real} "$@"
"""


def test_the_release_and_the_folder_are_synced_around_the_switch(
    tmp_path: Path, tiny_dep_bundles: dict[str, Path]
) -> None:
    root, env = provision_rooted(tmp_path, tiny_dep_bundles["1.0.0"])
    prefix = root / "opt/pneumoedge"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sync").write_text(SYNC_RECORDER.format(real=shutil.which("sync")))
    (bin_dir / "sync").chmod(0o755)
    env.update(PATH=f"{bin_dir}:{env['PATH']}", PREFIX=str(prefix), SYNC_LOG=str(tmp_path / "sync.log"))

    result = run_script("update.sh", "--root", root, tiny_dep_bundles["2.0.0"], env=env)
    assert result.returncode == 0, result.stderr
    calls = (tmp_path / "sync.log").read_text().splitlines()
    flushed = calls.index(f"--file-system {prefix}/releases/2.0.0 current=releases/1.0.0")
    renamed = calls.index(f"-- {prefix} current=releases/2.0.0")
    assert flushed < renamed


FULL_CARD_DF = """#!/usr/bin/env bash
# Test stand-in for df: a card with 10 MB free.
echo "Filesystem 1024-blocks Used Available Capacity Mounted on"
echo "/dev/mmcblk0p2 30000000 29989760 10240 100% /"
"""


def test_an_update_that_does_not_fit_is_refused_before_anything_is_installed(
    tmp_path: Path, tiny_dep_bundles: dict[str, Path]
) -> None:
    root, env = provision_rooted(tmp_path, tiny_dep_bundles["1.0.0"])
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "df").write_text(FULL_CARD_DF)
    (bin_dir / "df").chmod(0o755)
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    result = run_script("update.sh", "--root", root, tiny_dep_bundles["2.0.0"], env=env)
    assert result.returncode != 0
    assert "not enough free space" in result.stderr and "10 MB free" in result.stderr
    prefix = root / "opt/pneumoedge"
    assert (prefix / "current").readlink() == Path("releases/1.0.0")
    assert not (prefix / "releases/2.0.0").exists()


def test_a_different_bundle_named_like_the_previous_release_never_replaces_it(
    tmp_path: Path, tiny_dep_bundles: dict[str, Path], signing_key: SigningKey
) -> None:
    """Issue 17, item 7: --reinstall of such a bundle used to delete the healthy previous release."""
    root, env = provision_rooted(tmp_path, tiny_dep_bundles["1.0.0"])
    prefix = root / "opt/pneumoedge"
    assert run_script("update.sh", "--root", root, tiny_dep_bundles["2.0.0"], env=env).returncode == 0
    kept = sorted(p.relative_to(prefix) for p in (prefix / "releases/1.0.0").rglob("*"))

    def change(top: Path) -> None:
        (top / "app/extra.py").write_text("# another build that kept the name 1.0.0\n")

    renamed = signed_rebuild(tiny_dep_bundles["1.0.0"], tmp_path / "old-name.tar.gz", change, signing_key)
    result = run_script("update.sh", "--root", root, "--reinstall", renamed, env=env)
    assert result.returncode != 0
    assert "like the installed release" in result.stderr
    assert sorted(p.relative_to(prefix) for p in (prefix / "releases/1.0.0").rglob("*")) == kept
    assert (prefix / "current").readlink() == Path("releases/2.0.0")
    assert (prefix / "previous").readlink() == Path("releases/1.0.0")


def test_provisioning_again_with_an_older_bundle_needs_reinstall(
    tmp_path: Path, tiny_dep_bundles: dict[str, Path]
) -> None:
    """Issue 17, item 7: provision.sh re-run used to downgrade a device silently."""
    root, env = provision_rooted(tmp_path, tiny_dep_bundles["1.0.0"])
    prefix = root / "opt/pneumoedge"
    assert run_script("update.sh", "--root", root, tiny_dep_bundles["2.0.0"], env=env).returncode == 0
    older = run_script("provision.sh", "--root", root, "--no-kiosk", tiny_dep_bundles["1.0.0"], env=env)
    assert older.returncode != 0
    assert "older than the running 2.0.0" in older.stderr and "--reinstall" in older.stderr
    assert (prefix / "current").readlink() == Path("releases/2.0.0")
    downgrade = run_script(
        "provision.sh", "--root", root, "--no-kiosk", "--reinstall", tiny_dep_bundles["1.0.0"], env=env
    )
    assert downgrade.returncode == 0, downgrade.stderr
    assert (prefix / "current").readlink() == Path("releases/1.0.0")
    assert (prefix / "previous").readlink() == Path("releases/2.0.0")


SMALL_SCRATCH_DF = """#!/usr/bin/env bash
# Test stand-in for df: the scratch folder (TMPDIR) has 10 MB free, like /var/tmp in a small RAM
# overlay; everything else is measured for real.
if [[ "${{!#}}" == "$TMPDIR"* ]]; then
    echo "Filesystem 1024-blocks Used Available Capacity Mounted on"
    echo "overlayroot 100000 89760 10240 90% /"
    exit 0
fi
exec {real} "$@"
"""


def test_a_bundle_is_not_unpacked_where_it_does_not_fit(
    tmp_path: Path, tiny_dep_bundles: dict[str, Path]
) -> None:
    """Issue 17, item 7: the scratch folder's space is checked before the bundle is copied there."""
    root, env = provision_rooted(tmp_path, tiny_dep_bundles["1.0.0"])
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "df").write_text(SMALL_SCRATCH_DF.format(real=shutil.which("df")))
    (bin_dir / "df").chmod(0o755)
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    result = run_script("update.sh", "--root", root, tiny_dep_bundles["2.0.0"], env=env)
    assert result.returncode != 0
    assert f"to check and unpack {tiny_dep_bundles['2.0.0']}: 10 MB free" in result.stderr
    assert not list(Path(env["TMPDIR"]).iterdir())
    assert not (root / "opt/pneumoedge/releases/2.0.0").exists()


def test_a_truncated_bundle_is_reported_by_its_own_name(
    tmp_path: Path, tiny_dep_bundles: dict[str, Path], signing_key: SigningKey
) -> None:
    """Issue 17, item 7: the message named the scratch copy. Signed after the cut, so only tar fails."""
    root, env = provision_rooted(tmp_path, tiny_dep_bundles["1.0.0"])
    truncated = tmp_path / "pneumoedge-2.0.0-cut.tar.gz"
    data = tiny_dep_bundles["2.0.0"].read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    sign_bundle(truncated, signing_key.private)
    result = run_script("update.sh", "--root", root, truncated, env=env)
    assert result.returncode != 0
    assert f"{truncated} is not a readable .tar.gz" in result.stderr
    assert "pneumoedge-stage" not in result.stderr
