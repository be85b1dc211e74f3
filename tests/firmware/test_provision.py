"""provision.sh into temporary roots: verified install, nothing installed on a bad bundle, idempotent."""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.firmware.conftest import SigningKey, repack, run_script, script_env, signed_rebuild, trusted_pubkey

HARDENING = (
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "PrivateTmp=yes",
    "Restart=on-failure",
    "Type=notify",
    "WatchdogSec=60",
    "IPAddressDeny=any",
    "CapabilityBoundingSet=",
)


def _provision(root: Path, tarball: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_script(
        "provision.sh", "--root", root, "--pubkey", trusted_pubkey(), *args, tarball, env=script_env(tmp_path)
    )


def _installed_anything(root: Path) -> list[str]:
    return [
        str(p.relative_to(root))
        for p in root.rglob("*")
        if "var/log" not in str(p.relative_to(root)) and p.is_file()
    ]


def test_provision_installs_a_release_with_its_own_venv(tiny_dep_bundle: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    result = _provision(root, tiny_dep_bundle, tmp_path)
    assert result.returncode == 0, result.stderr
    prefix = root / "opt/pneumoedge"
    assert (prefix / "current").readlink() == Path("releases/1.0.0")
    release = prefix / "releases/1.0.0"
    assert (release / ".installed").is_file()
    value = subprocess.run(
        [str(release / "venv/bin/python"), "-c", "import pneumoedge_fixture_dep as d; print(d.VALUE)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert value.stdout.strip() == "installed from the bundle"
    assert "would run (skipped under --root" in result.stderr and "useradd" in result.stderr

    unit = (root / "etc/systemd/system/pneumoedge.service").read_text()
    for line in HARDENING:
        assert line in unit
    assert "ReadWritePaths=/var/lib/pneumoedge" in unit
    assert "/opt/pneumoedge/current/firmware_scripts/kiosk_health.py supervise" in unit
    kiosk = (root / "etc/systemd/system/pneumoedge-kiosk.service").read_text()
    assert "User=pneumoedge-kiosk" in kiosk and "TTYPath=/dev/tty1" in kiosk
    config = (root / "etc/pneumoedge/pneumoedge.conf").read_text()
    assert 'APP_PORT="${APP_PORT:-8080}"' in config
    assert (root / "var/lib/pneumoedge").is_dir()
    log = (root / "var/log/pneumoedge/provision.log").read_text()
    assert "Begin 02 Verify the bundle" in log and "End 10 Health check" in log


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_units_pass_systemd_analyze_verify(tiny_dep_bundle: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    assert _provision(root, tiny_dep_bundle, tmp_path).returncode == 0
    for unit in ("pneumoedge.service", "pneumoedge-kiosk.service", "pneumoedge-health.service"):
        result = subprocess.run(
            ["systemd-analyze", "verify", str(root / "etc/systemd/system" / unit)],
            capture_output=True,
            text=True,
            check=False,
        )
        problems = [
            line
            for line in (result.stdout + result.stderr).splitlines()
            if line.strip() and "is not executable" not in line
        ]  # paths exist on the device only
        assert not problems, problems


def test_second_run_keeps_what_is_installed(tiny_dep_bundle: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    assert _provision(root, tiny_dep_bundle, tmp_path).returncode == 0
    marker = root / "opt/pneumoedge/releases/1.0.0/.installed"
    first = marker.read_text()
    again = _provision(root, tiny_dep_bundle, tmp_path)
    assert again.returncode == 0, again.stderr
    assert "already installed" in again.stderr
    assert marker.read_text() == first
    assert not (root / "opt/pneumoedge/previous").exists()


@pytest.mark.parametrize(
    ("case", "mutate"),
    [
        ("altered file", lambda top: (top / "app/requirements.txt").write_text("# altered\n")),
        ("altered wheel", lambda top: next((top / "wheels").glob("*.whl")).write_bytes(b"not a wheel")),
        ("unlisted file", lambda top: (top / "app/extra.py").write_text("import os\n")),
        ("missing SHA256SUMS", lambda top: (top / "SHA256SUMS").unlink()),
    ],
)
def test_checksum_failure_stops_before_anything_is_installed(
    case: str, mutate, tiny_dep_bundle: Path, tmp_path: Path, signing_key: SigningKey
) -> None:
    # Signed with the trusted key, so that the SHA256SUMS check inside is what stops it.
    bad = repack(tiny_dep_bundle, tmp_path / "bad.tar.gz", mutate, sign_with=signing_key.private)
    root = tmp_path / "root"
    result = _provision(root, bad, tmp_path)
    assert result.returncode != 0, case
    assert "nothing was installed" in result.stderr or "SHA256SUMS" in result.stderr
    assert _installed_anything(root) == []
    assert not list((tmp_path / "scratch").iterdir()), "the staging folder must be cleaned up"


def test_damaged_copy_is_caught_by_the_sidecar(tiny_dep_bundle: Path, tmp_path: Path) -> None:
    copy = tmp_path / tiny_dep_bundle.name
    data = bytearray(tiny_dep_bundle.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    shutil.copy(f"{tiny_dep_bundle}.sha256", f"{copy}.sha256")
    shutil.copy(f"{tiny_dep_bundle}.sig", f"{copy}.sig")
    root = tmp_path / "root"
    result = _provision(root, copy, tmp_path)
    assert result.returncode != 0
    assert "does not match" in result.stderr
    assert _installed_anything(root) == []


def test_wrong_python_is_refused(tiny_dep_bundle: Path, tmp_path: Path, signing_key: SigningKey) -> None:
    def claim_other_python(top: Path) -> None:
        manifest = top / "MANIFEST"
        manifest.write_text(manifest.read_text().replace("python_version=", "python_version=2.7\nold="))

    bad = signed_rebuild(tiny_dep_bundle, tmp_path / "py27.tar.gz", claim_other_python, signing_key)
    root = tmp_path / "root"
    result = _provision(root, bad, tmp_path)
    assert result.returncode != 0
    assert "wheels are for Python 2.7" in result.stderr
    assert _installed_anything(root) == []


def test_dry_run_changes_nothing(tiny_dep_bundle: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    result = _provision(root, tiny_dep_bundle, tmp_path, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "would run" in result.stderr
    assert not root.exists()


def test_read_only_root_needs_a_data_partition(tiny_dep_bundle: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    result = _provision(root, tiny_dep_bundle, tmp_path, "--read-only-root")
    assert result.returncode != 0
    assert "DATA_PARTITION_LABEL" in result.stderr
    assert _installed_anything(root) == []


def test_a_bundle_with_links_is_refused_before_unpacking(
    tiny_dep_bundle: Path, tmp_path: Path, signing_key: SigningKey
) -> None:
    bad = repack(
        tiny_dep_bundle,
        tmp_path / "link.tar.gz",
        lambda top: (top / "app/etc").symlink_to("/etc"),
        sign_with=signing_key.private,
    )
    root = tmp_path / "root"
    result = _provision(root, bad, tmp_path)
    assert result.returncode != 0
    assert "links or special files" in result.stderr
    assert _installed_anything(root) == []


@pytest.mark.skipif(shutil.which("systemctl") is None, reason="systemctl is not installed")
def test_the_units_start_at_boot_under_the_console_target(tiny_dep_bundle: Path, tmp_path: Path) -> None:
    """raspi-config B1 makes multi-user.target the default: every unit must be wanted by it."""
    root = tmp_path / "root"
    targets = root / "usr/lib/systemd/system"
    targets.mkdir(parents=True)
    (targets / "multi-user.target").write_text("[Unit]\nDescription=Multi-User System\n")
    (targets / "graphical.target").write_text(
        "[Unit]\nDescription=Graphical Interface\nWants=multi-user.target\n"
    )
    subprocess.run(
        ["systemctl", "--root", root, "set-default", "multi-user.target"], check=True, capture_output=True
    )

    result = _provision(root, tiny_dep_bundle, tmp_path)
    assert result.returncode == 0, result.stderr
    default = subprocess.run(
        ["systemctl", "--root", root, "get-default"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert default == "multi-user.target"
    for unit in ("pneumoedge.service", "pneumoedge-kiosk.service", "pneumoedge-health.service"):
        enabled = subprocess.run(
            ["systemctl", "--root", root, "is-enabled", unit], capture_output=True, text=True, check=False
        )
        assert enabled.stdout.strip() == "enabled", unit
        assert (root / "etc/systemd/system" / f"{default}.wants" / unit).is_symlink(), unit


def test_the_boot_health_unit_finishes_interrupted_updates(tiny_dep_bundle: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    assert _provision(root, tiny_dep_bundle, tmp_path, "--no-kiosk").returncode == 0
    unit = (root / "etc/systemd/system/pneumoedge-health.service").read_text()
    # The stable updater installed at provisioning, never the scripts of the release being checked.
    assert "ExecStart=/opt/pneumoedge/updater/update.sh --resume" in unit
    assert "ConditionPathExists=/opt/pneumoedge/.pending-update" in unit
    assert "Type=oneshot" in unit
    updater = root / "opt/pneumoedge/updater"
    assert updater.readlink().parent == Path("updaters") and (updater / "update.sh").is_file()
    assert (updater / "update.sh").read_bytes() == (
        root / "opt/pneumoedge/releases/1.0.0/firmware_scripts/update.sh"
    ).read_bytes()


def test_a_bundle_for_another_cpu_can_be_rehearsed_with_dry_run(
    tiny_dep_bundle: Path, tmp_path: Path, signing_key: SigningKey
) -> None:
    other = "x86_64" if platform.machine() == "aarch64" else "aarch64"

    def for_other_cpu(top: Path) -> None:
        manifest = top / "MANIFEST"
        manifest.write_text(re.sub(r"(?m)^arch=.*$", f"arch={other}", manifest.read_text()))

    pi64 = signed_rebuild(tiny_dep_bundle, tmp_path / "pi64.tar.gz", for_other_cpu, signing_key)
    root = tmp_path / "root"
    rehearsal = _provision(root, pi64, tmp_path, "--dry-run")
    assert rehearsal.returncode == 0, rehearsal.stderr
    assert f"this bundle is for {other}" in rehearsal.stderr and "a dry run carries on" in rehearsal.stderr
    assert "End 10 Health check" in rehearsal.stderr and not root.exists()
    real = _provision(root, pi64, tmp_path)
    assert real.returncode != 0 and f"this bundle is for {other}" in real.stderr
