"""How many audited API reads the kiosk's space reserve carries once its file system is 100% full.

Root only (it mounts a tmpfs). Starts `python -m edge serve` with its data folder on a fresh tmpfs
of --fs-mb, records one case, fills the file system to the last byte, then reads that case through
the API (each read writes an audit entry) until a read fails or --max-reads is reached. The reserve
is half of --min-free-mb (at most 16 MB); see docs/kiosk.md, "Full disk".

    sudo .venv/bin/python benchmarks/full_disk_reserve.py --model tests/fixtures/tiny-int8
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.edge.webapp.bad_uploads import MULTIPART, file_body  # noqa: E402
from tests.edge.webapp.kiosk_server import KioskServer  # noqa: E402
from tests.tiny_bundle import xray_bytes  # noqa: E402


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
            floor = ("--min-free-mb", str(args.min_free_mb))
            kiosk = KioskServer(args.model, mount_point / "data", extra_args=floor)
            kiosk.log_path = Path(work) / "server.log"
            kiosk.start()
            try:
                return measure(kiosk, mount_point, args.max_reads)
            finally:
                kiosk.stop()
        finally:
            subprocess.run(["umount", "-l", str(mount_point)], check=False)


def measure(kiosk: KioskServer, mount_point: Path, max_reads: int) -> int:
    body = file_body(xray_bytes(seed=1, width=300, height=360), case_ref=b"FULL-1")
    case = kiosk.request("POST", "/api/v1/predict", body, MULTIPART).json()
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
        reply = kiosk.request("GET", f"/api/v1/results/{case['id']}")
        if reply.status != 200:
            print(f"the first failed read came after {reads} audited reads: HTTP {reply.status}")
            return 0
        reads += 1
    print(f"{reads} audited reads, none failed, in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
