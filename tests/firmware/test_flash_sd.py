"""flash-sd.sh against a fake /sys/block tree and regular files standing in for disks."""

from __future__ import annotations

import hashlib
import lzma
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.firmware.conftest import run_script, script_env

MIB = 1 << 20


@dataclass
class FakeMachine:
    """A fake /sys/block, /proc/mounts and /dev under tmp_path."""

    root: Path

    @property
    def env(self) -> dict[str, str]:
        return script_env(
            self.root,
            SYSFS_ROOT=str(self.root / "sys"),
            MOUNTS_FILE=str(self.root / "mounts"),
            SWAPS_FILE=str(self.root / "swaps"),
            CMDLINE_FILE=str(self.root / "cmdline"),
        )

    def disk(
        self,
        name: str,
        size: int = 64 * MIB,
        removable: bool = True,
        model: str = "SD Card Reader",
        partitions: int = 2,
        fill: bytes = b"\xaa",
    ) -> Path:
        sys_disk = self.root / "sys/block" / name
        (sys_disk / "device").mkdir(parents=True)
        (sys_disk / "size").write_text(f"{size // 512}\n")
        (sys_disk / "removable").write_text("1\n" if removable else "0\n")
        (sys_disk / "ro").write_text("0\n")
        (sys_disk / "device/model").write_text(f"{model}   \n")
        for number in range(1, partitions + 1):
            separator = "p" if name[-1].isdigit() else ""  # sdb1, but mmcblk0p1 and nvme0n1p1
            part = sys_disk / f"{name}{separator}{number}"
            part.mkdir()
            (part / "partition").write_text(f"{number}\n")
        device = self.root / "dev" / name
        device.parent.mkdir(exist_ok=True)
        device.write_bytes(fill * size)
        return device

    def mount(self, source: str, target: str, fstype: str = "ext4") -> None:
        with (self.root / "mounts").open("a") as f:
            f.write(f"{source} {target} {fstype} rw,relatime 0 0\n")


@pytest.fixture
def machine(tmp_path: Path) -> FakeMachine:
    fake = FakeMachine(tmp_path)
    fake.mount("proc", "/proc", "proc")
    fake.mount("/dev/nvme0n1p2", "/")
    fake.mount("/dev/nvme0n1p1", "/boot/efi", "vfat")
    (tmp_path / "swaps").write_text("Filename Type Size Used Priority\n")
    (tmp_path / "cmdline").write_text("quiet splash\n")
    return fake


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "pneumoedge.img"
    path.write_bytes(os.urandom(3 * MIB + 12345))  # not a multiple of the block size on purpose
    return path


def _flash(machine: FakeMachine, image: Path, device: Path, *args: str, stdin: str | None = None):
    return run_script("flash-sd.sh", *args, image, device, env=machine.env, stdin=stdin)


def test_writes_and_verifies(machine: FakeMachine, image: Path) -> None:
    device = machine.disk("sdz")
    result = _flash(machine, image, device, "--yes")
    assert result.returncode == 0, result.stderr
    written = device.read_bytes()
    assert written[: image.stat().st_size] == image.read_bytes()
    assert written[image.stat().st_size :] == b"\xaa" * (len(written) - image.stat().st_size)
    assert "verified:" in result.stderr
    assert "64.0 GB" not in result.stderr and "0.1 GB" in result.stderr and "SD Card Reader" in result.stderr


def test_writes_a_compressed_image(machine: FakeMachine, image: Path, tmp_path: Path) -> None:
    packed = tmp_path / "pneumoedge.img.xz"
    packed.write_bytes(lzma.compress(image.read_bytes()))
    digest = hashlib.sha256(packed.read_bytes()).hexdigest()
    device = machine.disk("sdz")
    result = _flash(machine, packed, device, "--yes", "--sha256", digest)
    assert result.returncode == 0, result.stderr
    assert device.read_bytes()[: image.stat().st_size] == image.read_bytes()


def test_refuses_a_damaged_download(machine: FakeMachine, image: Path) -> None:
    device = machine.disk("sdz")
    result = _flash(machine, image, device, "--yes", "--sha256", "0" * 64)
    assert result.returncode != 0
    assert "damaged" in result.stderr
    assert set(device.read_bytes()) == {0xAA}


def test_refuses_the_system_disk(machine: FakeMachine, image: Path) -> None:
    device = machine.disk("nvme0n1", removable=False, model="Samsung SSD")
    result = _flash(machine, image, device, "--yes", "--force")
    assert result.returncode != 0
    assert "disk the system runs from" in result.stderr
    assert set(device.read_bytes()) == {0xAA}


def test_refuses_the_system_disk_behind_dev_root(machine: FakeMachine, image: Path, tmp_path: Path) -> None:
    (tmp_path / "mounts").write_text("/dev/root / ext4 rw 0 0\n")
    (tmp_path / "cmdline").write_text("console=tty1 root=/dev/mmcblk0p2 rootfstype=ext4\n")
    device = machine.disk("mmcblk0", partitions=2)
    result = _flash(machine, image, device, "--yes")
    assert result.returncode != 0
    assert "disk the system runs from" in result.stderr


