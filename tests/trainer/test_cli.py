"""The command line: help for every subcommand, and fix-it messages before any heavy work starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from trainer.__main__ import main

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("train", ["--out", "--architecture", "--min-recall", "(default: 0.97)"]),
        ("evaluate", ["--run", "--split", "--data"]),
        ("sweep", ["--optimizers", "--learning-rates", "--batch-sizes", "--seeds", "(default: 1500)"]),
    ],
)
def test_help_of_each_subcommand(command: str, expected: list[str], capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for fragment in expected:
        assert fragment in text


def test_module_help_runs_as_a_program():
    result = subprocess.run(
        [sys.executable, "-m", "trainer", "--help"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    assert all(name in result.stdout for name in ("train", "evaluate", "sweep"))


def test_sweep_needs_two_seeds(tmp_path: Path):
    with pytest.raises(SystemExit, match="at least two seeds"):
        main(["sweep", "--out", str(tmp_path), "--weights", "", "--seeds", "1"])


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_missing_weights_file_is_named(command: str, tmp_path: Path):
    with pytest.raises(SystemExit, match=r"no-such\.h5 does not exist"):
        main([command, "--out", str(tmp_path), "--weights", str(tmp_path / "no-such.h5")])


def test_invalid_setting_is_refused_with_its_range(tmp_path: Path):
    with pytest.raises(SystemExit, match=r"val_fraction must be in \(0, 0.5\)"):
        main(["train", "--out", str(tmp_path), "--val-fraction", "0.7", "--data", str(tmp_path)])


def test_unknown_optimizer_is_a_usage_error(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", "--out", "x", "--optimizers", "adagrad"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'adagrad'" in capsys.readouterr().err


def test_missing_data_folder_is_a_message_not_a_traceback(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, "-m", "trainer", "train", "--data", str(tmp_path), "--out", str(tmp_path / "run")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "expected the Kermany layout" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["train", "folds"])
def test_a_bad_data_folder_is_refused_before_tensorflow_loads(command: str, tmp_path: Path):
    probe = (
        "import sys\nfrom trainer.__main__ import main\n"
        f"try:\n    main([{command!r}, '--data', sys.argv[1], '--out', sys.argv[2]])\n"
        "except SystemExit as e:\n    print(e, file=sys.stderr)\n"
        "print('tensorflow' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path), str(tmp_path / "run")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert f"{command}: {tmp_path / 'train'} does not exist: expected the Kermany layout" in result.stderr
    assert result.stdout.strip() == "False"


def test_the_sweep_module_does_not_load_tensorflow():
    probe = "import sys, trainer.sweep\nprint('tensorflow' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.stdout.strip() == "False", result.stderr
