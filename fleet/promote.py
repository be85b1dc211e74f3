"""Promote only what is better: a candidate bundle against the one in the field, on the same films.

Both bundles score every film through the kiosk's own path (edge.screener.Screener: quality gate,
model, out-of-distribution gate, float head, calibration, each bundle at its own threshold); a refused
film counts as a wrong answer for the bundle that refused it. Differences (candidate - field) get
95% intervals from a paired bootstrap: the same resampled films for both bundles, resampled within
each class so every resample has both. The rule, for a screening tool that must not miss more
children with pneumonia:

- recall is **non-inferior** on the locked set and on every shift set: the lower end of the interval
  of the recall difference is above -margin;
- the primary figure (AUC by default, or F1) is **better** on the locked set: the lower end of its
  difference's interval is above 0.

The decision and the evidence are written into the candidate's bundle.json as `promotion`, whether
it is promoted or not, so whoever installs the bundle can read why it changed (docs/bundle-format.md).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edge.bundle import BUNDLE_FILE_MODE, METADATA_FILE, Bundle, load_bundle
from edge.files import atomic_write_bytes
from edge.kermany import LABELS, scan_split
from edge.metrics import confusion, f1_score, roc_auc
from edge.preprocess import ImageError
from edge.screener import STATUS_OK, Screener, ScreenerOptions
from lab.shift import refusals_as_errors

log = logging.getLogger(__name__)

PRIMARY = ("auc", "f1")
LOCKED = "locked"


@dataclass(frozen=True)
class Rule:
    margin: float = 0.02  # largest recall loss tolerated at the interval's lower end
    primary: str = "auc"
    n_boot: int = 2000
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "recall": f"non-inferior: lower 95% bound of (candidate - field) > -{self.margin} on every set",
            "primary": f"{self.primary} better on the locked set: lower 95% bound of the difference > 0",
            "intervals": f"paired bootstrap, {self.n_boot} resamples within class, seed {self.seed}",
            "refusals": "a film refused by the gate is a wrong answer for that bundle",
        }


def score_films(screener: Screener, folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Labels and probabilities (NaN: refused or undecodable) of every film in FOLDER/{NORMAL,PNEUMONIA}."""
    samples = scan_split(folder.parent, folder.name)
    if not samples or len({s.label for s in samples}) < len(LABELS):
        raise ValueError(f"{folder} needs films of both labels {LABELS}; it has {len(samples)} films")
    probabilities = []
    for sample in samples:
        try:
            result = screener.assess(sample.path.read_bytes())
        except ImageError:
            probabilities.append(float("nan"))
            continue
        ok = result.status == STATUS_OK and result.probability is not None
        probabilities.append(result.probability if ok else float("nan"))
    return np.array([s.label for s in samples]), np.array(probabilities, dtype=np.float64)


