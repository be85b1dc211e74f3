"""The benchmark's report: report.json (every figure), report.md (for people) and two plots."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display on a build machine
import matplotlib.pyplot as plt

from edge import INTENDED_USE
from edge.files import atomic_write_bytes

log = logging.getLogger(__name__)

METRICS = ("accuracy", "precision", "recall", "specificity", "f1", "auc")
_PER_IMAGE_KEYS = ("probabilities", "copy_probabilities", "roc")


def write_report(out: Path, result: dict[str, Any]) -> None:
    """Write report.json, report.md, roc.png and latency.png into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    _plot_roc(out / "roc.png", result)
    _plot_latency(out / "latency.png", result)
    lean = {**result, "models": [_without_per_image(m) for m in result["models"]]}
    atomic_write_bytes(out / "report.json", (json.dumps(lean, indent=2) + "\n").encode())
    atomic_write_bytes(out / "report.md", markdown(result).encode())
    log.info("report written to %s", out)


def _without_per_image(value: Any) -> Any:
    """The report without per-film lists (probabilities, ROC points): those stay in memory only."""
    if isinstance(value, dict):
        return {k: _without_per_image(v) for k, v in value.items() if k not in _PER_IMAGE_KEYS}
    return value


def _value_ci(metric: dict[str, Any], percent: bool = True) -> str:
    scale = 100.0 if percent else 1.0
    low, high = (scale * v for v in metric["ci95"])
    digits = 1 if percent else 3
    return f"{scale * metric['value']:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"


