"""The technician's path on a real booted Debian 12 (systemd as PID 1, QEMU/TCG), with power cuts.

provision.sh from a signed bundle (1.0.0) -> first-boot setup -> the kiosk app and screen units
up -> a case recorded through the kiosk's API -> update.sh to a second signed release (2.0.0) ->
the power is cut at a step of the update (update.sh's test-only pause hook, lib/release.sh
pause_point; the disk behind nbdkit's writeback cache, killed with QEMU) -> boot again -> a healthy
release serves /healthz to the host, the screen unit runs, the case is still in the database.

Stand-ins (there is no display): the browser and the compositor (tests/system/guest/chromium,
cage), and a forwarder so the host reaches the loopback-only kiosk (build-rootfs.sh). Slow: about
40 min on two busy cores (make test-system); timings go to the output and to
PNEUMOEDGE_SYSTEM_CACHE/last-run.json.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edge.bundle import Bundle
from tests.firmware.conftest import DEFAULT_WHEELHOUSE, build_bundle, make_signing_key, script_env
from tests.system import vm

pytestmark = pytest.mark.system

REPO = Path(__file__).resolve().parents[2]
GUEST = Path(__file__).with_name("guest")
FILM = REPO / "tests" / "fixtures" / "golden" / "film-06.jpeg"
ACCESS_CODE = "systemtest-code"  # what agent.sh answers at the first-boot questions
#: Generous: one boot can take many minutes on a busy two-core host under TCG.
BOOT_S = 30 * 60
STEP_S = 45 * 60
#: Where the power is cut, and the release that must serve afterwards (by design, see
#: docs/deployment.md "Power cuts during an update"). None: no cut, the update completes.
#: The most telling first, so a time-boxed run (CI) gets them: PNEUMOEDGE_SYSTEM_CUTS=after-switch,
#: rollback runs only those (no-cut names the uncut update); before-switch always runs (it installs
#: 2.0.0 for the others).
CUTS: dict[str | None, str] = {
    "after-switch": "2.0.0",
    "rollback": "1.0.0",
    "health-window": "2.0.0",
    "during-switch": "1.0.0",
    None: "2.0.0",
}
SELECTED = os.environ.get("PNEUMOEDGE_SYSTEM_CUTS", "")
TIMINGS: dict[str, float] = {}
RESULTS: dict[str, dict[str, object]] = {}


def _record(phase: str, started: float) -> None:
    TIMINGS[phase] = round(time.monotonic() - started, 1)
    print(f"[system test] {phase}: {TIMINGS[phase]:.0f} s", flush=True)
    out = vm.cache_dir() / "last-run.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"timings_s": TIMINGS, "results": RESULTS}, indent=2) + "\n")


@dataclass(frozen=True)
class Stage:
    """What every boot needs: the base image, the USB stick, the releases' model sha256s."""

    base: vm.BaseImage
    usb: Path
    work: Path
    served_by: dict[str, str]  # model sha256 -> release


@pytest.fixture(scope="module")
def stage(
    tmp_path_factory: pytest.TempPathFactory, tiny_bundle_int8: Bundle, tiny_bundle_float: Bundle
) -> Stage:
    """Build (or reuse) the guest image; build and sign two real bundles; write the USB stick."""
    missing = vm.missing_tools()
    if missing:
        pytest.skip(
            f"the booted system test needs {', '.join(missing)} (apt-get install qemu-system-x86 "
            "qemu-utils debootstrap e2fsprogs nbdkit)"
        )
    if os.geteuid() != 0 and not (vm.cache_dir() / f"rootfs-{vm.recipe_key()}" / ".complete").exists():
        pytest.skip("building the guest's root file system needs root (debootstrap)")
    wheelhouse = Path(os.environ.get("PNEUMOEDGE_WHEELHOUSE", DEFAULT_WHEELHOUSE))
    if not any(wheelhouse.glob("ai_edge_litert-*.whl")):
        pytest.skip(f"no kiosk wheelhouse at {wheelhouse} (make wheelhouse)")
    started = time.monotonic()
    base = vm.ensure_base_image()
    _record("rootfs and base disk (cached after the first run)", started)

    started = time.monotonic()
    tmp = tmp_path_factory.mktemp("system")
    key = make_signing_key(tmp / "key")
    env = script_env(tmp, SIGNING_KEY=str(key.private))
    usb = tmp / "usb"
    (usb / "test").mkdir(parents=True)
    served_by = {}
    for version, model in (("1.0.0", tiny_bundle_int8), ("2.0.0", tiny_bundle_float)):
        tarball = build_bundle(env, model.root, tmp / "dist", version, wheelhouse)
        for suffix in ("", ".sha256", ".sig"):
            shutil.copy(f"{tarball}{suffix}", usb)
        served_by[model.model_sha256] = version
    shutil.copy(key.public, usb / "pneumoedge-signing.pub")
    shutil.copytree(REPO / "firmware_scripts", usb / "firmware_scripts")
    for name in ("agent.sh", "chromium", "cage"):
        shutil.copy(GUEST / name, usb / "test" / name)
    work = vm.cache_dir() / "runs" / uuid.uuid4().hex[:8]
    work.mkdir(parents=True)
    stick = vm.make_ext4(usb, work / "usb.img", "PNEUMOTEST")
    _record("bundles and USB stick", started)
    return Stage(base, stick, work, served_by)


def boot(stage: Stage, disk: Path, name: str, cmdline: str, unflushed: bool = False) -> vm.Guest:
    guest = vm.Guest(stage.base, disk, stage.usb, stage.work / f"{name}.serial", cmdline, unflushed)
    guest.start()
    return guest


