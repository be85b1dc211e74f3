"""A real kiosk for integration tests: `python -m edge serve` in a subprocess on a free loopback port."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
START_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def csrf_token(page: bytes) -> str:
    match = re.search(rb'name="csrf_token" value="([^"]+)"', page)
    if match is None:
        raise RuntimeError("the page carries no CSRF token")
    return match.group(1).decode()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class KioskServer:
    """Start, query and stop (or kill) one kiosk server process."""

    def __init__(
        self,
        model_dir: Path,
        data_dir: Path,
        access_code: str | None = None,
        threads: int = 4,
        admin: tuple[str, str] | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.model_dir = model_dir
        self.data_dir = data_dir
        self.access_code = access_code
        self.threads = threads
        self.admin = admin  # (name, PIN): created at start with --admin
        self.extra_args = extra_args
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.api_token: str | None = None  # made once the kiosk runs: the API needs a credential
        self.log_path = data_dir.parent / f"{data_dir.name}-server.log"

    def start(self) -> KioskServer:
        self.port = free_port()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("PNEUMOEDGE_ACCESS_CODE", None)
        if self.access_code:
            env["PNEUMOEDGE_ACCESS_CODE"] = self.access_code
        command = [
            sys.executable, "-m", "edge", "--log-level", "INFO", "serve",
            "--model", str(self.model_dir), "--host", "127.0.0.1", "--port", str(self.port),
            "--data-dir", str(self.data_dir), "--threads", str(self.threads), *self.extra_args,
        ]  # fmt: skip
        if self.admin:
            command += ["--admin", self.admin[0]]
            env["PNEUMOEDGE_ADMIN_PIN"] = self.admin[1]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        self._wait_until_healthy()
        if self.api_token is None:
            self.api_token = self.make_api_token("integration tests")
        return self

    def make_api_token(self, name: str) -> str:
        """An API token, made in the kiosk's database as an administrator would on the Staff page."""
        from edge.webapp.access import api_tokens
        from edge.webapp.records import database

        conn = database.connect(database.db_path(self.data_dir))
        try:
            return api_tokens.create(conn, name, database.Actor(None, "test set-up"))[1]
        finally:
            conn.close()

    def _wait_until_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"the kiosk exited with {self.process.returncode}:\n{self.log()}")
            try:
                if self.request("GET", "/healthz", timeout=2).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the kiosk did not answer /healthz within {START_TIMEOUT_S:.0f} s:\n{self.log()}")

    def peak_rss_mb(self) -> float:
        """The server process's peak resident memory so far (VmHWM), in MB."""
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmHWM in /proc status")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 60.0,
    ) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            all_headers = dict(headers or {})
            if content_type:
                all_headers["Content-Type"] = content_type
            credential = self.access_code or self.api_token
            if credential and "Authorization" not in all_headers:
                all_headers["Authorization"] = f"Bearer {credential}"
            if not all_headers.get("Authorization", True):
                del all_headers["Authorization"]  # "": send none
            conn.request(method, path, body=body, headers=all_headers)
            response = conn.getresponse()
            return Reply(response.status, dict(response.getheaders()), response.read())
        finally:
            conn.close()

    def log_in(self, name: str, pin: str) -> tuple[str, str]:
        """Log in through the form as a browser does: (session cookie, CSRF token for later forms)."""
        page = self.request("GET", "/login", headers={"Authorization": ""})
        cookie = page.headers.get("Set-Cookie", "").split(";")[0]
        form = {"name": name, "pin": pin, "csrf_token": csrf_token(page.body)}
        reply = self.request(
            "POST",
            "/login",
            urllib.parse.urlencode(form).encode(),
            "application/x-www-form-urlencoded",
            headers={"Cookie": cookie, "Authorization": ""},
        )
        if reply.status != 302:
            raise RuntimeError(f"login answered {reply.status}: {reply.body[:300]!r}")
        cookie = reply.headers.get("Set-Cookie", "").split(";")[0] or cookie
        home = self.request("GET", "/", headers={"Cookie": cookie, "Authorization": ""})
        cookie = home.headers.get("Set-Cookie", "").split(";")[0] or cookie  # now holds the CSRF secret
        return cookie, csrf_token(home.body)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, as in a crash or a pulled plug (for the process)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=15)
