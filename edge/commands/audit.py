"""`python -m edge audit-verify`: check the kiosk's audit log hash chain and name the first broken entry.

Reads the database only (it may run while the kiosk serves). Exit status 0 when the chain is intact
and its protection in place, 1 when an entry was changed, replaced, removed or added outside the
kiosk, or a protection trigger was dropped, 2 when the database cannot be read. `--expect N:SHA256`
also checks a head recorded earlier (in an export's `audit_chain_head`): a log rewritten from
scratch after an edit no longer holds it.
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
import sys
from pathlib import Path

from edge import kiosk_settings
from edge.webapp.records import audit_chain, database


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "audit-verify",
        help="check the audit log's hash chain; report the first broken entry",
        description=__doc__.split("\n\n")[1],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(kiosk_settings.DEFAULTS["DATA_DIR"]),
        help="the kiosk's data folder (on a device: /var/lib/pneumoedge)",
    )
    parser.add_argument(
        "--database",
        type=Path,
        help="check this database file instead of the data folder's (say, a snapshot kept by a rollback)",
    )
    parser.add_argument(
        "--expect",
        type=_head,
        action="append",
        default=[],
        metavar="N:SHA256",
        help="a chain head recorded earlier (an export's audit_chain_head) that must still be in the log",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = args.database or database.db_path(args.data_dir)
    if not path.is_file():
        print(f"audit-verify: no kiosk database at {path}", file=sys.stderr)
        return 2
    try:
        with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as conn:
            report = audit_chain.verify(conn)
            unmatched = [head for head in args.expect if not _holds(conn, head)]
    except sqlite3.Error as e:
        print(f"audit-verify: cannot read {path}: {e}", file=sys.stderr)
        return 2
    print(f"audit log {report.summary()}")
    if report.chained_through:
        print(
            f"entries up to #{report.chained_through} were chained when the kiosk was updated, "
            "not when written"
        )
    for expected in unmatched:
        print(f"BROKEN: the log no longer holds entry #{expected.id} with sha256 {expected.sha256}")
    return 0 if report.intact and not unmatched else 1


def _head(text: str) -> audit_chain.Head:
    number, _, digest = text.partition(":")
    if not (number.isdigit() and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
        raise argparse.ArgumentTypeError(f"{text!r} is not an entry number and its sha256, like 42:9f86d0...")
    return audit_chain.Head(int(number), digest)


def _holds(conn: sqlite3.Connection, expected: audit_chain.Head) -> bool:
    row = conn.execute("SELECT row_sha256 FROM audit_log WHERE id = ?", (expected.id,)).fetchone()
    return row is not None and row[0] == expected.sha256
