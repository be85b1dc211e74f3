"""The sweep's grid, its per-seed aggregation and its resume from finished runs (no training here)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from trainer.config import TrainConfig
from trainer.sweep import GridPoint, grid, run_config, summarise, sweep

BASE = TrainConfig(architecture="mobilenet", alpha=0.25, head_epochs=1, fine_tune_epochs=2, limit=100)


def test_grid_covers_every_combination():
    points = grid(["adam", "sgd", "rmsprop"], [1e-3, 1e-4], [16, 32])
    assert len(points) == 12 == len({p.name for p in points})
    assert points[0] == GridPoint("adam", 1e-3, 16)
    assert points[0].name == "adam-lr0.001-bs16"


def test_run_config_sets_the_grid_fields_only():
    config = run_config(BASE, GridPoint("sgd", 1e-2, 16), seed=9, fine_tune_ratio=0.1)
    assert (config.optimizer, config.batch_size, config.seed) == ("sgd", 16, 9)
    assert config.head_learning_rate == 1e-2
    assert config.fine_tune_learning_rate == pytest.approx(1e-3)
    assert (config.architecture, config.limit, config.fine_tune_from) == ("mobilenet", 100, "conv_dw_12")


def fake_finished_run(
    run_dir: Path, config: TrainConfig, auc: float, f1: float, val_auc: list[float]
) -> None:
    """The files a finished `train` leaves that the sweep reads, with chosen figures."""
    run_dir.mkdir(parents=True)
    config.save(run_dir / "config.json")
    (run_dir / "run.json").write_text(json.dumps({"threshold": 0.3, "epochs_run": 3, "wall_seconds": 60.0}))
    values = {"auc": auc, "f1": f1, "recall": 0.97, "precision": 0.8, "specificity": 0.5}
    metrics = {name: {"value": v, "ci95": [v - 0.1, v]} for name, v in values.items()}
    (run_dir / "metrics.json").write_text(json.dumps({"validation": {**metrics, "n": 200}}))
    rows = "".join(f"{i},{v}\n" for i, v in enumerate(val_auc))
    (run_dir / "history.csv").write_text("epoch,val_auc\n" + rows)


def test_sweep_aggregates_finished_runs_over_seeds(tmp_path: Path):
    runs = tmp_path / "runs"
    figures = {  # (point, seed) -> (auc, f1)
        (GridPoint("adam", 1e-3, 32), 1): (0.95, 0.90),
        (GridPoint("adam", 1e-3, 32), 2): (0.93, 0.88),
        (GridPoint("sgd", 1e-3, 32), 1): (0.96, 0.91),
        (GridPoint("sgd", 1e-3, 32), 2): (0.90, 0.85),
    }
    for (point, seed), (auc, f1) in figures.items():
        config = run_config(BASE, point, seed, 0.1)
        fake_finished_run(runs / f"{point.name}-seed{seed}", config, auc, f1, [0.9, 0.92, auc])

    rows = sweep(
        BASE,
        tmp_path / "data",
        tmp_path / "out",
        runs,
        list(dict.fromkeys(p for p, _ in figures)),
        [1, 2],
        0.1,
    )

    assert len(rows) == 4  # every run reused: nothing was trained (there is no data folder at all)
    with (tmp_path / "out" / "sweep.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert [r["config"] for r in table] == ["adam-lr0.001-bs32", "sgd-lr0.001-bs32"]
    adam, sgd = table
    assert float(adam["auc_mean"]) == pytest.approx(0.94)
    assert float(adam["auc_range"]) == pytest.approx(0.02)
    assert float(sgd["auc_range"]) == pytest.approx(0.06)
    assert float(sgd["f1_range"]) == pytest.approx(0.06)
    assert float(adam["last_epochs_val_auc_range"]) == pytest.approx((0.03 + 0.01) / 2)
    assert adam["seeds"] == "2"
    markdown = (tmp_path / "out" / "sweep.md").read_text()
    assert (
        "| adam-lr0.001-bs32 | adam | 0.001 / 0.0001 | 32 | 0.9400 | 0.0200 | 0.1000 | +0.0000 |" in markdown
    )
    assert float(sgd["auc_vs_reference"]) == pytest.approx(((0.96 - 0.95) + (0.90 - 0.93)) / 2)
    assert "screening aid" in markdown
    with (tmp_path / "out" / "sweep_runs.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 4


def test_a_run_with_other_settings_is_not_reused(tmp_path: Path):
    point = GridPoint("adam", 1e-3, 32)
    other = run_config(BASE, point, 1, fine_tune_ratio=0.5)  # not the ratio the sweep asks for
    fake_finished_run(tmp_path / "runs" / f"{point.name}-seed1", other, 0.9, 0.9, [0.9])
    with pytest.raises(FileNotFoundError, match="data"):  # so it tries to train, and finds no data
        sweep(BASE, tmp_path / "data", tmp_path / "out", tmp_path / "runs", [point], [1], 0.1)


def test_summarise_sorts_by_mean_auc_and_pairs_seeds_with_the_reference():
    rows = [
        {
            "config": c,
            "seed": seed,
            "optimizer": "adam",
            "learning_rate": 1e-3,
            "fine_tune_learning_rate": 1e-4,
            "batch_size": 32,
            "auc": auc,
            "auc_ci_low": auc - 0.02,
            "auc_ci_high": auc + 0.02,
            "f1": 0.8,
            "recall": 0.97,
            "precision": 0.8,
            "specificity": 0.5,
            "last_epochs_val_auc_range": 0.0,
            "wall_seconds": 10.0,
        }
        for c, seed, auc in (("a", 1, 0.80), ("b", 1, 0.90), ("a", 2, 0.82), ("b", 2, 0.88))
    ]
    summary = summarise(rows, reference="a")
    assert [s["config"] for s in summary] == ["b", "a"]
    assert summary[1]["auc_mean"] == pytest.approx(0.81)
    assert summary[1]["auc_ci_width_mean"] == pytest.approx(0.04)
    assert summary[0]["auc_vs_reference"] == pytest.approx(((0.90 - 0.80) + (0.88 - 0.82)) / 2)
    assert summary[1]["auc_vs_reference"] == 0.0
