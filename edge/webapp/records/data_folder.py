"""The data folder's health: free space, writability, retention of stored images, crash leftovers.

- Before an upload is scored the free space is checked against a floor (MIN_FREE_MB, at least 1 MB);
  below it the kiosk refuses new work with a plain "storage full" answer (507) instead of failing
  half-way, and `/healthz` reports it (503).
- A full disk must not lock staff out: logging in, reading results and the audit entries those
  write need a little space. The kiosk keeps a preallocated reserve file (`space-reserve`, half the
  floor, at most 16 MB) and deletes it as soon as free space falls below the floor, whoever filled
  the disk; its space is then kept for those small writes, because uploads count it as taken
  (`SpaceReserve.usable_bytes`). It is made again once there is room for it above the floor.
  A reserve file rather than space inside SQLite: the database writes through its WAL file, which
  grows whenever a write does not fit the space it already has, so no row is ever guaranteed to fit
  without new space on the file system.
- `/healthz` is unhealthy when the database or the image folder cannot be written.
- Retention (RETENTION_DAYS, 0 = keep for ever): de-identified images and heatmaps of cases older
  than that are deleted; the results themselves (label, probability, confirmation, audit) stay.
- At start, images that no case refers to (written just before a crash, never committed) are removed.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from flask import Flask, current_app
from flask_babel import lazy_gettext

from edge.webapp.records import database, xray_copies

log = logging.getLogger(__name__)

#: Lazy: shown in the page's language (the API's is English).
STORAGE_FULL_MESSAGE = lazy_gettext(
    "The kiosk's storage is full, so nothing was saved. Ask the technician to free space: export "
    "the confirmed images and the case list, then shorten the image retention or remove old images. "
    "Screening will work again once there is space."
)
#: How often retention runs while the kiosk is up (it also runs at every start).
RETENTION_EVERY_S = 3600.0
RESERVE_FILE = "space-reserve"
RESERVE_MAX_BYTES = 16 * 1024 * 1024
RESERVE_KEY = "pneumoedge.space_reserve"
MB = 1024 * 1024


class StorageFullError(OSError):
    """Free space is below the floor, or a write failed for lack of space."""

    def __init__(self, message: str = STORAGE_FULL_MESSAGE) -> None:
        super().__init__(errno.ENOSPC, message)
        self.message = message


def free_bytes(data_dir: Path | str) -> int:
    return shutil.disk_usage(data_dir).free


class SpaceReserve:
    """Space kept back for logins, reads and their audit entries on a full disk (module docstring).

    `upkeep` runs before every request: a stat and a statvfs, and a file deleted or made only when
    free space crosses the floor.
    """

    def __init__(self, data_dir: Path | str, min_free_mb: float) -> None:
        self.path = Path(data_dir) / RESERVE_FILE
        self.floor = int(min_free_mb * MB)
        self.size = min(RESERVE_MAX_BYTES, self.floor // 2)
        self._lock = threading.Lock()

    def held(self) -> bool:
        try:
            return self.path.stat().st_size >= self.size
        except OSError:
            return False

    def usable_bytes(self) -> int:
        """Free space new cases may use: the file system's, less the reserve when it was released."""
        return free_bytes(self.path.parent) - (0 if self.held() else self.size)

    def upkeep(self) -> None:
        """Release the reserve below the floor; make it again once it fits above the floor.

        Never fails a request: a data folder that cannot even be measured is /healthz's to report.
        """
        with self._lock:
            try:
                free = free_bytes(self.path.parent)
                held = self.held()
                if held and free < self.floor:
                    self.path.unlink()
                    log.warning("free space is below the floor: the space reserve was released for logins")
                elif not held and free - self.size >= self.floor:
                    self._make()
            except OSError as e:
                log.error("the space reserve could not be looked after (%s)", type(e).__name__)

    def _make(self) -> None:
        partial = self.path.with_name(f".{RESERVE_FILE}.partial")
        try:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.size)
                os.fsync(fd)
            finally:
                os.close(fd)
            partial.replace(self.path)
        except OSError as e:
            partial.unlink(missing_ok=True)
            log.warning("the space reserve could not be made (%s); tried again later", type(e).__name__)


def reserve() -> SpaceReserve:
    return current_app.extensions[RESERVE_KEY]


def require_space() -> None:
    """StorageFullError when new cases may not use more space (below the floor, reserve counted)."""
    space = reserve()
    if space.usable_bytes() < space.floor:
        raise StorageFullError()


