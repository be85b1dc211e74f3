"""One sha256 of a file and one git commit (with `-dirty`) for every stage's provenance."""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

from edge.provenance import UNKNOWN_COMMIT, git_commit, sha256_file


def test_sha256_file_hashes_every_block(tmp_path: Path) -> None:
    data = bytes(range(256)) * 9000  # over two of its 1 MiB blocks
    path = tmp_path / "model.tflite"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


def _git(repo: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args]
    return subprocess.run(command, cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


def test_git_commit_records_a_dirty_tree(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "train.py").write_text("v1\n")
    _git(repo, "add", "train.py")
    _git(repo, "commit", "-q", "-m", "one")
    head = _git(repo, "rev-parse", "HEAD")
    assert git_commit(repo) == head and re.fullmatch("[0-9a-f]{40}", head)
    (repo / "train.py").write_text("v2, not committed\n")
    assert git_commit(repo) == f"{head}-dirty"


def test_git_commit_outside_a_checkout_is_unknown(tmp_path: Path) -> None:
    assert git_commit(tmp_path) == UNKNOWN_COMMIT
