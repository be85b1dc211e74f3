"""firstboot.sh: the golden image's only questions, the clinic's name and the access code."""

from __future__ import annotations

import sys
from pathlib import Path

from edge.webapp.access import request_guard
from tests.firmware.conftest import REPO, run_script, script_env


def _device(tmp_path: Path) -> Path:
    """A --root tree whose current release runs this checkout's kiosk code with this Python."""
    root = tmp_path / "root"
    release = root / "opt/pneumoedge/releases/1.0.0"
    (release / "venv/bin").mkdir(parents=True)
    (release / "venv/bin/python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (release / "venv/bin/python").chmod(0o755)
    (release / "app").symlink_to(REPO)
    (root / "opt/pneumoedge/current").symlink_to("releases/1.0.0")
    (root / "var/lib/pneumoedge").mkdir(parents=True)
    return root


def test_asks_the_name_and_the_code_and_stores_them(tmp_path: Path) -> None:
    root = _device(tmp_path)
    codes = ["short", "short", "clinic-code-42", "clinic-code-4", "clinic-code-42", "clinic-code-42"]
    answers = "\n".join(["Kisumu West Health Centre", *codes]) + "\n"
    result = run_script("firstboot.sh", "--root", root, env=script_env(tmp_path), stdin=answers)
    assert result.returncode == 0, result.stderr
    assert 'CLINIC_NAME="Kisumu West Health Centre"' in (root / "etc/pneumoedge/site.conf").read_text()
    assert "too short" in result.stderr and "the two codes differ" in result.stderr
    code_hash = request_guard.load_access_code_hash(root / "var/lib/pneumoedge")
    assert code_hash is not None and "clinic-code-42" not in code_hash


def test_a_name_with_shell_characters_is_asked_again(tmp_path: Path) -> None:
    root = _device(tmp_path)
    answers = 'Clinic "$(reboot)"\nSt. Mary\'s (Annex)\nclinic-code-42\nclinic-code-42\n'
    result = run_script("firstboot.sh", "--root", root, env=script_env(tmp_path), stdin=answers)
    assert result.returncode == 0, result.stderr
    assert 'CLINIC_NAME="St. Mary\'s (Annex)"' in (root / "etc/pneumoedge/site.conf").read_text()


def test_no_answer_leaves_the_setup_for_the_next_boot(tmp_path: Path) -> None:
    root = _device(tmp_path)
    result = run_script("firstboot.sh", "--root", root, env=script_env(tmp_path), stdin="")
    assert result.returncode != 0 and "runs again at the next boot" in result.stderr
    assert not (root / "etc/pneumoedge/site.conf").exists()
