"""How long checking the audit log's hash chain takes, for a log of a given size.

    python benchmarks/audit_chain.py [--entries 100000]

The audit page (`/audit`) and `python -m edge audit-verify` walk the whole chain every time. This
writes a log of that many entries through the kiosk's own `append_audit` into a temporary data
folder (one transaction per entry, as the kiosk does) and times `audit_chain.verify` over it, three
times, printing the fastest. Nothing outside the temporary folder is written.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time

from edge.webapp.records import audit_chain, database


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[2])
    parser.add_argument("--entries", type=int, default=100_000, help="entries in the log")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        database.init_db(folder)
        with contextlib.closing(database.connect(database.db_path(folder))) as conn:
            conn.execute("PRAGMA synchronous=OFF")  # filling the log fast; verify only reads
            actor = database.Actor(1, "Amina Nurse")
            for n in range(args.entries):
                database.append_audit(conn, actor, "view_result", n, None, None, "benchmark")
            timings = []
            for _ in range(3):
                start = time.perf_counter()
                report = audit_chain.verify(conn)
                timings.append(time.perf_counter() - start)
    print(f"{report.entries} entries, {report.summary().split(':')[0]}: verify {min(timings) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
