"""`python -m edge serve` refuses to start unsafely, and says how to fix it."""

from __future__ import annotations

import logging
import os
import shutil
import socket
from pathlib import Path

import pytest

from edge.__main__ import main
from edge.bundle import Bundle
from edge.commands.serve import is_loopback


def serve(caplog: pytest.LogCaptureFixture, *args: str) -> tuple[int, str]:
    """Run the serve command in-process; every case here must stop before it starts serving."""
    with caplog.at_level(logging.ERROR, logger="edge.commands.serve"):
        code = main(["serve", *args])
    return code, caplog.text


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::", "kiosk.local"])
def test_listening_beyond_loopback_needs_an_access_code(
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    tiny_bundle_int8: Bundle,
    tmp_path: Path,
    host: str,
) -> None:
    monkeypatch.delenv("PNEUMOEDGE_ACCESS_CODE", raising=False)
    code, log = serve(
        caplog, "--host", host, "--model", str(tiny_bundle_int8.root), "--data-dir", str(tmp_path)
    )
    assert code == 2
    assert f"cannot start: listening on {host} lets other machines reach the kiosk" in log
    assert "set PNEUMOEDGE_ACCESS_CODE (at least 8 characters) or pass --access-code" in log


def test_a_weak_access_code_is_refused(
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    tiny_bundle_int8: Bundle,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("PNEUMOEDGE_ACCESS_CODE", "1234")
    code, log = serve(
        caplog, "--host", "0.0.0.0", "--model", str(tiny_bundle_int8.root), "--data-dir", str(tmp_path)
    )
    assert code == 2
    assert "the access code is 4 characters long; use at least 8; choose another access code" in log


def test_an_altered_model_stops_the_start(
    caplog: pytest.LogCaptureFixture, tiny_bundle_int8: Bundle, tmp_path: Path
) -> None:
    bundle = Path(shutil.copytree(tiny_bundle_int8.root, tmp_path / "bundle"))
    model = bundle / "model.tflite"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    code, log = serve(caplog, "--model", str(bundle), "--data-dir", str(tmp_path / "data"))
    assert code == 2
    assert "cannot start: the model bundle cannot be used:" in log
    assert "the model file was altered or replaced" in log


def test_a_missing_model_stops_the_start(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    code, log = serve(caplog, "--model", str(tmp_path / "nowhere"), "--data-dir", str(tmp_path / "data"))
    assert code == 2
    assert f"{tmp_path / 'nowhere'} is not a model bundle: bundle.json is missing" in log


def test_an_unusable_data_folder_stops_the_start(
    caplog: pytest.LogCaptureFixture, tiny_bundle_int8: Bundle, tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, log = serve(caplog, "--model", str(tiny_bundle_int8.root), "--data-dir", str(blocker / "data"))
    assert code == 2
    assert "cannot be used" in log and "pass a writable --data-dir" in log


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("10.0.0.5", False),
        ("kiosk.local", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_admin_without_a_pin_stops_the_start(
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    tiny_bundle_int8: Bundle,
    tmp_path: Path,
) -> None:
    monkeypatch.delenv("PNEUMOEDGE_ADMIN_PIN", raising=False)
    code, log = serve(
        caplog, "--admin", "Ada", "--model", str(tiny_bundle_int8.root), "--data-dir", str(tmp_path)
    )
    assert code == 2
    assert "--admin Ada needs the administrator's PIN in the PNEUMOEDGE_ADMIN_PIN variable" in log


def test_a_weak_admin_pin_stops_the_start(
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    tiny_bundle_int8: Bundle,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("PNEUMOEDGE_ADMIN_PIN", "1234")
    code, log = serve(
        caplog, "--admin", "Ada", "--model", str(tiny_bundle_int8.root), "--data-dir", str(tmp_path)
    )
    assert code == 2
    assert "A PIN has 6 to 12 digits. Choose another name or PIN for --admin." in log


def test_an_unknown_time_zone_stops_the_start(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    code, log = serve(caplog, "--timezone", "Mars/Olympus", "--data-dir", str(tmp_path))
    assert code == 2
    assert "TIMEZONE must be an IANA time zone name such as 'Africa/Nairobi'" in log
    assert "got 'Mars/Olympus'" in log


def test_the_free_space_floor_cannot_be_zero(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["serve", "--min-free-mb", "0"])
    assert stopped.value.code == 2
    assert "--min-free-mb: must be a whole number of at least 1, got '0'" in capsys.readouterr().err


def test_a_port_in_use_is_a_clear_message_and_the_pin_leaves_the_environment(
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    tiny_bundle_int8: Bundle,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("PNEUMOEDGE_ADMIN_PIN", "482916")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        code, log = serve(
            caplog,
            *("--model", str(tiny_bundle_int8.root), "--data-dir", str(tmp_path), "--port", port),
            *("--admin", "Ada Mensah"),
        )
    assert code == 2
    assert f"cannot start: port {port} on 127.0.0.1 is already in use" in log
    assert "stop it, or pass another --port" in log and "Traceback" not in log
    assert "PNEUMOEDGE_ADMIN_PIN" not in os.environ  # read once, then removed