def test_refuses_a_mounted_disk(machine: FakeMachine, image: Path) -> None:
    device = machine.disk("sdz")
    machine.mount("/dev/sdz1", "/media/user/bootfs", "vfat")
    result = _flash(machine, image, device, "--yes", "--force")
    assert result.returncode != 0
    assert "is mounted" in result.stderr and "umount" in result.stderr
    assert set(device.read_bytes()) == {0xAA}


def test_refuses_a_non_removable_disk_unless_forced(machine: FakeMachine, image: Path) -> None:
    device = machine.disk("sdy", removable=False, model="Internal HDD")
    refused = _flash(machine, image, device, "--yes")
    assert refused.returncode != 0
    assert "not a removable disk" in refused.stderr and "--force" in refused.stderr
    assert set(device.read_bytes()) == {0xAA}
    forced = _flash(machine, image, device, "--yes", "--force")
    assert forced.returncode == 0, forced.stderr
    assert device.read_bytes()[: image.stat().st_size] == image.read_bytes()


def test_built_in_sd_slot_counts_as_removable(machine: FakeMachine, image: Path) -> None:
    device = machine.disk("mmcblk1", removable=False)
    (machine.root / "sys/block/mmcblk1/device/type").write_text("SD\n")
    result = _flash(machine, image, device, "--yes")
    assert result.returncode == 0, result.stderr


def test_refuses_a_partition(machine: FakeMachine, image: Path) -> None:
    machine.disk("sdz")
    partition = machine.root / "dev/sdz1"
    partition.write_bytes(b"\0" * MIB)
    result = _flash(machine, image, partition, "--yes")
    assert result.returncode != 0
    assert "not a whole disk" in result.stderr


def test_refuses_a_card_smaller_than_the_image(machine: FakeMachine, image: Path) -> None:
    device = machine.disk("sdz", size=2 * MIB)
    result = _flash(machine, image, device, "--yes")
    assert result.returncode != 0
    assert "larger than" in result.stderr


def test_asks_before_erasing(machine: FakeMachine, image: Path) -> None:
    device = machine.disk("sdz")
    declined = _flash(machine, image, device, stdin="yes\n")
    assert declined.returncode != 0
    assert "Type the disk's name 'sdz'" in declined.stderr and "not confirmed" in declined.stderr
    assert set(device.read_bytes()) == {0xAA}
    accepted = _flash(machine, image, device, stdin="sdz\n")
    assert accepted.returncode == 0, accepted.stderr


def test_dry_run_writes_nothing(machine: FakeMachine, image: Path) -> None:
    device = machine.disk("sdz")
    result = _flash(machine, image, device, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "About to ERASE" in result.stderr and "would run" in result.stderr
    assert set(device.read_bytes()) == {0xAA}


def test_refuses_an_unsupported_compression(machine: FakeMachine, tmp_path: Path) -> None:
    device = machine.disk("sdz")
    packed = tmp_path / "pneumoedge.img.zip"
    packed.write_bytes(b"PK\x03\x04 not really")
    result = _flash(machine, packed, device, "--yes")
    assert result.returncode != 0
    assert "not supported" in result.stderr
    assert set(device.read_bytes()) == {0xAA}


COUNTING_XZ = """#!/usr/bin/env bash
# Test stand-in for xz: count decompressions, then run the real xz.
[[ " $* " == *" -dc "* ]] && echo decompress >>"$XZ_LOG"
exec {real} "$@"
"""


def test_a_compressed_image_is_decompressed_once(machine: FakeMachine, image: Path, tmp_path: Path) -> None:
    packed = tmp_path / "pneumoedge.img.xz"
    packed.write_bytes(lzma.compress(image.read_bytes()))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "xz").write_text(COUNTING_XZ.format(real=shutil.which("xz")))
    (bin_dir / "xz").chmod(0o755)
    device = machine.disk("sdz")
    env = {**machine.env, "PATH": f"{bin_dir}:{os.environ['PATH']}", "XZ_LOG": str(tmp_path / "xz.log")}
    result = run_script("flash-sd.sh", "--yes", packed, device, env=env)
    assert result.returncode == 0, result.stderr
    assert device.read_bytes()[: image.stat().st_size] == image.read_bytes()
    assert (tmp_path / "xz.log").read_text().splitlines() == ["decompress"]
    assert hashlib.sha256(image.read_bytes()).hexdigest() in result.stderr


@pytest.mark.parametrize("missing", ["device", "sha256 file"])
def test_a_missing_path_gets_a_clear_message(
    machine: FakeMachine, image: Path, tmp_path: Path, missing: str
) -> None:
    if missing == "device":
        result = _flash(machine, image, tmp_path / "no/such/dir/sdz", "--yes")
        assert "is not a block device" in result.stderr
    else:
        device = machine.disk("sdz")
        result = _flash(machine, image, device, "--yes", "--sha256-file", str(tmp_path / "missing.sha256"))
        assert "missing.sha256 does not exist" in result.stderr
    assert result.returncode != 0
    assert "failed with exit status" not in result.stderr  # no internal error
    assert "No such file or directory" not in result.stderr
