"""The figures are real PNG files, written whole, with or without a training history."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.metrics import binary_metrics
from trainer import plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HISTORY = """epoch,accuracy,auc,loss,val_accuracy,val_auc,val_loss
0,0.6,0.62,0.70,0.55,0.60,0.72
1,0.7,0.75,0.60,0.65,0.70,0.66
2,0.8,0.85,0.50,0.75,0.80,0.58
"""


@pytest.fixture
def scored() -> tuple[np.ndarray, np.ndarray, dict]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 120)
    s = np.clip(rng.random(120) * 0.8 + 0.3 * y, 0, 1)
    return y, s, binary_metrics(y, s, 0.4, n_boot=50)


def test_all_plots_are_png_files(tmp_path: Path, scored):
    (tmp_path / "history.csv").write_text(HISTORY)
    written = plots.plot_all(tmp_path, *scored, head_epochs=1, set_name="validation")
    assert [p.name for p in written] == [plots.ROC_FILE, plots.CONFUSION_FILE, plots.CURVES_FILE]
    for path in written:
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        assert path.stat().st_size > 5_000
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["history.csv", *(p.name for p in written)])


def test_without_history_the_curves_are_left_out(tmp_path: Path, scored):
    written = plots.plot_all(tmp_path, *scored, head_epochs=1, set_name="test")
    assert [p.name for p in written] == [plots.ROC_FILE, plots.CONFUSION_FILE]


def test_read_history_columns(tmp_path: Path):
    (tmp_path / "history.csv").write_text(HISTORY)
    history = plots.read_history(tmp_path / "history.csv")
    assert history["epoch"] == [0.0, 1.0, 2.0]
    assert history["val_auc"] == [0.60, 0.70, 0.80]


def test_empty_history_is_an_error(tmp_path: Path):
    (tmp_path / "history.csv").write_text("epoch,loss\n")
    with pytest.raises(ValueError, match="no epochs"):
        plots.read_history(tmp_path / "history.csv")
