"""lib/release.sh's pause_point, the booted system test's hook (tests/system): inert on a device."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware_scripts"


def _pause(tmp_path: Path, step: str, pause_file: Path) -> tuple[int | None, str, str]:
    """Run pause_point STEP for up to 3 s; its exit status (None: still waiting), stdout, stderr."""
    script = f'source "{FIRMWARE}/lib/common.sh"; source "{FIRMWARE}/lib/release.sh"; pause_point {step}'
    proc = subprocess.Popen(
        ["bash", "-c", f"{script}; echo passed"],
        env={"PATH": "/usr/bin:/bin", "PNEUMOEDGE_PAUSE_FILE": str(pause_file), "HOME": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # so the hook's sleep goes with it
    )
    try:
        out, err = proc.communicate(timeout=3)
        return proc.returncode, out, err
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return None, out, err


def test_pause_point_does_nothing_without_the_file_or_for_another_step(tmp_path: Path) -> None:
    assert _pause(tmp_path, "after-switch", tmp_path / "absent")[:2] == (0, "passed\n")
    other = tmp_path / "pause-at"
    other.write_text("before-switch\n")
    assert _pause(tmp_path, "after-switch", other)[:2] == (0, "passed\n")


def test_pause_point_waits_at_the_named_step_and_says_so(tmp_path: Path) -> None:
    named = tmp_path / "pause-at"
    named.write_text("after-switch\n")
    status, out, err = _pause(tmp_path, "after-switch", named)
    assert status is None, "did not wait"
    assert "PNEUMOEDGE-TEST-PAUSE: after-switch" in err
    assert "passed" not in out
