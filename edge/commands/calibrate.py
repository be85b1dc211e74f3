"""`python -m edge calibrate`: set a bundle's threshold and probability calibration on a clinic's films.

A clinic (or a technician for it) gives a folder of its own confirmed films in the Kermany layout
(`NORMAL/`, `PNEUMONIA/`; the kiosk's export writes exactly that). Every film goes through the
kiosk's own path (decoder, quality gate, model, float head). Then, with a rule stated in the bundle:

1. Platt scaling maps the head's logit to a probability that matches this site's films;
2. the threshold is the highest calibrated probability that keeps recall >= --min-recall on them.

The result is a new bundle (the same model file, verified) whose `calibration` section holds the
rule, the sample, the measured recall and specificity with 95% intervals, and the films refused by
the gate. A sample too small or too one-sided is refused with what it lacks; nothing is written.
These figures are measured on the films that set the threshold, so they are optimistic; the next
few hundred confirmed films are the honest check.
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edge.bundle import BundleError, load_bundle, write_bundle
from edge.calibration import CalibrationError, brier, check_sample, fit_platt, log_loss, site_threshold
from edge.kermany import drop_duplicates, scan_split
from edge.metrics import binary_metrics
from edge.preprocess import ImageError, load_xray
from edge.quality import QualityThresholds
from edge.runtime import RuntimeUnavailableError
from edge.screener import INTENDED_USE, STATUS_OK, Screener, ScreenerOptions, default_model_dir

log = logging.getLogger(__name__)

DEFAULT_MIN_RECALL = 0.98
#: The ood threshold is raised to this multiple of the highest score among the site's genuine films.
OOD_MARGIN = 1.1


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "calibrate",
        help="set a bundle's threshold and calibration on a clinic's confirmed films",
        description=__doc__.split("\n\n")[1] + f" {INTENDED_USE}",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("films", type=Path, help="folder with NORMAL/ and PNEUMONIA/ confirmed films")
    parser.add_argument("--model", type=Path, default=default_model_dir(), help="bundle to calibrate")
    parser.add_argument("--out", type=Path, required=True, help="folder for the calibrated bundle")
    parser.add_argument("--site", default=None, help="name of the site (default: the folder's name)")
    parser.add_argument(
        "--min-recall",
        type=float,
        default=DEFAULT_MIN_RECALL,
        help="threshold rule: recall kept on the films",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.out.resolve() == args.model.resolve():
        print(
            "error: --out must be a new folder; the calibrated bundle never overwrites its source",
            file=sys.stderr,
        )
        return 2
    try:
        section, bundle = calibrate(args.model, args.films, args.site or args.films.name, args.min_recall)
        written = write_bundle(
            args.out, bundle.model_path.read_bytes(), _metadata(bundle.metadata, section, args.out.name)
        )
    except (CalibrationError, BundleError, RuntimeUnavailableError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(_summary(section, written.root), file=sys.stderr)
    return 0


def calibrate(model: Path, films: Path, site: str, min_recall: float) -> tuple[dict[str, Any], Any]:
    """The calibration section for `model` on the confirmed films under `films`."""
    bundle = load_bundle(model)
    samples, duplicates = drop_duplicates(scan_split(films.parent, films.name))
    labels = np.array([s.label for s in samples], dtype=bool)
    check_sample(labels)
    # the image-level gate stays on; the ood gate is measured, then widened to the site's films
    screener = Screener(bundle, ScreenerOptions(heatmap=False, quality=QualityThresholds(check_ood=False)))
    logits, ood_scores, refused = [], [], 0
    for sample in samples:
        measured = _measure(screener, sample.path)
        refused += measured is None
        logit, ood_score = measured if measured is not None else (np.nan, np.nan)
        logits.append(logit)
        ood_scores.append(ood_score)
    scored = ~np.isnan(np.asarray(logits))
    logits_scored, labels_scored = np.asarray(logits)[scored], labels[scored]
    check_sample(labels_scored)
    slope, intercept = fit_platt(logits_scored, labels_scored)
    probabilities = 1.0 / (1.0 + np.exp(-(slope * logits_scored + intercept)))
    operating = site_threshold(probabilities, labels_scored, min_recall)
    metrics = binary_metrics(labels_scored, probabilities, operating["threshold"])
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    section = {
        "method": "platt",
        "slope": slope,
        "intercept": intercept,
        "description": f"site calibration '{site}' ({len(samples)} films, {created[:10]})",
        "site": site,
        "created_utc": created,
        **operating,
        "films": {
            "total": len(samples),
            "pneumonia": int(labels.sum()),
            "normal": int((~labels).sum()),
            "refused_by_image_checks": int(refused),
            "duplicates_dropped": len(duplicates),
        },
        "fit": {
            "brier": brier(probabilities, labels_scored),
            "log_loss": log_loss(probabilities, labels_scored),
        },
        "metrics_on_these_films": metrics,
        "caveat": "measured on the films that set the threshold: optimistic; check on the next ones",
        "previous": bundle.metadata.get("calibration"),
    }
    if bundle.metadata.get("ood"):
        section["ood"] = _widened_ood(bundle.metadata["ood"], np.asarray(ood_scores)[scored])
    return section, bundle


def _widened_ood(ood: dict[str, Any], site_scores: np.ndarray) -> dict[str, Any]:
    """The ood threshold raised, if needed, to OOD_MARGIN x the highest score of the site's genuine films.

    The export set it on training films (varied, but from one hospital); a new cohort's genuine films,
    severe pneumonia among them, score higher. Refusing them would send confirmed X-rays away unread.
    """
    threshold = max(float(ood["threshold"]), OOD_MARGIN * float(site_scores.max()))
    return {
        **ood,
        "threshold": threshold,
        "site_rule": f"max(export threshold, {OOD_MARGIN} x the highest score of the site's films)",
        "export_threshold": float(ood["threshold"]),
        "site_films_refused_at_export_threshold": int((site_scores > float(ood["threshold"])).sum()),
    }


def _measure(screener: Screener, path: Path) -> tuple[float, float] | None:
    """The head's logit and the ood score through the kiosk's path; None when the image checks refuse."""
    try:
        assessment = screener.assess_image(load_xray(path.read_bytes()), sha="")
    except (ImageError, OSError) as e:
        log.warning("a calibration film could not be read: %s", e)
        return None
    if assessment.status != STATUS_OK or assessment.logit is None:
        return None
    return assessment.logit, float("nan") if assessment.ood_score is None else assessment.ood_score


def _metadata(metadata: dict[str, Any], section: dict[str, Any], name: str) -> dict[str, Any]:
    kept = {k: v for k, v in metadata.items() if k not in ("format", "format_version", "model_sha256")}
    if "ood" in section:
        kept["ood"] = section["ood"]
    return {
        **kept,
        "name": name,
        "threshold": section["threshold"],
        "threshold_rule": section["rule"],
        "calibration": section,
    }


def _summary(section: dict[str, Any], root: Path) -> str:
    films = section["films"]
    low, high = section["recall_ci95"]
    slow, shigh = section["specificity_ci95"]
    return (
        f"calibrated bundle written to {root}\n"
        f"  {section['description']}: {films['pneumonia']} PNEUMONIA, {films['normal']} NORMAL, "
        f"{films['refused_by_image_checks']} refused by the image checks\n"
        f"  threshold {section['threshold']:.4f} ({section['rule']})\n"
        f"  on these films: recall {section['recall']:.3f} (95% CI {low:.3f}-{high:.3f}), "
        f"specificity {section['specificity']:.3f} ({slow:.3f}-{shigh:.3f}); optimistic, they set it\n"
        f"  {INTENDED_USE}"
    )
