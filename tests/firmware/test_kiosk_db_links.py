"""kiosk_db.py runs as root in a folder the kiosk's service user owns: it never follows links there.

Issue 17, item 5: replacing `snapshots` with a link made root delete a foreign `*.sqlite3` and write
a root-owned file elsewhere. Run as root (as on a device), the data folder is given to another user
first, so the privilege drop is exercised too; as a normal user only the link refusal is.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge.webapp.records import database
from tests.firmware.conftest import FIRMWARE

#: A user that exists on every Debian system and owns nothing of ours (like the kiosk's service user).
NOBODY = 65534


def _kiosk_db(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(FIRMWARE / "kiosk_db.py"), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _give_to_service_user(data: Path) -> None:
    """As root, make the data folder and everything in it belong to an unprivileged user."""
    if os.geteuid() != 0:
        return
    for parent in data.parents:  # pytest's 0700 folders: let the user reach the data folder
        if parent == Path(parent.anchor) or parent.stat().st_uid != 0:
            break
        parent.chmod(parent.stat().st_mode | 0o001)
    for path in (data, *data.rglob("*")):
        os.lchown(path, NOBODY, NOBODY)


@pytest.fixture
def data_and_foreign(tmp_path: Path) -> tuple[Path, Path]:
    """A data folder with the kiosk's database and `snapshots` linked to a foreign folder."""
    data = tmp_path / "records"
    data.mkdir()
    database.init_db(data)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "victim.sqlite3").write_text("someone else's file\n")
    (data / "snapshots").symlink_to(foreign)
    _give_to_service_user(data)
    return data, foreign


def test_a_linked_snapshots_folder_is_never_followed(data_and_foreign: tuple[Path, Path]) -> None:
    data, foreign = data_and_foreign
    result = _kiosk_db("snapshot", "--data-dir", data, "--release", "1.0.0")
    assert result.returncode != 0
    assert "symbolic link" in result.stderr
    assert sorted(p.name for p in foreign.iterdir()) == ["victim.sqlite3"]
    assert (foreign / "victim.sqlite3").read_text() == "someone else's file\n"


def test_restore_never_follows_a_linked_snapshots_folder(data_and_foreign: tuple[Path, Path]) -> None:
    data, foreign = data_and_foreign
    result = _kiosk_db("restore", "--data-dir", data, "--release", "1.0.0", "--leaving", "2.0.0")
    assert result.returncode != 0
    assert "symbolic link" in result.stderr
    assert sorted(p.name for p in foreign.iterdir()) == ["victim.sqlite3"]


@pytest.mark.skipif(os.geteuid() != 0, reason="the privilege drop needs root")
def test_as_root_it_writes_as_the_data_folders_owner(tmp_path: Path) -> None:
    data = tmp_path / "records"
    data.mkdir()
    database.init_db(data)
    _give_to_service_user(data)
    result = _kiosk_db("snapshot", "--data-dir", data, "--release", "1.0.0")
    assert result.returncode == 0, result.stderr
    snapshot = data / "snapshots" / "1.0.0.sqlite3"
    assert snapshot.stat().st_uid == NOBODY and (data / "snapshots").stat().st_uid == NOBODY
    assert snapshot.stat().st_mode & 0o777 == 0o600
