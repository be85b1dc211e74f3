"""--read-only-root without network, and updates under it (issue 10, item 7).

The read-only root is Raspberry Pi OS's overlayroot (raspi-config do_overlayfs). Provisioning
refuses it unless the package is there or in the bundle (raspi-config would try to download it), and
puts the releases and the records on the data partition, so that updates and records persist while
the root stays read-only. update.sh then runs normally; it refuses only a prefix on the overlay.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.firmware.conftest import Device, free_port, run_script, script_env, trusted_pubkey

ON_DATA_PARTITION = {"DATA_PARTITION_LABEL": "PNEUMODATA", "DATA_MOUNT": "/srv/pneumoedge"}


def _provision(root: Path, tarball: Path, tmp_path: Path, **env: str):
    return run_script(
        "provision.sh",
        "--root",
        root,
        "--pubkey",
        trusted_pubkey(),
        "--read-only-root",
        tarball,
        env=script_env(tmp_path, **env),
    )


def _with_overlayroot(root: Path) -> Path:
    """A root where the overlayroot package is installed (its overlayroot-chroot command)."""
    tool = root / "usr/sbin/overlayroot-chroot"
    tool.parent.mkdir(parents=True)
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    return root


def test_without_overlayroot_it_refuses_instead_of_downloading(tiny_dep_bundle: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    result = _provision(root, tiny_dep_bundle, tmp_path, **ON_DATA_PARTITION)
    assert result.returncode != 0
    assert "needs the overlayroot package" in result.stderr and "--debs" in result.stderr
    assert not (root / "srv").exists() and not (root / "etc").exists()


def test_releases_off_the_data_partition_are_refused(tiny_dep_bundle: Path, tmp_path: Path) -> None:
    root = _with_overlayroot(tmp_path / "root")
    result = _provision(root, tiny_dep_bundle, tmp_path, DATA_PARTITION_LABEL="PNEUMODATA")
    assert result.returncode != 0
    assert "INSTALL_PREFIX=/opt/pneumoedge" in result.stderr and "DATA_MOUNT" in result.stderr
    assert not (root / "opt").exists()


def test_releases_and_records_go_to_the_data_partition(tiny_dep_bundle: Path, tmp_path: Path) -> None:
    root = _with_overlayroot(tmp_path / "root")
    result = _provision(root, tiny_dep_bundle, tmp_path, **ON_DATA_PARTITION)
    assert result.returncode == 0, result.stderr
    assert (root / "srv/pneumoedge/current").readlink() == Path("releases/1.0.0")
    assert (root / "srv/pneumoedge/records").is_dir()
    mount = (root / "etc/systemd/system/srv-pneumoedge.mount").read_text()
    assert "What=/dev/disk/by-label/PNEUMODATA" in mount and "Where=/srv/pneumoedge" in mount
    assert "noexec" not in mount  # the releases run from it
    unit = (root / "etc/systemd/system/pneumoedge.service").read_text()
    assert "/srv/pneumoedge/current/firmware_scripts/kiosk_health.py supervise" in unit
    assert "RequiresMountsFor=/srv/pneumoedge/records /srv/pneumoedge" in unit
    assert "raspi-config nonint do_overlayfs 0" in result.stderr
    config = (root / "etc/pneumoedge/pneumoedge.conf").read_text()
    assert 'INSTALL_PREFIX="${INSTALL_PREFIX:-/srv/pneumoedge}"' in config


@pytest.fixture
def overlay_device(tmp_path: Path, tiny_dep_bundles: dict[str, Path]) -> Iterator[Device]:
    """A device on 1.0.0 booted with the read-only root (cmdline, mounts), its prefix on ext4."""
    device = Device(tmp_path, free_port(), fake_kiosk=True)
    device.provision(tiny_dep_bundles["1.0.0"])
    (tmp_path / "cmdline").write_text("console=tty1 root=PARTUUID=1234-02 overlayroot=tmpfs rootwait\n")
    device.env["CMDLINE_FILE"] = str(tmp_path / "cmdline")
    device.env["MOUNTS_FILE"] = str(tmp_path / "mounts")
    device.start()
    try:
        yield device
    finally:
        device.stop()


def test_updates_work_under_the_read_only_root_when_the_prefix_persists(
    overlay_device: Device, tiny_dep_bundles: dict[str, Path], tmp_path: Path
) -> None:
    (tmp_path / "mounts").write_text(
        f"overlayroot / overlay rw,lowerdir=/media/root-ro,upperdir=/media/root-rw/overlay 0 0\n"
        f"/dev/mmcblk0p3 {overlay_device.root} ext4 rw,nosuid,nodev,noatime 0 0\n"
    )
    result = overlay_device.update(tiny_dep_bundles["2.0.0"])
    assert result.returncode == 0, result.stderr
    assert overlay_device.current() == "2.0.0"


def test_an_update_into_the_overlay_is_refused(
    overlay_device: Device, tiny_dep_bundles: dict[str, Path], tmp_path: Path
) -> None:
    (tmp_path / "mounts").write_text("overlayroot / overlay rw,lowerdir=/media/root-ro 0 0\n")
    result = overlay_device.update(tiny_dep_bundles["2.0.0"])
    assert result.returncode != 0
    assert "would vanish at reboot" in result.stderr and "DATA_MOUNT" in result.stderr
    assert overlay_device.current() == "1.0.0"
