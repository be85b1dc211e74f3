"""Evaluate a run's Keras model at its stored threshold, on its held-out patients or on any folder.

Images go through `edge.preprocess` (the kiosk's own path); files that cannot be read are reported
and skipped. Writes metrics.json (every figure with its 95% interval), summary.md, predictions.csv
and the plots into `RUN/eval-NAME` unless told otherwise.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edge import INTENDED_USE
from edge.files import atomic_write_text
from edge.intensity import NONE
from edge.kermany import LABELS, Sample, scan_split
from edge.metrics import binary_metrics
from edge.preprocess import XrayImage, to_model_input
from edge.provenance import sha256_file
from lab.run_dir import CONFIG_FILE, RunDir, read_run_dir
from lab.shift import Scorer, build_shift_sets, shift_report
from lab.tf_env import keras
from trainer import data, plots
from trainer.config import TrainConfig

log = logging.getLogger(__name__)

HELDOUT = "heldout"  # name of the default set: the run's own validation patients
METRIC_NAMES = ("accuracy", "precision", "recall", "specificity", "f1", "auc")


@dataclass(frozen=True)
class ShiftOptions:
    """The evaluations that can see shift, beside the in-distribution one (lab/shift.py)."""

    site: Path | None = None
    fullres: Path | None = None
    suite_films: int = 0


@dataclass(frozen=True)
class EvalSet:
    """The images to score and where they came from."""

    name: str
    description: str
    samples: list[Sample]


def evaluate(
    run_dir: Path,
    data_root: Path | None = None,
    split: str | None = None,
    out_dir: Path | None = None,
    shift: ShiftOptions | None = None,
) -> dict[str, Any]:
    """Score one set with the run's model and threshold, and the shift sets asked for; write the report."""
    finished = read_run_dir(run_dir)
    run = finished.run
    config = TrainConfig.load(run_dir / CONFIG_FILE)
    root = Path(data_root or run["data_root"])
    eval_set = heldout_set(finished, root) if split is None else folder_set(finished, root, split)
    images = data.load_images(
        eval_set.samples, run["input_size"], f"decoding {eval_set.name}", config.intensity
    )
    if len(images.samples) == 0:
        raise ValueError(f"none of the {len(eval_set.samples)} files of {eval_set.description} could be read")

    net = keras.models.load_model(finished.model_path, compile=False)
    scores = net.predict(images.images.astype(np.float32), batch_size=64, verbose=0).ravel()
    metrics = binary_metrics(images.labels, scores, run["threshold"], seed=config.seed)
    report = {
        "intended_use": INTENDED_USE,
        "run": str(run_dir),
        "model_file": run["model_file"],
        "set": eval_set.name,
        "description": eval_set.description,
        "data_root": str(root.resolve()),
        "evaluated_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "threshold_rule": run.get("threshold_rule"),
        "files": len(eval_set.samples),
        "patients": len({s.patient for s in images.samples}),
        "skipped": [{"file": _relative(s.path, root), "error": message} for s, message in images.skipped],
        "metrics": metrics,
        "kind": "in-distribution (optimistic)" if eval_set.name == HELDOUT else "as described",
    }
    if shift is not None:
        held_out = heldout_set(finished, root).samples
        sets = build_shift_sets(
            shift.site,
            shift.fullres,
            root / "train",
            held_out,
            shift.suite_films,
            "the run's validation patients",
        )
        if sets is not None:
            report["shift"] = strip_per_film(
                shift_report(keras_scorer(net, run["input_size"], config.intensity), run["threshold"], sets)
            )
    out_dir = out_dir or run_dir / f"eval-{eval_set.name}"
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "metrics.json", json.dumps(_json_safe(report), indent=2) + "\n")
    atomic_write_text(out_dir / "predictions.csv", _predictions_csv(images, scores))
    atomic_write_text(out_dir / "summary.md", summary_markdown(report, run))
    plots.plot_all(
        out_dir, images.labels, scores, metrics, config.head_epochs, eval_set.name, finished.history_path
    )
    log.info("%s: %s", eval_set.description, _one_line(metrics))
    log.info("evaluation written to %s", out_dir)
    return report


def keras_scorer(net: keras.Model, size: int, intensity: str = NONE) -> Scorer:
    """Films -> the Keras model's probabilities, through the kiosk's preprocessing."""

    def score(films: Sequence[XrayImage]) -> np.ndarray:
        inputs = np.stack([to_model_input(film, size, intensity) for film in films]).astype(np.float32)
        return net.predict(inputs, batch_size=64, verbose=0).ravel().astype(np.float64)

    return score


def strip_per_film(value: Any) -> Any:
    """A report without per-film probability lists."""
    if isinstance(value, dict):
        return {k: strip_per_film(v) for k, v in value.items() if not k.endswith("probabilities")}
    return value


def heldout_set(run: RunDir, data_root: Path) -> EvalSet:
    """The run's own validation patients from split.csv, checked against the files under data_root."""
    samples = [row.sample(data_root) for row in run.split["val"]]
    missing = [s for s in samples if not s.path.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {len(samples)} validation files are missing under {data_root} "
            f"(first: {missing[0].path}); pass --data with the folder the run was trained on"
        )
    changed = [s for s in samples if sha256_file(s.path) != s.sha256]
    if changed:
        raise ValueError(
            f"{len(changed)} of {len(samples)} validation files under {data_root} differ from the ones "
            f"the run was trained with (first: {changed[0].path}); pass --data with the original data"
        )
    return EvalSet(HELDOUT, f"held-out validation patients of {run.root.name}", samples)


