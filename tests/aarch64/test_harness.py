"""The aarch64 harness's contract with CI: a machine that cannot run it says why and exits 77, which
.ci/run tells apart from a failure. The harness itself runs with `make test-aarch64`."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent / "run.sh"


def test_without_root_it_exits_77_and_says_why():
    command = ["bash", "-s"]  # the script on stdin: the checkout may be unreadable to another user
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            pytest.skip("runs as root and runuser is missing")
        command = ["runuser", "-u", "nobody", "--", *command]
    done = subprocess.run(
        command, input=SCRIPT.read_text(), cwd="/", capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 77, done.stderr
    assert "needs root" in done.stderr


def test_ci_treats_77_as_not_run_and_calls_the_script_itself():
    ci = (Path(__file__).resolve().parents[2] / ".ci" / "run").read_text()
    assert "tests/aarch64/run.sh || status=$?" in ci
    assert "status == 77" in ci
