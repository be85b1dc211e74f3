"""kiosk_health.py against the real kiosk: the health check, and the systemd watchdog it feeds."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.bundle import Bundle
from tests.firmware.conftest import FIRMWARE, REPO, free_port

HEALTH = [sys.executable, str(FIRMWARE / "kiosk_health.py")]


def kiosk_command(bundle: Bundle, port: int, data_dir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "edge",
        "serve",
        "--model",
        str(bundle.root),
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
    ]


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), **extra}


@pytest.fixture
def kiosk(tiny_bundle_int8: Bundle, tmp_path: Path) -> Iterator[str]:
    """A real kiosk on a free port; yields its /healthz URL."""
    port = free_port()
    process = subprocess.Popen(kiosk_command(tiny_bundle_int8, port, tmp_path / "data"), env=_env())
    try:
        yield f"http://127.0.0.1:{port}/healthz"
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_check_passes_for_the_expected_model(kiosk: str, tiny_bundle_int8: Bundle) -> None:
    result = subprocess.run(
        [
            *HEALTH,
            "check",
            "--url",
            kiosk,
            "--expect-sha256",
            tiny_bundle_int8.model_sha256,
            "--timeout",
            "60",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_check_fails_for_another_model(kiosk: str, tiny_bundle_int8: Bundle) -> None:
    subprocess.run([*HEALTH, "check", "--url", kiosk, "--timeout", "60"], check=True, capture_output=True)
    result = subprocess.run(
        [*HEALTH, "check", "--url", kiosk, "--expect-sha256", "f" * 64, "--timeout", "2"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert f"serving model sha256 {tiny_bundle_int8.model_sha256}, expected {'f' * 64}" in result.stderr


def test_check_fails_when_nothing_answers() -> None:
    url = f"http://127.0.0.1:{free_port()}/healthz"
    result = subprocess.run(
        [*HEALTH, "check", "--url", url, "--timeout", "1"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert "no valid answer" in result.stderr


class NotifySocket:
    """A listening sd_notify socket, as systemd offers a Type=notify service."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))

    def next_message(self, timeout: float) -> str | None:
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(4096).decode()
        except TimeoutError:
            return None

    def wait_for(self, wanted: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            message = self.next_message(left)
            if message is not None and wanted in message.splitlines():
                return True
        return False

    def drain(self) -> None:
        while self.next_message(0.05) is not None:
            pass


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_supervise_feeds_the_watchdog_only_while_healthy(tiny_bundle_int8: Bundle, tmp_path: Path) -> None:
    notify = NotifySocket(tmp_path / "notify.sock")
    port = free_port()
    supervisor = subprocess.Popen(
        [
            *HEALTH,
            "supervise",
            "--url",
            f"http://127.0.0.1:{port}/healthz",
            "--interval",
            "0.5",
            "--",
            *kiosk_command(tiny_bundle_int8, port, tmp_path / "data"),
        ],
        env=_env(NOTIFY_SOCKET=str(notify.path)),
    )
    try:
        assert notify.wait_for("READY=1", timeout=90), "never reported READY"
        assert notify.wait_for("WATCHDOG=1", timeout=5)
        (app,) = _children(supervisor.pid)
        os.kill(app, signal.SIGSTOP)  # the app hangs: alive, but HTTP does not answer
        time.sleep(1.5)
        notify.drain()
        assert not notify.wait_for("WATCHDOG=1", timeout=4), "fed the watchdog while the app was hung"
        os.kill(app, signal.SIGCONT)
        assert notify.wait_for("WATCHDOG=1", timeout=15), "did not resume feeding after recovery"
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=30) == 0  # a requested stop is not a failure
        assert not Path(f"/proc/{app}").exists() or "Z" in Path(f"/proc/{app}/stat").read_text().split()[2]
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()


def test_supervise_passes_on_the_app_failure(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/healthz"
    result = subprocess.run(
        [*HEALTH, "supervise", "--url", url, "--", sys.executable, "-c", "raise SystemExit(3)"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 3  # so Restart=on-failure restarts it


STUB_APP = """
import http.server, json, sys, time
time.sleep(2)  # starting up: nothing listens yet
class Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"status": "ok", "model": {"sha256": "x"}}).encode()
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Ok).serve_forever()
"""


def test_supervise_reports_ready_soon_after_the_app_answers_not_a_watchdog_interval_later(
    tmp_path: Path,
) -> None:
    """Found by the booted system test: with WatchdogSec=60 the first probe fails (the app is still
    starting) and the next one came 20 s later, so READY, and every restart in an update's health
    check, waited up to a third of WatchdogSec after the app was already serving."""
    notify = NotifySocket(tmp_path / "notify.sock")
    port = free_port()
    started = time.monotonic()
    app = [sys.executable, "-c", STUB_APP, str(port)]
    supervisor = subprocess.Popen(
        [*HEALTH, "supervise", "--url", f"http://127.0.0.1:{port}/healthz", "--", *app],
        env=_env(NOTIFY_SOCKET=str(notify.path), WATCHDOG_USEC="60000000"),  # probes every 20 s once ready
    )
    try:
        assert notify.wait_for("READY=1", timeout=15), "never reported READY"
        assert time.monotonic() - started < 12
    finally:
        supervisor.terminate()
        supervisor.wait(timeout=30)
