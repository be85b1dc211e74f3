"""Provenance: the sha256 of a file and the git commit of the code, recorded the same way by every stage.

Runs, exported bundles and the kiosk's records name what they were made from by these two values,
so they are computed here once: a file is hashed in blocks (a model does not have to fit in memory
twice), and a commit made from a tree with uncommitted changes says so (`-dirty`).
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

UNKNOWN_COMMIT = "unknown"


def sha256_file(path: Path | str) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def git_commit(where: Path | str | None = None) -> str:
    """The commit of the git checkout holding `where` (default: this code), `-dirty` when it has
    uncommitted changes; "unknown" outside a checkout (an installed wheel) or without git."""
    folder = Path(where) if where is not None else Path(__file__).resolve().parent
    try:
        commit = _git(folder, "rev-parse", "HEAD")
        dirty = _git(folder, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN_COMMIT
    return commit + ("-dirty" if dirty else "")


def _git(folder: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", *args], cwd=folder, capture_output=True, text=True, check=True, timeout=30
    )
    return result.stdout.strip()
