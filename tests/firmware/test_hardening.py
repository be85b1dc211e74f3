"""The units and settings provisioning installs to keep a kiosk safe and on screen (issue 10, item 10).

The hardening is measured with systemd's own rating (`systemd-analyze security --offline`), the
browser policy and the watchdog drop-in are parsed as Chromium and systemd read them.
"""

from __future__ import annotations

import configparser
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.firmware.conftest import run_script, script_env, trusted_pubkey

UNITS = Path("etc/systemd/system")
#: The ceiling for each unit's exposure (0 safest, 10 unsafe); issue 10 asks <= 4.5 for the browser,
#: issue 17 for every unit (the health check was 5.9, the first boot 9.6).
MAX_EXPOSURE = {
    "pneumoedge.service": 2.0,
    "pneumoedge-kiosk.service": 4.5,
    "pneumoedge-health.service": 4.5,
    "pneumoedge-firstboot.service": 4.5,
}


@pytest.fixture(scope="module")
def root(tiny_dep_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A --root tree provisioned like a golden image (--image), with the kiosk screen and first boot."""
    tmp = tmp_path_factory.mktemp("hardened")
    root = tmp / "root"
    result = run_script(
        "provision.sh",
        "--root",
        root,
        "--image",
        "--pubkey",
        trusted_pubkey(),
        tiny_dep_bundle,
        env=script_env(tmp),
    )
    assert result.returncode == 0, result.stderr
    return root


def exposure(unit_file: Path) -> float:
    """systemd's overall exposure rating of a unit file."""
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(unit_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout + result.stderr)
    assert found, result.stdout + result.stderr
    return float(found.group(1))


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("unit", sorted(MAX_EXPOSURE))
def test_units_are_rated_safe_by_systemd_analyze_security(root: Path, unit: str) -> None:
    assert exposure(root / UNITS / unit) <= MAX_EXPOSURE[unit]


def _unit(root: Path, name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read(root / UNITS / name)
    return parser


@pytest.mark.parametrize("unit", ["pneumoedge.service", "pneumoedge-kiosk.service"])
def test_a_crash_loop_reboots_the_device(root: Path, unit: str) -> None:
    section = _unit(root, unit)["Unit"]
    assert section["StartLimitAction"] == "reboot"
    assert int(section["StartLimitBurst"]) >= 3
    assert _unit(root, unit)["Service"]["Restart"] in ("always", "on-failure")


def test_the_hardware_watchdog_is_fed_by_systemd(root: Path) -> None:
    dropin = configparser.ConfigParser(interpolation=None)
    dropin.optionxform = str  # type: ignore[assignment,method-assign]
    dropin.read(root / "etc/systemd/system.conf.d/pneumoedge-watchdog.conf")
    assert dropin["Manager"]["RuntimeWatchdogSec"] == "15s"
    assert dropin["Manager"]["RebootWatchdogSec"]


@pytest.mark.parametrize("folder", ["etc/chromium", "etc/chromium-browser"])
def test_the_browser_policy_allows_only_the_kiosk(root: Path, folder: str) -> None:
    policy = json.loads((root / folder / "policies/managed/pneumoedge.json").read_text())
    assert policy["URLAllowlist"] == ["http://127.0.0.1:8080"]
    assert "*" in policy["URLBlocklist"] and "file://*" in policy["URLBlocklist"]
    assert policy["DeveloperToolsAvailability"] == 2  # DevTools off
    assert policy["DownloadRestrictions"] == 3  # every download blocked


def test_headless_devices_get_no_browser_policy(tiny_dep_bundle: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    result = run_script(
        "provision.sh",
        "--root",
        root,
        "--no-kiosk",
        "--pubkey",
        trusted_pubkey(),
        tiny_dep_bundle,
        env=script_env(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert not (root / "etc/chromium").exists()
    assert (root / "etc/systemd/system.conf.d/pneumoedge-watchdog.conf").is_file()


def test_a_hung_release_fails_its_start_soon_and_the_boot_check_does_not_wait_for_it(root: Path) -> None:
    """Issue 17, item 7: TimeoutStartSec=300 kept a hung release's screen dark for 5 minutes, and
    the boot-time check (After=pneumoedge.service) waited for that timeout before it could act."""
    timeout = _unit(root, "pneumoedge.service")["Service"]["TimeoutStartSec"]
    assert int(timeout) <= 120
    health = _unit(root, "pneumoedge-health.service")
    assert "pneumoedge.service" not in health["Unit"].get("After", "")
    assert health["Service"]["ExecStart"] == "/opt/pneumoedge/updater/update.sh --resume"


def test_the_screen_is_part_of_the_health_check(root: Path) -> None:
    config = (root / "etc/pneumoedge/pneumoedge.conf").read_text()
    assert 'SCREEN_UNIT="${SCREEN_UNIT:-pneumoedge-kiosk.service}"' in config
