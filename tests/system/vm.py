"""A real Debian guest under QEMU (TCG) for the booted system test, and its disks.

Why each piece: the root file system is built once (debootstrap, minutes) and cached under
PNEUMOEDGE_SYSTEM_CACHE (default ~/.cache/pneumoedge-system-test), keyed by the sha256 of
build-rootfs.sh; the guest boots its own kernel with systemd as PID 1; every scenario runs on a
qcow2 overlay of the provisioned disk, so a power cut never needs a new provisioning. A power cut
with unflushed writes: the disk goes through nbdkit's cache filter (writes reach the disk image
only when the guest flushes), and nbdkit is killed together with QEMU.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUILD_ROOTFS = HERE / "build-rootfs.sh"
TOOLS = ("qemu-system-x86_64", "qemu-img", "qemu-nbd", "nbdkit", "debootstrap", "mkfs.ext4")
MARK = "PNEUMOEDGE-TEST:"
#: The serial console belongs to the test agent: a login prompt there would hang up its output.
KERNEL_ARGS = "systemd.mask=serial-getty@ttyS0.service"


def missing_tools() -> list[str]:
    """The host tools this test needs that are not installed (apt: qemu-system-x86 qemu-utils
    debootstrap e2fsprogs nbdkit)."""
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def cache_dir() -> Path:
    """Where the root file system and its disk image are kept between runs."""
    default = Path.home() / ".cache" / "pneumoedge-system-test"
    return Path(os.environ.get("PNEUMOEDGE_SYSTEM_CACHE", default))


def recipe_key() -> str:
    """The cache key: build-rootfs.sh is the whole recipe of the root file system."""
    return hashlib.sha256(BUILD_ROOTFS.read_bytes()).hexdigest()[:16]


@dataclass(frozen=True)
class BaseImage:
    """The bootable disk (raw ext4 of the root file system) and the kernel it boots."""

    disk: Path
    kernel: Path
    initrd: Path


def ensure_base_image(timeout_s: float = 3600) -> BaseImage:
    """Build (or reuse) the cached root file system and its 4 GB ext4 disk image."""
    folder = cache_dir() / f"rootfs-{recipe_key()}"
    rootfs = folder / "rootfs"
    if not (folder / ".complete").exists():
        subprocess.run([str(BUILD_ROOTFS), str(folder)], check=True, timeout=timeout_s)
    disk = folder / "base.raw"
    if not disk.exists():
        tmp = disk.with_suffix(".tmp")
        subprocess.run(
            ["mkfs.ext4", "-q", "-F", "-L", "pneumoroot", "-d", str(rootfs), str(tmp), "4G"],
            check=True,
            timeout=1800,
        )
        tmp.rename(disk)
    kernel = sorted((rootfs / "boot").glob("vmlinuz-*"))[-1]
    initrd = sorted((rootfs / "boot").glob("initrd.img-*"))[-1]
    return BaseImage(disk, kernel, initrd)


def make_ext4(source: Path, image: Path, label: str, size: str = "1G") -> Path:
    """An ext4 image of a folder (no root or loop device needed): the technician's USB stick."""
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", label, "-d", str(source), str(image), size], check=True)
    return image


def overlay(backing: Path, path: Path) -> Path:
    """A qcow2 overlay on `backing`: a scenario's writes never touch the state it starts from."""
    fmt = "raw" if backing.suffix == ".raw" else "qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", fmt, "-b", str(backing), str(path)],
        check=True,
    )
    return path


