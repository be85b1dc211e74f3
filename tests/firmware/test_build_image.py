"""build-image.sh on a small loop image: partitions, data file system, the provisioned tree, time zone.

The base image stands in for Raspberry Pi OS (a boot and a root partition, both ext4 here since
this machine has no mkfs.vfat); provisioning runs from this machine into the mounted image
(--host-provision) because the tiny base has no Python to chroot into. Needs root and loop devices.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.firmware.conftest import make_signing_key, run_script, script_env, signed_rebuild, trusted_pubkey

MIB = 1 << 20
USERCONF = "tech:$6$salt$hash\n"


def _loops_work() -> bool:
    if os.geteuid() != 0 or not all(shutil.which(t) for t in ("losetup", "sfdisk", "mkfs.ext4", "resize2fs")):
        return False
    return subprocess.run(["losetup", "-f"], capture_output=True, check=False).returncode == 0


needs_loops = pytest.mark.skipif(not _loops_work(), reason="needs root, loop devices, sfdisk and e2fsprogs")
#: What build-image.sh checks before anything else, a dry run included (its `need` line).
IMAGE_TOOLS = ("losetup", "sfdisk", "e2fsck", "resize2fs", "mkfs.ext4", "chroot", "numfmt", "xz")
needs_image_tools = pytest.mark.skipif(
    not all(shutil.which(t) for t in IMAGE_TOOLS),
    reason="needs util-linux, fdisk (sfdisk), e2fsprogs and xz-utils",
)


def _partitions(image: Path) -> list[dict]:
    table = subprocess.run(["sfdisk", "--json", str(image)], capture_output=True, text=True, check=True)
    return json.loads(table.stdout)["partitiontable"]["partitions"]


def _attach(image: Path, number: int) -> str:
    """A free loop device over partition `number` of `image`; the caller detaches it."""
    part = _partitions(image)[number - 1]
    return subprocess.run(
        [
            "losetup",
            "-f",
            "--show",
            "-o",
            str(part["start"] * 512),
            "--sizelimit",
            str(part["size"] * 512),
            image,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


@contextmanager
def mounted(image: Path, number: int, where: Path) -> Iterator[Path]:
    loop = _attach(image, number)
    where.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(["mount", loop, where], check=True)
        try:
            yield where
        finally:
            subprocess.run(["umount", where], check=True)
    finally:
        subprocess.run(["losetup", "-d", loop], check=False)


def _fake_raspios(path: Path, tmp_path: Path) -> Path:
    """A 96 MiB image: partition 1 (boot, 16 MiB), partition 2 (root with a time zone file)."""
    subprocess.run(["truncate", "-s", str(96 * MIB), path], check=True)
    subprocess.run(["sfdisk", "-q", path], input="label: dos\n,16M,c\n,,L\n", text=True, check=True)
    for number, label in ((1, "bootfs"), (2, "rootfs")):
        loop = _attach(path, number)
        try:
            subprocess.run(["mkfs.ext4", "-q", "-F", "-L", label, loop], check=True)
        finally:
            subprocess.run(["losetup", "-d", loop], check=True)
    with mounted(path, 2, tmp_path / "base-root") as root:
        zone = root / "usr/share/zoneinfo/Africa/Nairobi"
        zone.parent.mkdir(parents=True)
        zone.write_bytes(b"TZif fake zone\n")
        (root / "etc").mkdir()
    return path


def _build_image(
    tmp_path: Path, base: Path, bundle: Path, out: Path, *options: str
) -> subprocess.CompletedProcess[str]:
    """build-image.sh from `base` with `bundle`, the trusted key and a technician's userconf.txt."""
    userconf = tmp_path / "userconf.txt"
    userconf.write_text(USERCONF)
    return run_script(
        "build-image.sh",
        *options,
        "--base",
        base,
        "--bundle",
        bundle,
        "--pubkey",
        trusted_pubkey(),
        "--output",
        out,
        "--userconf",
        userconf,
        env=script_env(tmp_path),
    )