def _figures(labels: np.ndarray, scores: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    cm = confusion(labels, predicted)
    return {
        "recall": cm["tp"] / max(1, cm["tp"] + cm["fn"]),
        "auc": roc_auc(labels, scores),
        "f1": f1_score(cm),
    }


def paired_comparison(
    labels: np.ndarray, candidate: tuple[np.ndarray, float], field: tuple[np.ndarray, float], rule: Rule
) -> dict[str, Any]:
    """Each bundle's recall, AUC and F1 and the paired bootstrap interval of every difference."""
    labels = labels.astype(bool)
    scored = {}
    for name, (probabilities, threshold) in (("candidate", candidate), ("field", field)):
        scores = refusals_as_errors(labels, probabilities)
        scored[name] = (scores, scores >= threshold)
    point = {name: _figures(labels, s, p) for name, (s, p) in scored.items()}
    rng = np.random.default_rng(rule.seed)
    positives, negatives = np.flatnonzero(labels), np.flatnonzero(~labels)
    draws: dict[str, list[float]] = {"recall": [], "auc": [], "f1": []}
    for _ in range(rule.n_boot):
        idx = np.concatenate([rng.choice(positives, positives.size), rng.choice(negatives, negatives.size)])
        c = _figures(labels[idx], scored["candidate"][0][idx], scored["candidate"][1][idx])
        f = _figures(labels[idx], scored["field"][0][idx], scored["field"][1][idx])
        for key in draws:
            draws[key].append(c[key] - f[key])
    return {
        "films": int(labels.size),
        "pneumonia": int(labels.sum()),
        "refused": {
            "candidate": int(np.isnan(candidate[0]).sum()),
            "field": int(np.isnan(field[0]).sum()),
        },
        "candidate": point["candidate"],
        "field": point["field"],
        "difference": {
            key: {
                "value": point["candidate"][key] - point["field"][key],
                "ci95": [float(np.nanpercentile(v, 2.5)), float(np.nanpercentile(v, 97.5))],
            }
            for key, v in draws.items()
        },
    }


def decide(evidence: Mapping[str, dict[str, Any]], rule: Rule) -> tuple[bool, list[str]]:
    """The rule above, with one plain sentence per condition that failed (or why it passes)."""
    reasons = []
    for name, result in evidence.items():
        low = result["difference"]["recall"]["ci95"][0]
        if not low > -rule.margin:
            reasons.append(
                f"{name}: recall {result['candidate']['recall']:.3f} against {result['field']['recall']:.3f} "
                f"(difference as low as {low:+.3f}, tolerated {-rule.margin:+.3f}): it may miss more "
                "children with pneumonia"
            )
    primary = evidence[LOCKED]["difference"][rule.primary]
    if not primary["ci95"][0] > 0:
        reasons.append(
            f"{LOCKED}: {rule.primary} difference {primary['value']:+.4f} (95% CI {primary['ci95'][0]:+.4f} "
            f"to {primary['ci95'][1]:+.4f}) is not shown to be better"
        )
    if reasons:
        return False, reasons
    return True, [
        f"recall non-inferior on {', '.join(evidence)} and {rule.primary} better on the {LOCKED} set "
        f"({primary['value']:+.4f}, 95% CI {primary['ci95'][0]:+.4f} to {primary['ci95'][1]:+.4f})"
    ]


def promote(
    candidate_dir: Path, field_dir: Path, locked: Path, shift: Mapping[str, Path], rule: Rule
) -> dict[str, Any]:
    """Compare, decide, and write the `promotion` section into the candidate's bundle.json."""
    if rule.primary not in PRIMARY:
        raise ValueError(f"primary figure must be one of {PRIMARY}, got {rule.primary!r}")
    if LOCKED in shift:
        raise ValueError(f"{LOCKED!r} names the locked set; give the shift sets other names")
    candidate, field = load_bundle(candidate_dir), load_bundle(field_dir)
    options = ScreenerOptions(heatmap=False)
    screeners = (Screener(candidate, options), Screener(field, options))
    evidence = {}
    for name, folder in {LOCKED: locked, **shift}.items():
        labels, cand = score_films(screeners[0], folder)
        _, fld = score_films(screeners[1], folder)
        evidence[name] = paired_comparison(labels, (cand, candidate.threshold), (fld, field.threshold), rule)
        evidence[name]["folder"] = folder.name
        log.info("%s: %s", name, evidence[name]["difference"])
    promoted, reasons = decide(evidence, rule)
    section = {
        "decision": "promote" if promoted else "refuse",
        "reasons": reasons,
        "compared_with": {"name": field.name, "model_sha256": field.model_sha256},
        "rule": rule.to_dict(),
        "evidence": evidence,
        "decided_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    _write_promotion(candidate, section)
    return section


def _write_promotion(bundle: Bundle, section: dict[str, Any]) -> None:
    """Replace bundle.json with the section added; the model file, so the bundle, stays valid."""
    metadata = {**bundle.metadata, "promotion": section}
    body = (json.dumps(metadata, indent=2) + "\n").encode()
    atomic_write_bytes(bundle.root / METADATA_FILE, body, mode=BUNDLE_FILE_MODE)
    load_bundle(bundle.root)
