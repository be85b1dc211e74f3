"""The Makefile's first-hour promises: `make help` shows real values, and `make test` passes on a
machine whose Pythons are all too new for tflite-runtime 2.14 by skipping that environment, saying why.

`make -B -n` prints everything a target would run, up to date or not, without running it
(recursive `$(MAKE)` lines run, also dry), so these tests read the plan. The too-new machine is
simulated on PATH: `python3.9`, `python3.10` and `python3.11` are hidden (they exit 127, as a
missing command does) and `python3.13` answers the Makefile's version question as a 3.13 does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TFLITE_VENV = ".venv-test-edge-tflite-runtime"
SKIPPED = "skipped the edge tests under tflite-runtime"

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def make(*args: str, path: str | None = None) -> str:
    env = {**os.environ, "PATH": path or os.environ["PATH"]}
    env.pop("TFLITE_PYTHON", None)
    done = subprocess.run(
        ["make", "--no-print-directory", *args], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout


@pytest.fixture
def only_new_pythons(tmp_path: Path) -> str:
    """A PATH on which the only Python is a 3.13."""
    for name, script in {
        "python3.9": "exit 127",
        "python3.10": "exit 127",
        "python3.11": "exit 127",
        "python3.13": "echo 3.13",
    }.items():
        stub = tmp_path / name
        stub.write_text(f"#!/bin/sh\n{script}\n")
        stub.chmod(0o755)
    return f"{tmp_path}{os.pathsep}{os.environ['PATH']}"


def test_help_prints_the_values_not_the_variables() -> None:
    text = make("help", "KIOSK_CONFIG=site/kiosk.py")
    assert "$(" not in text
    assert "serve with the settings in site/kiosk.py" in text


def test_make_kiosk_serves_with_its_settings_file_and_a_port_given_overrides_it_once() -> None:
    assert make("-n", "kiosk", "KIOSK_CONFIG=/nonexistent/k.py").count("--port") == 0
    assert "serve --config /nonexistent/k.py --port 9000" in " ".join(
        make("-n", "kiosk", "KIOSK_CONFIG=/nonexistent/k.py", "PORT=9000").split()
    )


def test_without_python_3_9_to_3_11_make_test_skips_the_tflite_runtime_environment_and_says_why(
    only_new_pythons: str,
) -> None:
    plan = make("-B", "-n", "test", "PYTHON=python3.13", path=only_new_pythons)
    assert TFLITE_VENV not in plan
    assert "test-edge-tflite-runtime" in plan  # named in the reason, never run
    assert plan.count(f"make test: {SKIPPED}") == 2  # before the suite and at the end, where it is read
    assert "pytest tests/edge" in plan  # the kiosk's own environment still runs them


def test_with_a_python_3_11_make_test_runs_the_tflite_runtime_environment(only_new_pythons: str) -> None:
    python311 = "TFLITE_PYTHON=/opt/python3.11/bin/python3"
    plan = make("-B", "-n", "test", "PYTHON=python3.13", python311, path=only_new_pythons)
    assert f"/opt/python3.11/bin/python3 -m venv {TFLITE_VENV}" in plan
    assert f"PNEUMOEDGE_PARITY_PYTHONS={REPO}/{TFLITE_VENV}/bin/python" in plan
    assert SKIPPED not in plan


def test_the_developer_loop_leaves_out_the_slow_browser_and_firmware_tests() -> None:
    plan = make("-B", "-n", "test-dev")
    assert 'pytest -q -m "not slow and not data and not browser and not firmware and not system"' in plan


def test_make_test_leaves_the_booted_system_test_to_its_own_target() -> None:
    """The QEMU system test (marker `system`, about 40 min) is never part of `make test`; make
    test-system runs it, and only it."""
    runs = [line for line in make("-B", "-n", "test").splitlines() if "-m pytest" in line]
    assert runs
    assert all("and not system" in line for line in runs), runs
    system = [line for line in make("-B", "-n", "test-system").splitlines() if "-m pytest" in line]
    assert len(system) == 1
    assert "tests/system -m system" in system[0]
