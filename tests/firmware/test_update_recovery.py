"""update.sh when things go wrong: a kill (power cut) during the health check, rollbacks by hand.

These run update.sh for real (restart, health check, rollback) on a device under tmp_path whose
kiosk is tests/firmware/fake_kiosk.py, so they need no TFLite wheels and stay quick.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.webapp.records import database
from tests.firmware.conftest import (
    FIRMWARE,
    Device,
    SigningKey,
    free_port,
    serving_sha256,
    signed_rebuild,
)


@pytest.fixture
def device(tmp_path: Path, tiny_dep_bundles: dict[str, Path]) -> Iterator[Device]:
    """A device that was provisioned with 1.0.0 and updated to 2.0.0, which passed its health check."""
    device = Device(tmp_path, free_port(), fake_kiosk=True)
    device.provision(tiny_dep_bundles["1.0.0"])
    device.start()
    try:
        updated = device.update(tiny_dep_bundles["2.0.0"])
        assert updated.returncode == 0, updated.stderr
        yield device
    finally:
        device.stop()


@pytest.fixture
def broken_bundle(tiny_dep_bundles: dict[str, Path], tmp_path: Path, signing_key: SigningKey) -> Path:
    """A genuine, signed release 3.0.0 whose app never starts (fake_kiosk.py exits on BROKEN)."""

    def break_it(top: Path) -> None:
        (top / "BROKEN").write_text("the app of this release cannot start\n")

    return signed_rebuild(tiny_dep_bundles["3.0.0"], tmp_path / "broken.tar.gz", break_it, signing_key)


@pytest.fixture
def hanging_bundle(tiny_dep_bundles: dict[str, Path], tmp_path: Path, signing_key: SigningKey) -> Path:
    """A genuine, signed release 3.0.0 whose app starts but never answers: the health check waits."""

    def break_it(top: Path) -> None:
        (top / "BROKEN").write_text("hang: the app of this release starts but never answers\n")

    return signed_rebuild(tiny_dep_bundles["3.0.0"], tmp_path / "hanging.tar.gz", break_it, signing_key)


def _model_sha(device: Device, version: str) -> str:
    manifest = (device.prefix / "releases" / version / "MANIFEST").read_text()
    return manifest.split("model_sha256=")[1].split()[0]


def _kill_during_health_check(device: Device, bundle: Path | str, tmp_path: Path) -> None:
    """Start an update of `bundle` (or `--rollback`), SIGKILL it and all its children while it waits
    for /healthz: what a power cut inside the health-check window leaves."""
    log = device.root / "var/log/pneumoedge/update.log"
    start = log.stat().st_size
    with (tmp_path / "killed-update.out").open("w") as out:
        update = subprocess.Popen(
            [str(FIRMWARE / "update.sh"), str(bundle)],
            env={**device.env, "HEALTH_TIMEOUT_SEC": "120"},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 240
        while "waiting up to 120 s" not in log.read_text()[start:]:
            assert update.poll() is None, (tmp_path / "killed-update.out").read_text()
            assert time.monotonic() < deadline, "the update never reached its health check"
            time.sleep(0.2)
        os.killpg(update.pid, signal.SIGKILL)
        update.wait()


@pytest.mark.parametrize("how", ["boot unit (--resume)", "same update again"])
def test_an_update_killed_during_its_health_check_is_rolled_back(
    how: str, device: Device, hanging_bundle: Path, tmp_path: Path
) -> None:
    # The app must stay up: one that exits is detected at once (below) and the update would roll
    # back before the kill, so the test would race the health check instead of cutting it short.
    good_sha = serving_sha256(device.url)
    _kill_during_health_check(device, hanging_bundle, tmp_path)
    pending = device.prefix / ".pending-update"
    assert device.current() == "3.0.0" and pending.is_file()  # what a power cut leaves behind

    args = ["--resume"] if how.startswith("boot") else [hanging_bundle]
    resumed = device.update(*args, HEALTH_TIMEOUT_SEC="3", KEEP_RELEASES="1")
    assert resumed.returncode != 0
    assert "interrupted update to 3.0.0 failed its health check and was rolled back" in resumed.stderr
    assert device.current() == "2.0.0"
    assert serving_sha256(device.url) == good_sha
    assert not pending.exists()
    assert (device.prefix / "previous").readlink() == Path("releases/1.0.0")
    assert (device.prefix / "releases/2.0.0/.installed").is_file()  # the good release was not pruned
    assert not (device.prefix / "releases/3.0.0/.healthy").exists()


def test_a_healthy_update_clears_its_marker_and_is_a_rollback_target(device: Device) -> None:
    assert not (device.prefix / ".pending-update").exists()
    assert (device.prefix / "releases/2.0.0/.healthy").is_file()
    nothing = device.update("--resume")
    assert nothing.returncode == 0, nothing.stderr
    assert "no update is waiting for its health check" in nothing.stderr


def test_rollback_goes_only_to_a_release_that_passed_its_health_check(
    device: Device, tiny_dep_bundles: dict[str, Path], tmp_path: Path, signing_key: SigningKey
) -> None:
    def rename(top: Path) -> None:
        for name in ("MANIFEST", "VERSION"):
            (top / name).write_text((top / name).read_text().replace("3.0.0", "4.0.0"))

    newer = signed_rebuild(tiny_dep_bundles["3.0.0"], tmp_path / "4.tar.gz", rename, signing_key)
    assert device.update(newer).returncode == 0
    assert device.current() == "4.0.0"

    back = device.update("--rollback")
    assert back.returncode == 0, back.stderr
    assert device.current() == "2.0.0"
    assert serving_sha256(device.url) == _model_sha(device, "2.0.0")

    again = device.update("--rollback")  # used to toggle back to the release just rolled back from
    assert again.returncode != 0
    assert "no previous release" in again.stderr
    assert device.current() == "2.0.0"


def test_rollback_refuses_a_release_that_never_passed_a_health_check(device: Device) -> None:
    # 1.0.0 was provisioned under --root, where nothing is started or checked.
    assert (device.prefix / "previous").readlink() == Path("releases/1.0.0")
    refused = device.update("--rollback")
    assert refused.returncode != 0
    assert "has not passed a health check" in refused.stderr
    assert device.current() == "2.0.0"


def test_the_health_check_gives_up_as_soon_as_the_new_app_exits(device: Device, broken_bundle: Path) -> None:
    result = device.update(broken_bundle, HEALTH_TIMEOUT_SEC="600")
    assert result.returncode != 0
    assert "the app of pneumoedge.service exited (systemd: activating/auto-restart)" in result.stderr
    assert "rolled back" in result.stderr and device.current() == "2.0.0"


def test_a_failed_update_that_migrated_the_database_is_rolled_back_with_its_snapshot(
    device: Device, tiny_dep_bundles: dict[str, Path], tmp_path: Path, signing_key: SigningKey
) -> None:
    data = Path(device.env["DATA_DIR"])
    database.init_db(data)  # the running release's schema

    def migrate_then_fail(top: Path) -> None:
        (top / "BROKEN").write_text("migrate\n")

    broken = signed_rebuild(
        tiny_dep_bundles["3.0.0"], tmp_path / "migrating.tar.gz", migrate_then_fail, signing_key
    )
    result = device.update(broken)
    assert result.returncode != 0 and "rolled back" in result.stderr
    assert "changed the database schema" in result.stderr
    assert device.current() == "2.0.0"
    database.init_db(data)  # the release rolled back to reads its database again
    (kept,) = (data / "snapshots").glob("from-3.0.0-*.sqlite3")
    with contextlib.closing(sqlite3.connect(kept)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 99


def _boot_health_unit(device: Device, **env: str) -> subprocess.CompletedProcess[str]:
    """Run what the installed pneumoedge-health.service runs at boot (its ExecStart), on this device."""
    unit = (device.root / "etc/systemd/system/pneumoedge-health.service").read_text()
    (command,) = [line.split("=", 1)[1] for line in unit.splitlines() if line.startswith("ExecStart=")]
    argv = [arg.replace("/opt/pneumoedge", str(device.prefix), 1) for arg in shlex.split(command)]
    return subprocess.run(
        argv,
        env={**device.env, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_boot_recovery_runs_the_stable_updater_never_the_new_releases(
    device: Device, tiny_dep_bundles: dict[str, Path], tmp_path: Path, signing_key: SigningKey
) -> None:
    """Issue 17, item 2: a signed release with a broken update.sh, and a power cut in its health check."""
    canary = tmp_path / "canary"

    def break_it(top: Path) -> None:
        (top / "BROKEN").write_text("hang: the app of this release starts but never answers\n")
        (top / "firmware_scripts/update.sh").write_text(
            f"#!/usr/bin/env bash\ntouch {canary}\necho 'nothing to resume' >&2\n"
        )

    bundle = signed_rebuild(tiny_dep_bundles["3.0.0"], tmp_path / "bad-updater.tar.gz", break_it, signing_key)
    good = (device.prefix / "updater/update.sh").read_bytes()
    _kill_during_health_check(device, bundle, tmp_path)
    assert device.current() == "3.0.0" and (device.prefix / ".pending-update").is_file()

    booted = _boot_health_unit(device, HEALTH_TIMEOUT_SEC="3")
    assert booted.returncode != 0
    assert "interrupted update to 3.0.0 failed its health check and was rolled back" in booted.stderr
    assert not canary.exists()
    assert device.current() == "2.0.0" and serving_sha256(device.url) == _model_sha(device, "2.0.0")
    assert (device.prefix / "updater/update.sh").read_bytes() == good
    assert (device.prefix / "updater").resolve().parent == device.prefix / "updaters"


def test_the_stable_updater_is_refreshed_only_by_a_release_that_passed_its_check(device: Device) -> None:
    updater = (device.prefix / "updater").readlink()
    assert updater.parent == Path("updaters") and updater.name.startswith("2.0.0-")
    assert sorted(p.name for p in (device.prefix / "updaters").iterdir()) == [updater.name]
    assert (device.prefix / "updater/update.sh").read_bytes() == (
        device.prefix / "releases/2.0.0/firmware_scripts/update.sh"
    ).read_bytes()


def test_a_rollback_to_a_release_that_no_longer_starts_returns_to_the_running_one(device: Device) -> None:
    """Issue 17, item 3: the release left keeps .healthy until the target proved itself."""
    (device.prefix / "releases/1.0.0/.healthy").write_text("passed its health check\n")
    (device.prefix / "releases/1.0.0/BROKEN").write_text("no longer starts (a damaged card)\n")
    result = device.update("--rollback", HEALTH_TIMEOUT_SEC="10")
    assert result.returncode != 0
    assert "the rollback to 1.0.0 failed its health check; 2.0.0 is serving again" in result.stderr
    assert device.current() == "2.0.0" and serving_sha256(device.url) == _model_sha(device, "2.0.0")
    assert (device.prefix / "releases/2.0.0/.healthy").is_file()
    assert not (device.prefix / "releases/1.0.0/.healthy").exists()
    assert not (device.prefix / ".pending-update").exists()


def test_a_rollback_cut_short_in_its_health_check_is_finished_at_boot(device: Device, tmp_path: Path) -> None:
    (device.prefix / "releases/1.0.0/.healthy").write_text("passed its health check\n")
    (device.prefix / "releases/1.0.0/BROKEN").write_text("hang: no longer answers\n")
    _kill_during_health_check(device, "--rollback", tmp_path)
    pending = (device.prefix / ".pending-update").read_text()
    assert "kind=rollback" in pending and "version=1.0.0" in pending and "fallback=2.0.0" in pending
    assert device.current() == "1.0.0"
    assert (device.prefix / "releases/2.0.0/.healthy").is_file()  # until 1.0.0 proved itself

    booted = _boot_health_unit(device, HEALTH_TIMEOUT_SEC="3")
    assert booted.returncode != 0 and "interrupted rollback to 1.0.0 failed" in booted.stderr
    assert device.current() == "2.0.0" and serving_sha256(device.url) == _model_sha(device, "2.0.0")
    assert not (device.prefix / ".pending-update").exists()


def test_a_release_whose_screen_fails_is_rolled_back(
    device: Device, tiny_dep_bundles: dict[str, Path], tmp_path: Path, signing_key: SigningKey
) -> None:
    """Issue 17, item 6: the screen's unit is part of healthy."""

    def break_screen(top: Path) -> None:
        (top / "SCREEN_BROKEN").write_text("the kiosk screen of this release exits at once\n")

    bundle = signed_rebuild(tiny_dep_bundles["3.0.0"], tmp_path / "dark.tar.gz", break_screen, signing_key)
    result = device.update(bundle, SCREEN_UNIT="pneumoedge-kiosk.service")
    assert result.returncode != 0
    assert "pneumoedge-kiosk.service is not healthy: the screen exited" in result.stderr
    assert "rolled back" in result.stderr and "2.0.0 is serving" in result.stderr
    assert device.current() == "2.0.0"
    assert not (device.prefix / "releases/3.0.0").exists()
    calls = (device.state / "calls").read_text().splitlines()
    assert calls.count("restart pneumoedge-kiosk.service") == 2  # the new release's, then the old one's


def test_a_power_cut_between_the_previous_and_current_renames_keeps_previous(device: Device) -> None:
    """Issue 17, item 7: previous already moved to the running release, current not yet."""
    (device.prefix / "previous").unlink()
    (device.prefix / "previous").symlink_to("releases/2.0.0")
    marker = "kind=update\nversion=3.0.0\nfallback=2.0.0\nprevious=1.0.0\n"
    (device.prefix / ".pending-update").write_text(marker)
    resumed = device.update("--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert device.current() == "2.0.0"
    assert (device.prefix / "previous").readlink() == Path("releases/1.0.0")
    assert not (device.prefix / ".pending-update").exists()
