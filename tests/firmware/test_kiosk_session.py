"""kiosk-session.sh: the browser command line it hands the compositor (a stand-in `cage`, since no
Wayland compositor can run in the test sandbox)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.firmware.conftest import run_script, script_env

RECORDING_COMPOSITOR = '#!/usr/bin/env bash\nprintf "%s\\n" "$0" "$@" >"$RECORD"\n'


def _session(tmp_path: Path, **env: str):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("cage", "labwc", "chromium"):
        (bin_dir / name).write_text(RECORDING_COMPOSITOR if name != "chromium" else "#!/bin/sh\n")
        (bin_dir / name).chmod(0o755)
    record = tmp_path / "record"
    result = run_script(
        "kiosk-session.sh",
        env=script_env(tmp_path, PATH=f"{bin_dir}:{os.environ['PATH']}", RECORD=str(record), **env),
    )
    return result, record


def test_cage_runs_chromium_in_kiosk_mode_on_the_local_app(tmp_path: Path) -> None:
    result, record = _session(tmp_path, APP_PORT="8123", XDG_RUNTIME_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr
    argv = record.read_text().splitlines()
    assert Path(argv[0]).name == "cage" and argv[1:3] == ["-s", "--"]
    assert Path(argv[3]).name == "chromium"
    assert argv[argv.index("--kiosk") + 1] == "http://127.0.0.1:8123/"
    assert "--incognito" in argv and f"--user-data-dir={tmp_path}/pneumoedge-chromium" in argv


def test_labwc_gets_the_same_command_as_its_startup_command(tmp_path: Path) -> None:
    result, record = _session(tmp_path, KIOSK_COMPOSITOR="labwc")
    assert result.returncode == 0, result.stderr
    argv = record.read_text().splitlines()
    assert Path(argv[0]).name == "labwc" and argv[1] == "-s"
    assert "--kiosk http://127.0.0.1:8080/" in argv[2]


def test_unknown_compositor_is_refused(tmp_path: Path) -> None:
    result, _ = _session(tmp_path, KIOSK_COMPOSITOR="weston")
    assert result.returncode != 0
    assert "use cage, labwc or auto" in result.stderr


def test_the_hardened_units_runtime_directory_holds_the_session(tmp_path: Path) -> None:
    """The unit hides /run/user (ProtectHome=): the Wayland socket and profile go to its RuntimeDirectory."""
    runtime = tmp_path / "run-pneumoedge-kiosk"
    result, record = _session(tmp_path, RUNTIME_DIRECTORY=str(runtime), XDG_RUNTIME_DIR="/run/user/999")
    assert result.returncode == 0, result.stderr
    assert f"--user-data-dir={runtime}/pneumoedge-chromium" in record.read_text().splitlines()
