"""The figures a run and an evaluation are judged by: ROC curve, confusion matrix, training curves.

Figures are drawn on `matplotlib.figure.Figure` objects (the Agg canvas, no pyplot state), so
plotting works headless and never touches a global backend. Each file is written to a temporary
name and renamed, so a crash leaves no half-written PNG behind.
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from edge import INTENDED_USE
from edge.files import atomic_write_bytes
from edge.kermany import LABELS
from edge.metrics import roc_curve

log = logging.getLogger(__name__)

ROC_FILE = "roc.png"
CONFUSION_FILE = "confusion.png"
CURVES_FILE = "training_curves.png"


def plot_all(
    out_dir: Path,
    y_true: np.ndarray,
    scores: np.ndarray,
    metrics: dict[str, Any],
    head_epochs: int,
    set_name: str,
    history_csv: Path | None = None,
) -> list[Path]:
    """ROC and confusion matrix for one set, and the run's training curves when its history exists."""
    written = [
        plot_roc(y_true, scores, metrics, set_name, out_dir / ROC_FILE),
        plot_confusion(metrics["confusion"], metrics["threshold"], set_name, out_dir / CONFUSION_FILE),
    ]
    history_csv = history_csv or out_dir / "history.csv"
    if history_csv.is_file():
        written.append(plot_training_curves(history_csv, head_epochs, out_dir / CURVES_FILE))
    else:
        log.warning("no %s: training curves not drawn", history_csv)
    return written


def plot_roc(
    y_true: np.ndarray, scores: np.ndarray, metrics: dict[str, Any], set_name: str, path: Path
) -> Path:
    """The ROC curve with its AUC, and the operating point the stored threshold gives."""
    fpr, tpr, _ = roc_curve(y_true, scores)
    fig, ax = _figure((5.5, 5.5))
    auc, auc_ci = metrics["auc"]["value"], metrics["auc"]["ci95"]
    ax.plot(fpr, tpr, color="tab:blue", lw=2, label=f"AUC {auc:.3f} (95% CI {auc_ci[0]:.3f}-{auc_ci[1]:.3f})")
    ax.plot([0, 1], [0, 1], color="gray", lw=1, ls="--", label="chance")
    op_x, op_y = 1.0 - metrics["specificity"]["value"], metrics["recall"]["value"]
    ax.plot(
        [op_x],
        [op_y],
        "o",
        color="tab:red",
        ms=8,
        label=f"threshold {metrics['threshold']:.3f}: sensitivity {op_y:.3f}, specificity {1 - op_x:.3f}",
    )
    ax.set(
        xlabel="1 - specificity (false-positive rate)",
        ylabel="sensitivity (true-positive rate)",
        xlim=(-0.01, 1.01),
        ylim=(-0.01, 1.01),
        title=f"ROC, {set_name} (n={metrics['n']}, {metrics['n_positive']} pneumonia)",
    )
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_confusion(cm: dict[str, int], threshold: float, set_name: str, path: Path) -> Path:
    """Counts per (true, predicted) label; rows are the truth."""
    counts = np.array([[cm["tn"], cm["fp"]], [cm["fn"], cm["tp"]]])
    fig, ax = _figure((5.0, 4.6))
    ax.imshow(counts, cmap="Blues")
    for (row, col), value in np.ndenumerate(counts):
        dark = value > counts.max() / 2
        ax.text(
            col, row, str(value), ha="center", va="center", color="white" if dark else "black", fontsize=14
        )
    ax.set_xticks([0, 1], labels=list(LABELS))
    ax.set_yticks([0, 1], labels=list(LABELS))
    ax.set(
        xlabel="predicted", ylabel="true", title=f"Confusion matrix, {set_name} (threshold {threshold:.3f})"
    )
    return _save(fig, path)


def plot_training_curves(history_csv: Path, head_epochs: int, path: Path) -> Path:
    """Loss and AUC per epoch, train against validation, with the head-only / fine-tuning boundary."""
    history = read_history(history_csv)
    epochs = np.asarray(history["epoch"]) + 1
    fig = Figure(figsize=(10.0, 4.2), layout="constrained")
    axes = fig.subplots(1, 2)
    titles = {"loss": "loss (train: class-weighted cross-entropy)", "auc": "ROC AUC"}
    for ax, metric in zip(axes, ("loss", "auc"), strict=True):
        for prefix, style in (("", "-"), ("val_", "--")):
            if prefix + metric in history:
                label = "validation" if prefix else "train"
                ax.plot(epochs, history[prefix + metric], style, marker="o", label=label)
        if 0 < head_epochs < len(epochs):
            ax.axvline(head_epochs + 0.5, color="gray", ls=":", label="head only | fine-tuning")
        ax.set(xlabel="epoch", ylabel=metric, title=titles[metric])
        ax.set_xticks(epochs)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    _footer(fig)
    return _save(fig, path)


def read_history(history_csv: Path) -> dict[str, list[float]]:
    """history.csv (Keras CSVLogger) as one list per column."""
    with history_csv.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise ValueError(f"{history_csv} holds no epochs")
    return {key: [float(row[key]) for row in rows] for key in rows[0]}


def _figure(size: tuple[float, float]) -> tuple[Figure, Any]:
    fig = Figure(figsize=size, layout="constrained")
    ax = fig.subplots()
    _footer(fig)
    return fig, ax


def _footer(fig: Figure) -> None:
    fig.supxlabel(INTENDED_USE, fontsize=7, color="dimgray")


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    atomic_write_bytes(path, buffer.getvalue())
    log.info("wrote %s", path)
    return path
