"""A stand-in for the kiosk web app in the quick firmware tests: /healthz of the release `current` names.

The test `systemctl` stub starts it instead of serve.sh when FAKE_KIOSK is set. Like serve.sh it pins
the release `$INSTALL_PREFIX/current` points at when it starts, and serves that release's model sha256
(from its MANIFEST) on $APP_HOST:$APP_PORT. A release holding a file named BROKEN makes it exit at
once, like an app that cannot start; if that file says `migrate`, it first moves the records
database in $DATA_DIR to a newer schema, as a newer release would; if it says `hang`, the app stays
up but never answers, so a health check waits out its whole timeout. Standard library only: it runs
with the device's Python.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path


def model_sha256(release: Path) -> str:
    """The model_sha256 line of the release's MANIFEST."""
    for line in (release / "MANIFEST").read_text().splitlines():
        if line.startswith("model_sha256="):
            return line.split("=", 1)[1]
    raise ValueError(f"{release}/MANIFEST has no model_sha256")


def main() -> int:
    release = (Path(os.environ["INSTALL_PREFIX"]) / "current").resolve()
    if (release / "BROKEN").exists() and "hang" in (release / "BROKEN").read_text():
        while True:  # alive, never listening: stopped by the systemctl stub's signal
            time.sleep(60)
    if (release / "BROKEN").exists():
        database = Path(os.environ["DATA_DIR"]) / "pneumoedge.sqlite3"
        if "migrate" in (release / "BROKEN").read_text() and database.exists():
            with contextlib.closing(sqlite3.connect(database)) as conn:
                conn.executescript(
                    "BEGIN; CREATE TABLE IF NOT EXISTS newer (x); PRAGMA user_version=99; COMMIT;"
                )
        print(f"release {release.name} is broken; exiting", file=sys.stderr)
        return 1
    body = json.dumps({"status": "ok", "model": {"sha256": model_sha256(release)}}).encode()

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/healthz" else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

    server = HTTPServer((os.environ.get("APP_HOST", "127.0.0.1"), int(os.environ["APP_PORT"])), Health)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
