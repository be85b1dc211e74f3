"""A grid over optimizer, learning rate and batch size on a small stated budget, with seeds for stability.

Every grid point trains once per seed with `trainer.train.train` into RUNS/NAME-seedS. A seed sets
the validation patients as well as the initialisation and augmentation, so the spread over seeds
includes validation-set noise: it is an upper bound on how much a setting's result wobbles. Runs
that already finished with the same settings are reused, so an interrupted sweep resumes.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge import INTENDED_USE
from edge.files import atomic_write_text
from lab.run_dir import CONFIG_FILE, HISTORY_FILE, RUN_FILE
from trainer.config import TrainConfig
from trainer.plots import read_history

log = logging.getLogger(__name__)

RUN_FIELDS = (
    "config",
    "optimizer",
    "learning_rate",
    "fine_tune_learning_rate",
    "batch_size",
    "seed",
    "auc",
    "auc_ci_low",
    "auc_ci_high",
    "f1",
    "recall",
    "precision",
    "specificity",
    "threshold",
    "last_epochs_val_auc_range",
    "epochs_run",
    "val_images",
    "wall_seconds",
)
SUMMARY_FIELDS = (
    "config",
    "optimizer",
    "learning_rate",
    "fine_tune_learning_rate",
    "batch_size",
    "seeds",
    "auc_mean",
    "auc_range",
    "auc_min",
    "auc_ci_width_mean",
    "auc_vs_reference",
    "f1_mean",
    "f1_range",
    "recall_mean",
    "precision_mean",
    "specificity_mean",
    "last_epochs_val_auc_range",
    "wall_seconds_mean",
)
#: Last epochs whose validation AUC range tells whether training had settled.
LAST_EPOCHS = 2


@dataclass(frozen=True)
class GridPoint:
    """One setting of the grid; the fine-tuning rate is the head rate times the sweep's ratio."""

    optimizer: str
    learning_rate: float
    batch_size: int

    @property
    def name(self) -> str:
        return f"{self.optimizer}-lr{self.learning_rate:g}-bs{self.batch_size}"


def grid(
    optimizers: Sequence[str], learning_rates: Sequence[float], batch_sizes: Sequence[int]
) -> list[GridPoint]:
    """Every combination, optimizer-major, in the order given."""
    return [GridPoint(o, lr, b) for o in optimizers for lr in learning_rates for b in batch_sizes]


def reference_point(base: TrainConfig) -> GridPoint:
    """The grid point of the base settings (the shipped model's: Adam, 1e-3, batch 32)."""
    return GridPoint(base.optimizer, base.head_learning_rate, base.batch_size)


def run_config(base: TrainConfig, point: GridPoint, seed: int, fine_tune_ratio: float) -> TrainConfig:
    return dataclasses.replace(
        base,
        optimizer=point.optimizer,
        head_learning_rate=point.learning_rate,
        fine_tune_learning_rate=point.learning_rate * fine_tune_ratio,
        batch_size=point.batch_size,
        seed=seed,
    )


def sweep(
    base: TrainConfig,
    data_root: Path,
    out_dir: Path,
    runs_dir: Path,
    points: Sequence[GridPoint],
    seeds: Sequence[int],
    fine_tune_ratio: float,
) -> list[dict[str, Any]]:
    """Train every point x seed (or reuse a finished run), rewriting the tables after each run."""
    from lab.tf_env import keras  # TensorFlow loads only when a sweep really runs
    from trainer.train import train

    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    total = len(points) * len(seeds)
    for point in points:
        for seed in seeds:
            config = run_config(base, point, seed, fine_tune_ratio)
            run_dir = runs_dir / f"{point.name}-seed{seed}"
            if _finished_with(run_dir, config):
                log.info("[%d/%d] %s: reusing the finished run", len(rows) + 1, total, run_dir.name)
            else:
                log.info("[%d/%d] %s: training", len(rows) + 1, total, run_dir.name)
                keras.backend.clear_session()
                train(config, data_root, run_dir)
            rows.append(run_row(run_dir, point))
            write_tables(out_dir, rows, base, seeds, fine_tune_ratio)
    return rows