def folder_set(run: RunDir, data_root: Path, split: str) -> EvalSet:
    """Every image of data_root/split in the Kermany layout; warns about files the run trained on."""
    samples = scan_split(data_root, split)
    trained_on = {row.sha256 for row in run.split["train"]}
    leaked = sum(1 for s in samples if s.sha256 in trained_on)
    if leaked:
        log.warning(
            "%d of %d files in %s/%s were used to train this run", leaked, len(samples), data_root, split
        )
    return EvalSet(split, f"every image of {data_root / split}", samples)


def summary_markdown(report: dict[str, Any], run: dict[str, Any]) -> str:
    """A short human-readable report; the figures come from metrics.json, nothing is typed in."""
    m = report["metrics"]
    cm = m["confusion"]
    lines = [
        f"# Evaluation of `{report['run']}` on {report['description']}",
        "",
        f"> {INTENDED_USE}",
        "",
        f"- Images scored: {m['n']} ({m['n_positive']} PNEUMONIA, {m['n'] - m['n_positive']} NORMAL) "
        f"from {report['patients']} patients; files skipped: {len(report['skipped'])}",
        f"- Threshold: {m['threshold']:.4f} (stored in run.json; rule: {report['threshold_rule']})",
        f"- Model: `{run['model_file']}`, input {run['input_size']} px, commit `{run.get('git_commit')}`",
        f"- Evaluated: {report['evaluated_utc']}",
        "",
        "| metric | value | 95% CI |",
        "|---|---|---|",
    ]
    for name in METRIC_NAMES:
        low, high = m[name]["ci95"]
        lines.append(f"| {_label(name)} | {m[name]['value']:.4f} | {low:.4f} - {high:.4f} |")
    lines += [
        "",
        "| true \\ predicted | NORMAL | PNEUMONIA |",
        "|---|---|---|",
        f"| NORMAL | {cm['tn']} | {cm['fp']} |",
        f"| PNEUMONIA | {cm['fn']} | {cm['tp']} |",
        "",
        "Intervals: Wilson score for proportions, percentile bootstrap (1000 resamples) for F1 and AUC.",
    ]
    if report["set"] == HELDOUT:
        lines.append(
            "These patients also chose the best epoch and the threshold, so these figures are optimistic; "
            "an untouched test set gives the honest estimate."
        )
    lines += _shift_lines(report.get("shift", {}))
    if report["skipped"]:
        lines += ["", "Skipped files:", ""]
        lines += [f"- `{item['file']}`: {item['error']}" for item in report["skipped"]]
    lines += ["", f"![ROC]({plots.ROC_FILE}) ![Confusion matrix]({plots.CONFUSION_FILE})"]
    lines += ["", f"![Training curves]({plots.CURVES_FILE})", ""]
    return "\n".join(lines)


def _shift_lines(shift: dict[str, Any]) -> list[str]:
    """The shift evaluations in a few lines each (docs/training.md says what each one is)."""
    lines = []
    if "site" in shift:
        m = shift["site"]["metrics"]
        cells = ", ".join(
            f"{_label(k)} {m[k]['value']:.3f} ({m[k]['ci95'][0]:.3f}-{m[k]['ci95'][1]:.3f})"
            for k in ("precision", "recall", "specificity", "f1", "auc")
        )
        lines += ["", f"## Shift: site films ({shift['site']['description']}, {m['n']} films)", "", cells]
    if "robustness" in shift:
        lines += [
            "",
            "## Shift: robustness suite",
            "",
            "| change | AUC | sensitivity | specificity |",
            "|---|---|---|---|",
        ]
        for name, f in shift["robustness"]["changes"].items():
            lines.append(f"| {name} | {f['auc']:.3f} | {f['sensitivity']:.3f} | {f['specificity']:.3f} |")
    if "fullres" in shift:
        f = shift["fullres"]
        lines += [
            "",
            "## Shift: full-resolution films",
            "",
            f"{f['films']} films: label agreement with the 224 px copies {100 * f['agreement']:.1f}%, "
            f"{f['flips_to_normal']} flips to NORMAL, {f['flips_to_pneumonia']} to PNEUMONIA.",
        ]
    return lines


def _predictions_csv(images: data.ImageSet, scores: np.ndarray) -> str:
    """Files named by content hash only, as in the run's val_predictions.csv: no names, no patients."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("sha256", "label", "probability"))
    for sample, p in zip(images.samples, scores, strict=True):
        writer.writerow((sample.sha256, LABELS[sample.label], f"{p:.6f}"))
    return buffer.getvalue()


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.name


def _json_safe(value: Any) -> Any:
    """NaN (e.g. AUC of a one-class set) becomes null: metrics.json stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _label(name: str) -> str:
    return {"recall": "sensitivity (recall)", "auc": "ROC AUC", "f1": "F1"}.get(name, name)


def _one_line(metrics: dict[str, Any]) -> str:
    return ", ".join(f"{name} {metrics[name]['value']:.4f}" for name in METRIC_NAMES)
