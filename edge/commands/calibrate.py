"""`python -m edge calibrate`: adapt a bundle's head, calibration and threshold to a clinic's films.

A clinic (or a technician for it) gives a folder of its own confirmed films in the Kermany layout
(`NORMAL/`, `PNEUMONIA/`; the kiosk's export writes exactly that). Every film goes through the
kiosk's own path (decoder, quality gate, model), then, with rules stated in the bundle:

1. the head is refitted on the films' embeddings, the trained head as its prior, the prior's
   strength chosen by cross-validation by patient (edge/head_refit.py; --keep-head skips this);
2. every film gets an out-of-fold logit (a head fitted without its patient), Platt scaling maps
   logits to probabilities on them, and the threshold is the highest whose out-of-fold recall has a
   one-sided 95% lower bound >= --recall-floor: what the kiosk promises for the next films;
3. the "uncertain: refer" band: referred films below the lowest score above which the out-of-fold
   precision has a one-sided 95% lower bound >= --band-precision (still referred, marked uncertain).

The result is a new bundle (the same model file, verified) whose `head` is the site's and whose
`calibration` section holds the rules, the sample, the expected recall and specificity on new films
(cross-validated) and the optimistic figures on the films themselves. A sample too small, too
one-sided, or too small for the promise is refused with what it lacks; nothing is written.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edge.bundle import Bundle, BundleError, load_bundle, write_bundle
from edge.calibration import (
    CalibrationError,
    Head,
    brier,
    check_sample,
    fit_platt,
    log_loss,
    promised_threshold,
    refer_band,
    sigmoid,
)
from edge.head_refit import FOLDS, REPEATS, SiteFilms, choose_strength, fit_head, out_of_fold_logits
from edge.kermany import drop_duplicates, scan_split
from edge.metrics import binary_metrics, roc_auc
from edge.preprocess import ImageError, load_xray
from edge.quality import QualityThresholds
from edge.runtime import RuntimeUnavailableError
from edge.screener import INTENDED_USE, STATUS_OK, Assessment, Screener, ScreenerOptions, default_model_dir

log = logging.getLogger(__name__)

#: Recall promised on new films, with 95% confidence (edge.calibration.promised_threshold).
DEFAULT_RECALL_FLOOR = 0.95
#: Precision (one-sided 95% lower bound) above the "uncertain: refer" band (edge.calibration.refer_band).
DEFAULT_BAND_PRECISION = 0.95
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
        "--recall-floor",
        type=float,
        default=DEFAULT_RECALL_FLOOR,
        help="threshold rule: the recall promised on new films with 95%% confidence (cross-validated)",
    )
    parser.add_argument(
        "--band-precision",
        type=float,
        default=DEFAULT_BAND_PRECISION,
        help="refer band rule: referrals above the band have this precision with 95%% confidence",
    )
    parser.add_argument(
        "--keep-head",
        action="store_true",
        help="keep the trained head (only Platt scaling and the threshold are set on the site's films)",
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
        section, bundle = calibrate(
            args.model,
            args.films,
            args.site or args.films.name,
            args.recall_floor,
            not args.keep_head,
            args.band_precision,
        )
        written = write_bundle(
            args.out, bundle.model_path.read_bytes(), _metadata(bundle.metadata, section, args.out.name)
        )
    except (CalibrationError, BundleError, RuntimeUnavailableError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(_summary(section, written.root), file=sys.stderr)
    return 0


def calibrate(
    model: Path,
    films: Path,
    site: str,
    recall_floor: float,
    refit_head: bool = True,
    band_precision: float = DEFAULT_BAND_PRECISION,
) -> tuple[dict[str, Any], Any]:
    """The calibration section (and the site's head) for `model` on the confirmed films under `films`."""
    bundle = load_bundle(model)
    samples, duplicates = drop_duplicates(scan_split(films.parent, films.name))
    labels = np.array([s.label for s in samples], dtype=bool)
    check_sample(labels)
    # the image-level gate stays on; the ood gate is measured, then widened to the site's films
    screener = Screener(bundle, ScreenerOptions(heatmap=False, quality=QualityThresholds(check_ood=False)))
    measured = [_measure(screener, sample.path) for sample in samples]
    scored = np.array([m is not None for m in measured])
    kept = [m for m in measured if m is not None]
    site_films = SiteFilms(
        np.array([m.embedding for m in kept], dtype=np.float64).reshape(len(kept), -1),
        labels[scored],
        tuple(s.patient for s, ok in zip(samples, scored, strict=True) if ok),
    )
    check_sample(site_films.labels)
    fitted = _fit(site_films, bundle.head, refit_head)
    slope, intercept = fit_platt(fitted.oof_logits, site_films.labels)
    oof_probabilities = sigmoid(slope * fitted.oof_logits + intercept)
    operating = promised_threshold(oof_probabilities, site_films.labels, recall_floor)
    in_sample = sigmoid(slope * fitted.head.logits(site_films.embeddings) + intercept)
    threshold = operating["threshold"]
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    section = {
        "method": "head-refit+platt" if fitted.record["refit"] else "platt",
        "slope": slope,
        "intercept": intercept,
        "description": _description(site, len(samples), created, operating),
        "site": site,
        "created_utc": created,
        **operating,
        "refer_band": refer_band(oof_probabilities, site_films.labels, threshold, band_precision),
        "films": {
            "total": len(samples),
            "pneumonia": int(labels.sum()),
            "normal": int((~labels).sum()),
            "refused_by_image_checks": int((~scored).sum()),
            "duplicates_dropped": len(duplicates),
        },
        "head_refit": fitted.record,
        "fit": {
            "brier": brier(oof_probabilities, site_films.labels),
            "log_loss": log_loss(oof_probabilities, site_films.labels),
        },
        "metrics_cross_validated": binary_metrics(site_films.labels, oof_probabilities, threshold),
        "metrics_on_these_films": binary_metrics(site_films.labels, in_sample, threshold),
        "caveat": "metrics_on_these_films are measured on the films that set the head and the threshold: "
        "optimistic. metrics_cross_validated score each film with a head fitted without its patient.",
        "previous": bundle.metadata.get("calibration"),
    }
    if bundle.metadata.get("ood"):
        section["ood"] = _widened_ood(bundle.metadata["ood"], np.array([m.ood_score for m in kept]))
    return section, Bundle(bundle.root, {**bundle.metadata, "head": fitted.head.to_metadata()})


@dataclass(frozen=True)
class _Fitted:
    head: Head
    oof_logits: np.ndarray  # each film scored by a head fitted without its patient
    record: dict[str, Any]


def _fit(films: SiteFilms, prior: Head, refit: bool) -> _Fitted:
    """The site's head and out-of-fold logits: refitted with the trained head as prior, or kept.

    The refit is kept only when its out-of-fold AUC beats the trained head's on the same films
    (which nothing was fitted on, so the two are comparable): a site sample that cannot improve
    the ranking leaves the trained head alone.
    """
    kept = {"trained_head_auc_on_these_films": roc_auc(films.labels, prior.logits(films.embeddings))}
    if not refit:
        record = {"refit": False, "reason": "--keep-head", **kept}
        return _Fitted(prior, prior.logits(films.embeddings), record)
    choice = choose_strength(films, prior)
    record = {
        "rule": "logistic regression, Gaussian prior centred on the trained head; strength with the best "
        f"mean out-of-fold AUC ({FOLDS} folds by patient, {REPEATS} draws), kept only if that AUC beats "
        "the trained head's on the same films",
        "cross_validated_auc_by_strength": {str(k): v for k, v in choice.auc_by_strength.items()},
        "trained_head_sha256": _head_sha256(prior),
        **kept,
    }
    if choice.auc_by_strength[choice.strength] <= choice.prior_auc:
        record.update(refit=False, reason="no refit ranked these films better than the trained head")
        return _Fitted(prior, prior.logits(films.embeddings), record)
    head = fit_head(films, prior, choice.strength)
    change = float(np.linalg.norm(head.kernel - prior.kernel))
    record.update(refit=True, strength=choice.strength, kernel_change_norm=change)
    return _Fitted(head, out_of_fold_logits(films, prior, choice.strength), record)


def _head_sha256(head: Head) -> str:
    return hashlib.sha256(json.dumps(head.to_metadata(), sort_keys=True).encode()).hexdigest()


def _description(site: str, films: int, created: str, operating: dict[str, Any]) -> str:
    low, high = operating["expected_recall_ci95"]
    return (
        f"site calibration '{site}' ({films} films, {created[:10]}); expected recall on new films "
        f"{operating['expected_recall']:.3f} (95% CI {low:.3f}-{high:.3f}), cross-validated"
    )


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


def _measure(screener: Screener, path: Path) -> Assessment | None:
    """The film's assessment through the kiosk's path; None when the image checks refuse it."""
    try:
        assessment = screener.assess_image(load_xray(path.read_bytes()), sha="")
    except (ImageError, OSError) as e:
        log.warning("a calibration film could not be read: %s", e)
        return None
    if assessment.status != STATUS_OK or assessment.embedding is None:
        return None
    return assessment


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
    low, high = section["expected_recall_ci95"]
    slow, shigh = section["expected_specificity_ci95"]
    head = section["head_refit"]
    refit = f"head refitted (prior strength {head['strength']:g})" if head["refit"] else head["reason"]
    return (
        f"calibrated bundle written to {root}\n"
        f"  {section['description']}\n"
        f"  {films['pneumonia']} PNEUMONIA, {films['normal']} NORMAL, "
        f"{films['refused_by_image_checks']} refused by the image checks, "
        f"{films['duplicates_dropped']} duplicate files dropped; {refit}\n"
        f"  threshold {section['threshold']:.4f} ({section['rule']})\n"
        f"  expected on new films (cross-validated by patient): recall {section['expected_recall']:.3f} "
        f"(95% CI {low:.3f}-{high:.3f}, one-sided lower bound {section['recall_lower_bound_95']:.3f}), "
        f"specificity {section['expected_specificity']:.3f} ({slow:.3f}-{shigh:.3f})\n"
        f"  {_band_summary(section['refer_band'])}\n"
        f"  {INTENDED_USE}"
    )


def _band_summary(band: dict[str, Any] | None) -> str:
    if band is None:
        return "no refer band: no score range reaches the precision floor with 95% confidence"
    share = band["pneumonia_share_in_band"]
    return (
        f"uncertain-refer band below {band['upper']:.4f}: {band['films_in_band']} of the films "
        f"({band['share_of_referrals_in_band']:.0%} of referrals), "
        f"{'none' if share is None else f'{share:.0%}'} of them PNEUMONIA; "
        f"precision above it {band['precision_above']:.3f}"
    )