def run_row(run_dir: Path, point: GridPoint) -> dict[str, Any]:
    """One finished run's validation figures at its own threshold, and how it was trained."""
    run = json.loads((run_dir / RUN_FILE).read_text(encoding="utf-8"))
    config = json.loads((run_dir / CONFIG_FILE).read_text(encoding="utf-8"))
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))["validation"]
    val_auc = read_history(run_dir / HISTORY_FILE).get("val_auc", [])
    last = val_auc[-LAST_EPOCHS:]
    return {
        "config": point.name,
        "optimizer": point.optimizer,
        "learning_rate": point.learning_rate,
        "fine_tune_learning_rate": config["fine_tune_learning_rate"],
        "batch_size": point.batch_size,
        "seed": config["seed"],
        **{name: metrics[name]["value"] for name in ("auc", "f1", "recall", "precision", "specificity")},
        "auc_ci_low": metrics["auc"]["ci95"][0],
        "auc_ci_high": metrics["auc"]["ci95"][1],
        "threshold": run["threshold"],
        "last_epochs_val_auc_range": max(last) - min(last) if last else float("nan"),
        "epochs_run": run["epochs_run"],
        "val_images": metrics["n"],
        "wall_seconds": run["wall_seconds"],
    }


def summarise(rows: Sequence[dict[str, Any]], reference: str | None = None) -> list[dict[str, Any]]:
    """One row per grid point over its seeds, best mean validation AUC first.

    `auc_vs_reference` compares each point with the `reference` point seed by seed (same
    validation patients), which removes the split's share of the noise from the comparison.
    """
    by_config: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_config.setdefault(row["config"], []).append(row)
    reference_auc = {r["seed"]: r["auc"] for r in by_config.get(reference or "", [])}
    summary = []
    for name, runs in by_config.items():
        auc = [r["auc"] for r in runs]
        f1 = [r["f1"] for r in runs]
        summary.append(
            {
                "config": name,
                **{
                    k: runs[0][k]
                    for k in ("optimizer", "learning_rate", "fine_tune_learning_rate", "batch_size")
                },
                "seeds": len(runs),
                "auc_mean": statistics.fmean(auc),
                "auc_range": max(auc) - min(auc),
                "auc_min": min(auc),
                "auc_ci_width_mean": statistics.fmean(r["auc_ci_high"] - r["auc_ci_low"] for r in runs),
                "auc_vs_reference": _paired_difference(runs, reference_auc),
                "f1_mean": statistics.fmean(f1),
                "f1_range": max(f1) - min(f1),
                "recall_mean": _mean(runs, "recall"),
                "precision_mean": _mean(runs, "precision"),
                "specificity_mean": _mean(runs, "specificity"),
                "last_epochs_val_auc_range": _mean(runs, "last_epochs_val_auc_range"),
                "wall_seconds_mean": _mean(runs, "wall_seconds"),
            }
        )
    summary.sort(key=lambda s: (-s["auc_mean"], s["auc_range"]))
    return summary


def write_tables(
    out_dir: Path,
    rows: Sequence[dict[str, Any]],
    base: TrainConfig,
    seeds: Sequence[int],
    fine_tune_ratio: float,
) -> None:
    """sweep.csv (per grid point), sweep_runs.csv (per run) and sweep.md (both, with the budget)."""
    summary = summarise(rows, reference_point(base).name)
    atomic_write_text(out_dir / "sweep.csv", _csv(summary, SUMMARY_FIELDS))
    atomic_write_text(out_dir / "sweep_runs.csv", _csv(rows, RUN_FIELDS))
    atomic_write_text(out_dir / "sweep.md", sweep_markdown(summary, rows, base, seeds, fine_tune_ratio))