def markdown(result: dict[str, Any]) -> str:
    images, machine, models = result["images"], result["machine"], result["models"]
    lines = [
        "# PneumoEdge model benchmark",
        "",
        f"> {INTENDED_USE}",
        "",
        f"Images: {images['description']}; {images['n']} images, {images['n_positive']} PNEUMONIA. "
        "Decoded once with `edge.preprocess.load_model_input`; every model scored the same tensors with "
        "ai-edge-litert; each model labels with its own bundle threshold.",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['system']}, "
        f"Python {machine['python']}, "
        + ", ".join(f"{k} {v}" for k, v in machine["runtimes"].items())
        + f". Load average (1/5/15 min) at start {machine['load_average_start']}, at end "
        f"{machine['load_average_end']}: other processes on the machine inflate latency and widen p95. "
        f"Created {result['created_utc']}.",
        "",
        "## Accuracy (95% confidence intervals)",
        "",
        "Percentages; AUC as a fraction. Wilson intervals for proportions, bootstrap for F1 and AUC.",
        "",
        "| model | threshold | accuracy | precision | recall | specificity | F1 | AUC |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in models:
        cells = [_value_ci(m["metrics"][k], percent=k != "auc") for k in METRICS]
        lines.append(f"| {m['name']} | {m['threshold']:.4f} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Agreement, size",
        "",
        "| model | same label as reference | max prob. difference | size | gzipped |",
        "|---|---|---|---|---|",
    ]
    for m in models:
        a = m["agreement"]
        lines.append(
            f"| {m['name']} | {100 * a['same_label']:.1f}% (vs {a['reference']}) | "
            f"{a['max_probability_difference']:.4f} | {m['size_bytes'] / 1e6:.2f} MB | "
            f"{m['gzip_bytes'] / 1e6:.2f} MB |"
        )
    lines += [
        "",
        f"## Latency and memory ({result['settings']['runs']} timed runs after warm-up, "
        "one fresh process each)",
        "",
        "| model | runtime | threads | p50 ms | p95 ms | peak RSS MB | RSS before model MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in models:
        for t in m["latency"]:
            lines.append(
                f"| {m['name']} | {t['runtime']} | {t['threads']} | {t['p50_ms']:.1f} | {t['p95_ms']:.1f} | "
                f"{t['peak_rss_mb']:.0f} | {t['rss_before_model_mb']:.0f} |"
            )
    lines += _shift_markdown(models)
    if result["targets"]:
        lines += ["", "## Targets", "", "| target | measured | met |", "|---|---|---|"]
        lines += [
            f"| {t['target']} | {t['value']} | {'yes' if t['met'] else 'NO'} |" for t in result["targets"]
        ]
    lines += ["", "![ROC curves](roc.png)", "", "![Latency](latency.png)", ""]
    return "\n".join(lines)


def _plot_roc(path: Path, result: dict[str, Any]) -> None:
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for m in result["models"]:
        auc = m["metrics"]["auc"]["value"]
        ax.plot(m["roc"]["fpr"], m["roc"]["tpr"], label=f"{m['name']} (AUC {auc:.3f})", linewidth=1.5)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("false-positive rate (1 - specificity)")
    ax.set_ylabel("true-positive rate (recall)")
    ax.set_title(f"ROC, {result['images']['n']} images")
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_latency(path: Path, result: dict[str, Any]) -> None:
    rows = [(m["name"], t) for m in result["models"] for t in m["latency"]]
    fig, ax = plt.subplots(figsize=(7, 0.35 * max(4, len(rows)) + 1))
    labels = [f"{name} | {t['runtime']} | {t['threads']}t" for name, t in rows]
    p50 = [t["p50_ms"] for _, t in rows]
    p95 = [t["p95_ms"] for _, t in rows]
    positions = range(len(rows))
    ax.barh(positions, p95, color="#c9d6e8", label="p95")
    ax.barh(positions, p50, color="#3b6ea8", label="p50")
    ax.set_yticks(list(positions), labels, fontsize="small")
    ax.invert_yaxis()
    ax.set_xlabel("latency per image, ms")
    ax.set_title(result["machine"]["cpu"], fontsize="small")
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _shift_markdown(models: list[dict[str, Any]]) -> list[str]:
    """The evaluations that can see shift, each labelled with what kind of figure it is."""
    shifted = [m for m in models if "shift" in m]
    if not shifted:
        return []
    lines: list[str] = []
    if "site" in shifted[0]["shift"]:
        site = shifted[0]["shift"]["site"]
        n, pos = site["metrics"]["n"], site["metrics"]["n_positive"]
        lines += [
            "",
            "## New cohort: site films (shift)",
            "",
            f"{site['description']}: {n} films ({pos} PNEUMONIA, {n - pos} NORMAL). A small set: a 95% "
            "interval on specificity spans about +-6 points. A refusal by the quality gate counts as a "
            "wrong answer. Where a bundle's calibration names this set, its threshold was chosen on these "
            "films and its figures here are optimistic.",
            "",
            "| model | calibration in force | refused | precision | recall | specificity | F1 | AUC |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for m in shifted:
            site = m["shift"]["site"]
            cells = [_value_ci(site["metrics"][k], percent=k != "auc") for k in METRICS[1:]]
            lines.append(
                f"| {m['name']} | {m['calibration']} | {site['refused']} | " + " | ".join(cells) + " |"
            )
    if "robustness" in shifted[0]["shift"]:
        names = list(shifted[0]["shift"]["robustness"]["changes"])
        lines += [
            "",
            "## Robustness suite (shift)",
            "",
            f"{shifted[0]['shift']['robustness']['description']}, each re-acquired by one change "
            "(lab/shift.py). Cells: AUC / sensitivity / specificity at the bundle's threshold.",
            "",
            "| change | " + " | ".join(m["name"] for m in shifted) + " |",
            "|---|" + "---|" * len(shifted),
        ]
        for name in names:
            cells = []
            for m in shifted:
                f = m["shift"]["robustness"]["changes"][name]
                cells.append(f"{f['auc']:.3f} / {f['sensitivity']:.3f} / {f['specificity']:.3f}")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if "fullres" in shifted[0]["shift"]:
        lines += [
            "",
            "## Full-resolution films (shift)",
            "",
            f"{shifted[0]['shift']['fullres']['description']} against their 224 px copies. A refused film "
            "counts as a disagreement.",
            "",
            "| model | agreement | refused | flips to NORMAL | flips to PNEUMONIA | median abs. drift |",
            "|---|---|---|---|---|---|",
        ]
        for m in shifted:
            f = m["shift"]["fullres"]
            low, high = f["agreement_ci95"]
            lines.append(
                f"| {m['name']} | {100 * f['agreement']:.1f}% ({100 * low:.1f}-{100 * high:.1f}) "
                f"| {f['refused']} | {f['flips_to_normal']} | {f['flips_to_pneumonia']} "
                f"| {f['median_abs_drift']:.4f} |"
            )
    agreeing = [m for m in shifted if "shift" in m["agreement"]]
    if len(agreeing) > 1:
        lines += [
            "",
            "## Agreement with the reference on the shift sets",
            "",
            "| model | set | same label | max prob. difference |",
            "|---|---|---|---|",
        ]
        for m in agreeing:
            if m["name"] == m["agreement"]["reference"]:
                continue
            for key, value in m["agreement"]["shift"].items():
                if isinstance(value, dict):
                    lines.append(
                        f"| {m['name']} | {key} | {100 * value['same_label']:.1f}% | "
                        f"{value['max_probability_difference']:.4f} |"
                    )
                else:
                    lines.append(f"| {m['name']} | {key} | {value:+.4f} | |")
    return lines