def check_after_boot(stage: Stage, guest: vm.Guest, name: str) -> dict[str, object]:
    """What serves now: /healthz from the host, the units and the case count from the agent."""
    guest.wait_for(rf"{vm.MARK} check done", BOOT_S, f"{name}: the kiosk after the reboot")
    health = json.loads(guest.http("/healthz"))
    lines = guest.agent_lines()

    def last(prefix: str) -> str:
        return next(line for line in reversed(lines) if line.startswith(prefix))

    return {
        "healthz": health["status"],
        "serving": stage.served_by.get(health["model"]["sha256"], "unknown model"),
        "links": last("current="),
        "units": last("app="),
        "cases": last("cases="),
        "pending": last("pending="),
        "health_service": last("health-service="),
    }


@pytest.fixture(scope="module")
def kiosk(stage: Stage) -> Iterator[Path]:
    """Provision, first boot, one case, then an update cut before its switch: the disk the other
    scenarios start from (release 2.0.0 installed beside 1.0.0, which serves, with one case)."""
    started = time.monotonic()
    provisioned = vm.overlay(stage.base.disk, stage.work / "provisioned.qcow2")
    guest = boot(stage, provisioned, "provision", "pneumoedge.test=provision")
    try:
        guest.wait_for(rf"{vm.MARK} (provision done|provision FAILED)", STEP_S, "provision.sh")
        assert f"{vm.MARK} provision done" in guest.log(), guest.log()[-6000:]
        guest.wait_poweroff(STEP_S, "the first-boot setup and the power-off after provisioning")
    finally:
        guest.stop()
    _record("boot + provision.sh 1.0.0 + firstboot.sh", started)

    started = time.monotonic()
    first = vm.overlay(provisioned, stage.work / "first-boot.qcow2")
    guest = boot(stage, first, "first-boot", "pneumoedge.test=firstboot")
    try:
        guest.wait_for(rf"{vm.MARK} ready for the host's case", BOOT_S, "the kiosk's first boot")
        assert "app=active screen=active" in "\n".join(guest.agent_lines()), guest.agent_lines()
        _record("first boot until the app and the screen run", started)
        started = time.monotonic()
        case = json.loads(post_case(guest))
        RESULTS["case"] = {"id": case.get("id"), "status": case.get("status")}
        guest.wait_poweroff(BOOT_S, "the power-off after the case")
    finally:
        guest.stop()
    _record("a case through the API, power-off", started)

    started = time.monotonic()
    RESULTS["before-switch"] = cut_and_reboot(stage, first, "before-switch")
    _record("scenario before-switch (installs 2.0.0 under emulation)", started)
    yield stage.work / "before-switch.qcow2"


def post_case(guest: vm.Guest) -> bytes:
    """Record one case with the kiosk's API as a clinic system would (multipart, access code)."""
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="film.jpeg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + FILM.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = {
        "Authorization": f"Bearer {ACCESS_CODE}",
        "Content-Type": f"multipart/form-data; boundary={boundary}",
    }
    return guest.http("/api/v1/predict", body, headers)


def cut_and_reboot(stage: Stage, start_from: Path, cut: str | None) -> dict[str, object]:
    """Update on a copy of `start_from`, cut the power at `cut` (None: let it finish), boot again
    and report what serves. The scenario's disk is kept as <cut>.qcow2."""
    name = cut or "no-cut"
    disk = vm.overlay(start_from, stage.work / f"{name}.qcow2")
    cmdline = "pneumoedge.test=update" + (f" pneumoedge.cut={cut}" if cut else "")
    guest = boot(stage, disk, f"{name}-update", cmdline, unflushed=True)
    try:
        if cut:
            guest.wait_for(f"PNEUMOEDGE-TEST-PAUSE: {cut}", STEP_S, f"update.sh to reach the step {cut}")
            guest.power_cut()
        else:
            guest.wait_for(rf"{vm.MARK} update.sh exited \d+", STEP_S, "update.sh to finish")
            guest.wait_poweroff(BOOT_S, "the power-off after the update")
        update_log = [line for line in guest.agent_lines() if line.startswith("update.sh exited")]
    finally:
        guest.stop()
    guest = boot(stage, disk, f"{name}-reboot", "pneumoedge.test=check")
    try:
        result = check_after_boot(stage, guest, name)
        result["update"] = update_log[-1] if update_log else "power cut"
        result["shutdown"] = "clean" if guest.power_button(600) else "power button ignored: cut"
    finally:
        guest.stop()
    print(f"[system test] {name}: {result}", flush=True)
    return result


def assert_healthy(result: dict[str, object], release: str) -> None:
    assert result["healthz"] == "ok", result
    assert result["serving"] == release, result
    assert result["units"] == "app=active screen=active", result
    assert result["cases"] == "cases=1", f"the confirmed case was lost: {result}"
    assert result["pending"] == "pending=none", result


def test_power_cut_before_the_switch(kiosk: Path) -> None:
    """The update installed 2.0.0 and stopped before the switch: 1.0.0 keeps serving."""
    assert_healthy(RESULTS["before-switch"], "1.0.0")


@pytest.mark.parametrize("cut", list(CUTS), ids=[c or "no-cut" for c in CUTS])
def test_power_cut_during_the_update(stage: Stage, kiosk: Path, cut: str | None) -> None:
    if SELECTED and (cut or "no-cut") not in SELECTED.split(","):
        pytest.skip(f"not in PNEUMOEDGE_SYSTEM_CUTS={SELECTED}")
    started = time.monotonic()
    result = cut_and_reboot(stage, kiosk, cut)
    RESULTS[cut or "no-cut"] = result
    _record(f"scenario {cut or 'no-cut'}", started)
    assert_healthy(result, CUTS[cut])