def is_out_of_space(error: BaseException) -> bool:
    """A write that failed for lack of space: ENOSPC/EDQUOT, or SQLite's 'database or disk is full'."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(error, sqlite3.Error) and "full" in str(error).lower()


@dataclass(frozen=True)
class Health:
    database: str  # "ok" | "error"
    images: str  # "ok" | "error"
    storage: str  # "ok" | "low"
    free_mb: float

    @property
    def ok(self) -> bool:
        return self.database == self.images == self.storage == "ok"


def check_health(conn: sqlite3.Connection | None, data_dir: Path | str, space: SpaceReserve) -> Health:
    """Can the kiosk record a case right now? Writes nothing that stays. `conn` None: it did not open.

    Storage is "low" exactly when an upload would be refused for space (`require_space`)."""
    db_state = "ok"
    try:
        if conn is None:
            raise sqlite3.OperationalError("the database could not be opened")
        conn.execute("SELECT 1 FROM cases LIMIT 1").fetchall()
        conn.execute("BEGIN IMMEDIATE")  # takes the write lock: fails on a read-only database
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS health_probe (x)")
        conn.execute("ROLLBACK")
        with database.db_path(data_dir).open("r+b"):  # the file itself must be writable
            pass
    except (sqlite3.Error, OSError) as e:
        if conn is not None and conn.in_transaction:
            conn.execute("ROLLBACK")
        log.error("health check: the database cannot be written (%s)", type(e).__name__)
        db_state = "error"
    image_state = "ok"
    try:
        folder = xray_copies.images_dir(data_dir)
        probe = folder / f".health-{os.getpid()}-{threading.get_ident()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        log.error("health check: the image folder cannot be written (%s)", type(e).__name__)
        image_state = "error"
    try:
        free = max(0, space.usable_bytes())
    except OSError:
        free = 0
    storage = "ok" if free >= space.floor else "low"
    return Health(db_state, image_state, storage, round(free / MB, 1))


def apply_retention(conn: sqlite3.Connection, data_dir: Path | str, days: float) -> int:
    """Delete images and heatmaps of cases older than `days` (0: keep all); the results stay.

    Returns how many image files were deleted."""
    if days <= 0:
        return 0
    cutoff = (datetime.now(timezone.utc) - timedelta(days=days)).isoformat(timespec="milliseconds")
    cutoff = cutoff.replace("+00:00", "Z")
    # An image shared by several cases (the same upload screened again) goes when its newest case does.
    rows = conn.execute(
        "SELECT image_file FROM cases WHERE image_file IS NOT NULL GROUP BY image_file "
        "HAVING max(created_utc) < ?",
        (cutoff,),
    ).fetchall()
    names = [row["image_file"] for row in rows]
    with database.write(conn):
        conn.executemany("UPDATE cases SET image_file = NULL WHERE image_file = ?", [(n,) for n in names])
        conn.execute(
            "DELETE FROM heatmaps WHERE case_id IN (SELECT id FROM cases WHERE created_utc < ?)", (cutoff,)
        )
    removed = 0
    for name in names:  # after the commit: a crash in between leaves files that the start-up sweep removes
        try:
            xray_copies.path_of(data_dir, name).unlink(missing_ok=True)
            removed += 1
        except (OSError, ValueError) as e:
            log.warning("retention: could not delete a stored image (%s)", type(e).__name__)
    if names:
        log.info("retention: deleted %d stored images of cases older than %g days", removed, days)
    return removed


def remove_orphans(conn: sqlite3.Connection, data_dir: Path | str) -> int:
    """Delete stored images that no case refers to (left by a crash between image and commit)."""
    referenced = {
        row[0] for row in conn.execute("SELECT DISTINCT image_file FROM cases WHERE image_file IS NOT NULL")
    }
    removed = 0
    for path in xray_copies.images_dir(data_dir).glob("*.png"):
        if path.name not in referenced:
            log.warning("removing an image without a case, left by an interrupted upload")
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def init_app(app: Flask) -> None:
    """At start: remove crash leftovers, apply retention and make the space reserve; then keep the
    reserve before every request and apply retention every hour."""
    data_dir = app.config["DATA_DIR"]
    space = SpaceReserve(data_dir, float(app.config["MIN_FREE_MB"]))
    app.extensions[RESERVE_KEY] = space
    space.upkeep()
    app.before_request(space.upkeep)
    conn = database.connect(database.db_path(data_dir))
    try:
        remove_orphans(conn, data_dir)
        apply_retention(conn, data_dir, float(app.config["RETENTION_DAYS"]))
    finally:
        conn.close()
    if float(app.config["RETENTION_DAYS"]) > 0 and not app.config.get("TESTING"):
        _start_retention_timer(data_dir, float(app.config["RETENTION_DAYS"]))


def _start_retention_timer(data_dir: str, days: float) -> None:
    def run() -> None:
        conn = database.connect(database.db_path(data_dir))
        try:
            apply_retention(conn, data_dir, days)
        except (OSError, sqlite3.Error) as e:
            log.error("retention failed (%s); it is tried again in an hour", type(e).__name__)
        finally:
            conn.close()
        _start_retention_timer(data_dir, days)

    timer = threading.Timer(RETENTION_EVERY_S, run)
    timer.daemon = True
    timer.start()


def remove_if_unreferenced(conn: sqlite3.Connection, data_dir: Path | str, name: str) -> None:
    """After a failed commit: delete the image just written unless another case already uses it."""
    try:
        if conn.execute("SELECT 1 FROM cases WHERE image_file = ?", (name,)).fetchone() is None:
            xray_copies.path_of(data_dir, name).unlink(missing_ok=True)
    except (OSError, sqlite3.Error, ValueError) as e:
        log.warning("could not remove an uncommitted image (%s); it goes at the next start", type(e).__name__)