def sweep_markdown(
    summary: Sequence[dict[str, Any]],
    rows: Sequence[dict[str, Any]],
    base: TrainConfig,
    seeds: Sequence[int],
    fine_tune_ratio: float,
) -> str:
    total_minutes = sum(r["wall_seconds"] for r in rows) / 60
    val_sizes = sorted({r["val_images"] for r in rows})
    lines = [
        "# Hyper-parameter sweep (validation patients)",
        "",
        f"> {INTENDED_USE} These are model-selection figures, not clinical performance.",
        "",
        "Budget per run: "
        f"{base.architecture} alpha {base.alpha:g}, input {base.input_size} px, "
        f"{base.limit or 'all'} training files (stratified subset), "
        f"{base.head_epochs} head-only epoch(s) + {base.fine_tune_epochs} fine-tuning epoch(s) "
        f"from `{base.fine_tune_from}`, fine-tuning rate = {fine_tune_ratio:g} x learning rate, "
        f"threshold rule: validation recall >= {base.min_recall:g}.",
        f"Seeds {', '.join(map(str, seeds))} (each seed also draws its own validation patients: "
        f"{', '.join(map(str, val_sizes))} images). "
        f"{len(rows)} runs, {total_minutes:.1f} min of training in all.",
        "",
        "Sorted by mean validation ROC AUC. *Range* = max - min over seeds; *last-epochs range* = "
        f"spread of validation AUC over the last {LAST_EPOCHS} epochs (mean over seeds). "
        "*AUC CI width* = width of one run's 95% bootstrap interval (mean over seeds): differences "
        "between settings smaller than about half of it are within the noise of one validation set. "
        f"*AUC vs {reference_point(base).name}* = mean over seeds of the AUC difference to that "
        "setting (the shipped model's) on the same validation patients. "
        "F1, recall, precision and specificity are at each run's own threshold.",
        "",
        "| config | optimizer | lr (head / fine-tune) | batch | AUC mean | AUC range | AUC CI width "
        f"| AUC vs {reference_point(base).name} | F1 mean | F1 range | recall | precision | specificity "
        "| last-epochs range | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summary:
        cells = [
            s["config"],
            s["optimizer"],
            f"{s['learning_rate']:g} / {s['fine_tune_learning_rate']:g}",
            s["batch_size"],
            *(f"{s[k]:.4f}" for k in ("auc_mean", "auc_range", "auc_ci_width_mean")),
            f"{s['auc_vs_reference']:+.4f}",
            *(f"{s[k]:.4f}" for k in ("f1_mean", "f1_range")),
            *(f"{s[k]:.3f}" for k in ("recall_mean", "precision_mean", "specificity_mean")),
            f"{s['last_epochs_val_auc_range']:.4f}",
            f"{s['wall_seconds_mean']:.0f}",
        ]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    lines += [
        "",
        "Per run:",
        "",
        "| run | seed | AUC (95% CI) | F1 | recall | precision | specificity | epochs | wall s |",
    ]
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        lines.append(
            f"| {r['config']} | {r['seed']} | {r['auc']:.4f} ({r['auc_ci_low']:.4f}-{r['auc_ci_high']:.4f}) "
            f"| {r['f1']:.4f} | {r['recall']:.3f} "
            f"| {r['precision']:.3f} | {r['specificity']:.3f} | {r['epochs_run']} | {r['wall_seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def _finished_with(run_dir: Path, config: TrainConfig) -> bool:
    """A finished run trained with exactly these settings (so a resumed sweep can skip it)."""
    if not (run_dir / RUN_FILE).is_file() or not (run_dir / CONFIG_FILE).is_file():
        return False
    return TrainConfig.load(run_dir / CONFIG_FILE) == config


def _paired_difference(runs: Sequence[dict[str, Any]], reference_auc: dict[int, float]) -> float:
    pairs = [r["auc"] - reference_auc[r["seed"]] for r in runs if r["seed"] in reference_auc]
    return statistics.fmean(pairs) if pairs else float("nan")


def _mean(runs: Sequence[dict[str, Any]], key: str) -> float:
    return statistics.fmean(r[key] for r in runs)


def _csv(rows: Sequence[dict[str, Any]], fields: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n", extrasaction="raise")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()})
    return buffer.getvalue()
