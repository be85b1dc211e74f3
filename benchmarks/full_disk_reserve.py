"""How many audited API reads the kiosk's space reserve carries once its file system is 100% full.

Root only (it mounts a tmpfs). Starts `python -m edge serve` with its data folder on a fresh tmpfs
of --fs-mb, records one case, fills the file system to the last byte, then reads that case through
the API (each read writes an audit entry) until a read fails or --max-reads is reached. The reserve
is half of --min-free-mb (at most 16 MB); see docs/kiosk.md, "Full disk".

    sudo .venv/bin/python benchmarks/full_disk_reserve.py --model tests/fixtures/tiny-int8
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lab.synthetic import xray_bytes  # noqa: E402

#: The benchmark's own operator access code: the API needs a credential (docs/kiosk.md).
ACCESS_CODE = "full-disk-benchmark"
BOUNDARY = "full-disk-boundary"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="model bundle folder")
    parser.add_argument("--fs-mb", type=int, default=8, help="size of the tmpfs")
    parser.add_argument("--min-free-mb", type=int, default=2, help="the kiosk's free-space floor")
    parser.add_argument("--max-reads", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="full-disk-") as work:
        mount_point = Path(work) / "fs"
        mount_point.mkdir()
        options = f"size={args.fs_mb}m"
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount_point)], check=True)
        try:
            port = free_port()
            with (Path(work) / "server.log").open("ab") as log:
                server = start_server(args.model, mount_point / "data", port, args.min_free_mb, log)
                try:
                    wait_healthy(port, server)
                    return measure(port, mount_point, args.max_reads)
                finally:
                    server.terminate()
                    server.wait(timeout=15)
        finally:
            subprocess.run(["umount", "-l", str(mount_point)], check=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    model: Path, data_dir: Path, port: int, min_free_mb: int, log: IO[bytes]
) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "edge", "serve", "--model", str(model), "--host", "127.0.0.1",
        "--port", str(port), "--data-dir", str(data_dir), "--min-free-mb", str(min_free_mb),
    ]  # fmt: skip
    env = {**os.environ, "PNEUMOEDGE_ACCESS_CODE": ACCESS_CODE}
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_healthy(port: int, server: subprocess.Popen[bytes], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the kiosk exited with {server.returncode}; see its log")
        try:
            if request(port, "GET", "/healthz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the kiosk did not answer /healthz within {timeout_s:.0f} s")


def request(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        headers = {"Authorization": f"Bearer {ACCESS_CODE}"}
        if body:
            headers["Content-Type"] = f"multipart/form-data; boundary={BOUNDARY}"
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def upload_body(jpeg: bytes, case_ref: str) -> bytes:
    """A multipart/form-data body with a case reference and one file."""
    return (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="case_ref"\r\n\r\n{case_ref}\r\n'
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="xray.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + jpeg
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def measure(port: int, mount_point: Path, max_reads: int) -> int:
    status, payload = request(
        port, "POST", "/api/v1/predict", upload_body(xray_bytes(seed=1, width=300, height=360), "FULL-1")
    )
    if status != 201:
        raise SystemExit(f"the kiosk answered {status}: {payload[:300]!r}")
    case = json.loads(payload)
    with (mount_point / "filler").open("wb", buffering=0) as out:
        for chunk in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    out.write(b"\0" * chunk)
            except OSError:
                pass
    print(f"free bytes after the fill: {os.statvfs(mount_point).f_bavail * os.statvfs(mount_point).f_frsize}")
    started, reads = time.monotonic(), 0
    while reads < max_reads:
        status, _ = request(port, "GET", f"/api/v1/results/{case['id']}")
        if status != 200:
            print(f"the first failed read came after {reads} audited reads: HTTP {status}")
            return 0
        reads += 1
    print(f"{reads} audited reads, none failed, in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