def free_port() -> int:
    """An unused TCP port on the host's loopback for QEMU's hostfwd."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_socket(path: Path, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout_s:.0f} s")
        time.sleep(0.2)


@dataclass
class Guest:
    """One boot of the guest: QEMU with the system disk, the USB stick, and a hostfwd to the kiosk.

    With `unflushed=True` the system disk is served by qemu-nbd behind nbdkit's cache filter
    (writeback: a write reaches the qcow2 only when the guest flushes), so `power_cut()` also loses
    what the guest wrote but did not flush, as on an SD card.
    """

    base: BaseImage
    disk: Path
    usb: Path
    serial: Path
    cmdline: str
    unflushed: bool = False
    port: int = field(default_factory=free_port)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self) -> None:
        drive = f"file={self.disk},format=qcow2,if=virtio"
        if self.unflushed:
            inner, outer = self.disk.with_suffix(".qemu-nbd.sock"), self.disk.with_suffix(".nbdkit.sock")
            for sock in (inner, outer):
                sock.unlink(missing_ok=True)
            self.procs["qemu-nbd"] = subprocess.Popen(
                ["qemu-nbd", "-f", "qcow2", "--persistent", "-k", str(inner), str(self.disk)]
            )
            _wait_for_socket(inner)
            self.procs["nbdkit"] = subprocess.Popen(
                [
                    "nbdkit",
                    "--foreground",
                    "-U",
                    str(outer),
                    "--filter=cache",
                    "nbd",
                    f"socket={inner}",
                    "cache=writeback",
                ]
            )
            _wait_for_socket(outer)
            drive = f"file=nbd+unix:///?socket={outer},format=raw,if=virtio"
        self.serial.unlink(missing_ok=True)
        self.monitor.unlink(missing_ok=True)
        # -cpu max: the bundle's numpy 2 needs x86-64-v2 (SSE4.2, POPCNT); TCG's default qemu64 lacks it.
        self.procs["qemu"] = subprocess.Popen(
            [
                "qemu-system-x86_64",
                *("-accel", "tcg", "-cpu", "max", "-smp", "2", "-m", "2048", "-no-reboot"),
                *(
                    "-display",
                    "none",
                    "-monitor",
                    f"unix:{self.monitor},server=on,wait=off",
                    "-serial",
                    f"file:{self.serial}",
                ),
                *("-kernel", str(self.base.kernel), "-initrd", str(self.base.initrd)),
                *("-append", f"root=/dev/vda rw console=ttyS0 {KERNEL_ARGS} {self.cmdline}"),
                *("-drive", drive),
                *("-drive", f"file={self.usb},format=raw,if=virtio,readonly=on"),
                *("-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{self.port}-:18080"),
                *("-device", "virtio-net-pci,netdev=n0"),
            ]
        )

    @property
    def monitor(self) -> Path:
        """QEMU's monitor socket (the power button)."""
        return self.serial.with_suffix(".monitor")

    def power_button(self, timeout_s: float) -> bool:
        """Press the (ACPI) power button and wait for the clean shutdown systemd-logind makes of it;
        if none comes within `timeout_s`, cut the power instead and return False."""
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.monitor))
            s.sendall(b"system_powerdown\n")
            time.sleep(1)
        try:
            self.procs["qemu"].wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.power_cut()
            return False
        self.stop()
        return True

    def log(self) -> str:
        """The serial console so far (kernel, systemd and the agent's lines)."""
        return self.serial.read_text(errors="replace") if self.serial.exists() else ""

    def agent_lines(self) -> list[str]:
        """The agent's lines ("PNEUMOEDGE-TEST: ..."), without the prefix."""
        return [line.split(MARK, 1)[1].strip() for line in self.log().splitlines() if MARK in line]

    def wait_for(self, pattern: str, timeout_s: float, what: str) -> re.Match[str]:
        """Wait until the serial console matches `pattern`; fail with the console's tail."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = re.search(pattern, self.log())
            if found:
                return found
            if self.procs["qemu"].poll() is not None:
                raise AssertionError(f"QEMU exited while waiting for {what}:\n{self.log()[-4000:]}")
            time.sleep(2)
        raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}:\n{self.log()[-4000:]}")

    def wait_poweroff(self, timeout_s: float, what: str) -> None:
        """Wait for the guest to power itself off (a clean shutdown flushes everything)."""
        try:
            self.procs["qemu"].wait(timeout=timeout_s)
        except subprocess.TimeoutExpired as e:
            self.stop()
            raise AssertionError(
                f"timed out after {timeout_s:.0f} s waiting for {what}:\n{self.log()[-4000:]}"
            ) from e
        self.stop()

    def power_cut(self) -> None:
        """Pull the plug: the unflushed cache goes first (nbdkit), then the machine (QEMU)."""
        for name in ("nbdkit", "qemu"):
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
        self.stop()

    def stop(self) -> None:
        """Stop whatever still runs; qemu-nbd last and gently, so the qcow2 (the card) stays whole."""
        for name in ("qemu", "nbdkit", "qemu-nbd"):
            proc = self.procs.pop(name, None)
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    def http(self, path: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> bytes:
        """A request to the kiosk from the host (hostfwd -> the guest's forwarder -> 127.0.0.1:8080)."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=data, headers=headers or {}
        )
        with urllib.request.urlopen(request, timeout=300) as response:
            return bytes(response.read())