@needs_loops
def test_the_image_gets_a_data_partition_and_a_provisioned_kiosk(
    tiny_dep_bundle: Path, tmp_path: Path
) -> None:
    base = _fake_raspios(tmp_path / "raspios.img", tmp_path)
    base_root = _partitions(base)[1]["size"]
    out = tmp_path / "pneumoedge.img"
    result = _build_image(
        tmp_path,
        base,
        tiny_dep_bundle,
        out,
        "--host-provision",
        "--timezone",
        "Africa/Nairobi",
        "--root-grow",
        "32M",
        "--data-size",
        "192M",
    )
    assert result.returncode == 0, result.stderr
    _boot, root_part, data_part = _partitions(out)
    assert root_part["size"] == base_root + 32 * MIB // 512
    assert (
        data_part["size"] == 192 * MIB // 512 and data_part["start"] >= root_part["start"] + root_part["size"]
    )
    assert out.with_name(out.name + ".sha256").read_text().split()[1] == out.name
    assert (
        subprocess.run(["losetup", "-j", str(out)], capture_output=True, text=True).stdout == ""
    )  # detached

    with mounted(out, 2, tmp_path / "root") as root:
        assert (root / "etc/localtime").readlink() == Path("/usr/share/zoneinfo/Africa/Nairobi")
        wants = root / "etc/systemd/system/multi-user.target.wants"
        for unit in ("pneumoedge.service", "pneumoedge-kiosk.service", "pneumoedge-firstboot.service"):
            assert (wants / unit).is_symlink(), unit
        assert (root / "etc/pneumoedge/bundle-signing.pub").read_bytes() == trusted_pubkey().read_bytes()
        assert (root / "etc/systemd/system/srv-pneumoedge.mount").is_file()
        assert not (root / "var/tmp/pneumoedge-image").exists()
    with mounted(out, 1, tmp_path / "boot") as boot:
        assert (boot / "userconf.txt").read_text() == USERCONF
    with mounted(out, 3, tmp_path / "data") as data:
        assert (data / "current").readlink() == Path("releases/1.0.0")
        assert (data / "records").is_dir()
    assert "health check skipped" in result.stderr


@needs_image_tools
def test_dry_run_touches_nothing(tiny_dep_bundle: Path, tmp_path: Path) -> None:
    base = tmp_path / "raspios.img"
    base.write_bytes(b"\0" * MIB)
    out = tmp_path / "out.img"
    result = _build_image(tmp_path, base, tiny_dep_bundle, out, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert (
        "would run in the image: DATA_PARTITION_LABEL=PNEUMODATA DATA_MOUNT=/srv/pneumoedge" in result.stderr
    )
    assert not out.exists()


def test_a_bundle_signed_by_another_key_is_refused_before_any_of_its_code_runs(
    tiny_dep_bundle: Path, tmp_path: Path
) -> None:
    """Issue 17, item 1: the canary. Every script of the bundle would write the canary file."""
    canary = tmp_path / "canary"
    stranger = make_signing_key(tmp_path / "stranger")

    def plant(top: Path) -> None:
        for script in (top / "firmware_scripts").rglob("*.sh"):
            text = script.read_text()
            first, rest = text.split("\n", 1) if text.startswith("#!") else ("", text)
            script.write_text(f"{first}\ntouch {canary}\necho 'signature not valid' >&2\n{rest}")

    forged = signed_rebuild(tiny_dep_bundle, tmp_path / "forged.tar.gz", plant, stranger)
    if _loops_work():  # a real image, so that an unchecked bundle would get as far as provisioning
        base = _fake_raspios(tmp_path / "raspios.img", tmp_path)
    else:
        base = tmp_path / "raspios.img"
        base.write_bytes(b"\0" * MIB)
    out = tmp_path / "pneumoedge.img"
    result = _build_image(tmp_path, base, forged, out, "--host-provision", "--data-size", "64M")
    assert result.returncode != 0
    assert "is not valid for this device's trusted key" in result.stderr
    assert not canary.exists()
    assert not out.exists()
    assert not list((tmp_path / "scratch").iterdir())  # the verified copy is gone, nothing unpacked
