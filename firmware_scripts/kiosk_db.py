"""Kiosk database snapshots around an update, so that a rollback finds a database it can read.

A new release may migrate the records database (SQLite `PRAGMA user_version`) when it starts, and
the release before it refuses a database newer than it knows. update.sh therefore takes a snapshot
with SQLite's online backup API just before it switches (the running kiosk keeps writing; the copy
is consistent), and when it rolls back to a release whose snapshot has an older schema than the live
database, it restores that snapshot in place (same file, owner and mode). The live database is kept
first as another snapshot, so no record is thrown away: records made by the newer release are in
`snapshots/from-<release>-<time>.sqlite3`.

It runs as root (update.sh), but the data folder belongs to the kiosk's service user, who could
replace `snapshots` or a database with a link to any file. So it first drops to the data folder's
owner (a link then reaches nothing that user could not already write), and it refuses links for
the folder, `snapshots` and the files it reads or replaces.

Standard library only: it runs with the system Python, outside any release's venv.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sqlite3
import sys
import time
from pathlib import Path

log = logging.getLogger("kiosk_db")

#: The kiosk's database file in its data folder (edge/webapp/records/database.py DB_FILE).
DB_FILE = "pneumoedge.sqlite3"
SNAPSHOTS = "snapshots"


class LinkRefusedError(OSError):
    """A path in the data folder is a symbolic link; it is never followed."""


def no_link(path: Path) -> Path:
    """`path` itself, after checking that it is not a symbolic link."""
    if path.is_symlink():
        raise LinkRefusedError(f"{path} is a symbolic link; refusing to follow it (data folder altered)")
    return path


def drop_to_owner(data_dir: Path) -> None:
    """As root, become the owner of the data folder (the kiosk's service user) for the rest of the run."""
    if os.geteuid() != 0:
        return
    owner = no_link(data_dir).lstat()
    if owner.st_uid == 0:
        return
    os.setgroups([])
    os.setgid(owner.st_gid)
    os.setuid(owner.st_uid)
    log.info("running as the data folder's owner (uid %d), not root", owner.st_uid)


def schema_version(path: Path) -> int:
    """The database's `PRAGMA user_version` (the kiosk's schema version)."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def copy_database(source: Path, dest: Path) -> None:
    """Consistent copy of a live database to a new file (mode 0600: it holds patient records)."""
    tmp = no_link(dest.with_name(dest.name + ".tmp"))
    tmp.unlink(missing_ok=True)
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o600))
    with contextlib.closing(sqlite3.connect(source)) as src, contextlib.closing(sqlite3.connect(tmp)) as dst:
        src.backup(dst)
    _fsync(tmp)
    tmp.replace(dest)
    _fsync(dest.parent)


def snapshot(data_dir: Path, release: str, keep: tuple[str, ...] = ()) -> int:
    """Snapshot the live database as the state `release` leaves it in; drop older snapshots of
    releases, except those of `keep` (a rollback still needs the target's own snapshot)."""
    live = no_link(data_dir / DB_FILE)
    if not live.is_file():
        log.info("no database at %s yet; nothing to snapshot", live)
        return 0
    folder = no_link(data_dir / SNAPSHOTS)
    folder.mkdir(mode=0o700, exist_ok=True)
    dest = no_link(folder / f"{release}.sqlite3")
    copy_database(live, dest)
    for old in folder.glob("*.sqlite3"):
        if old != dest and not old.name.startswith("from-") and old.stem not in keep:
            no_link(old).unlink()
    log.info("snapshot of %s (schema %d) for a rollback to %s: %s", live, schema_version(dest), release, dest)
    return 0


def restore(data_dir: Path, release: str, leaving: str) -> int:
    """Before `release` runs again: give it its snapshot if the live schema differs from the one it left."""
    live = no_link(data_dir / DB_FILE)
    saved = no_link(no_link(data_dir / SNAPSHOTS) / f"{release}.sqlite3")
    if not live.is_file() or not saved.is_file():
        log.info("no snapshot for %s (or no database); the database is kept as it is", release)
        return 0
    live_version, saved_version = schema_version(live), schema_version(saved)
    if live_version == saved_version:
        log.info("schema %d is the one release %s left; the database is kept as it is", live_version, release)
        return 0
    # Newer: the release left migrated it. Older: an older snapshot was restored since (a rollback
    # whose target then failed): either way `release` gets back the database as it left it.
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    kept = no_link(data_dir / SNAPSHOTS / f"from-{leaving}-{stamp}.sqlite3")
    copy_database(live, kept)
    with contextlib.closing(sqlite3.connect(saved)) as src, contextlib.closing(sqlite3.connect(live)) as dst:
        src.backup(dst)
    _fsync(live)
    log.warning(
        "release %s changed the database schema (%d -> %d): restored the snapshot taken before the switch; "
        "records made since are kept in %s",
        leaving,
        saved_version,
        live_version,
        kept,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    take = sub.add_parser("snapshot", help="copy the live database before switching away from RELEASE")
    take.add_argument("--data-dir", type=Path, required=True)
    take.add_argument("--release", required=True, help="the release the snapshot belongs to")
    take.add_argument("--keep", action="append", default=[], help="also keep this release's snapshot")
    back = sub.add_parser("restore", help="give RELEASE its snapshot if the live schema is newer")
    back.add_argument("--data-dir", type=Path, required=True)
    back.add_argument("--release", required=True, help="the release being rolled back to")
    back.add_argument("--leaving", required=True, help="the release being left")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s [kiosk_db] %(message)s")
    try:
        drop_to_owner(args.data_dir)
        if args.command == "snapshot":
            return snapshot(args.data_dir, args.release, tuple(args.keep))
        return restore(args.data_dir, args.release, args.leaving)
    except (sqlite3.Error, OSError) as e:
        log.error("%s failed: %s", args.command, e)
        return 1


if __name__ == "__main__":
    sys.exit(main())
