"""Screening metrics with 95% confidence intervals, in numpy alone.

It lives in the edge core because the trainer (evaluation, threshold) and the quantize benchmark
must report the same figures computed the same way, and neither may import the other.
Proportions get Wilson score intervals; F1 and ROC AUC get percentile bootstrap intervals.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

Z95 = 1.959963984540054


def wilson_interval(successes: int, total: int) -> tuple[float, float]:
    """Wilson score interval: honest near 0 and 1, where the normal approximation is not."""
    if total == 0:
        return (float("nan"), float("nan"))
    p = successes / total
    denom = 1 + Z95**2 / total
    centre = (p + Z95**2 / (2 * total)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / total + Z95**2 / (4 * total**2)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Mann-Whitney U form of the ROC AUC, ties counted half."""
    y_true = np.asarray(y_true).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(y_true.sum()), int((~y_true).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(scores)
    return float((ranks[y_true].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(1, len(values) + 1)
    unique, inverse, counts = np.unique(sorted_values, return_inverse=True, return_counts=True)
    if len(unique) < len(values):
        sums = np.bincount(inverse, weights=np.arange(1, len(values) + 1))
        ranks[order] = (sums / counts)[inverse]
    return ranks


def roc_curve(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False-positive rate, true-positive rate and the thresholds, from the highest score down."""
    y_true = np.asarray(y_true).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    thresholds = np.unique(scores)[::-1]
    tpr = np.array([(scores[y_true] >= t).mean() for t in thresholds])
    fpr = np.array([(scores[~y_true] >= t).mean() for t in thresholds])
    return np.r_[0.0, fpr], np.r_[0.0, tpr], np.r_[np.inf, thresholds]


def confusion(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, int]:
    y_true = np.asarray(y_true).astype(bool)
    y_pred = np.asarray(y_pred).astype(bool)
    return {
        "tp": int((y_true & y_pred).sum()),
        "fp": int((~y_true & y_pred).sum()),
        "tn": int((~y_true & ~y_pred).sum()),
        "fn": int((y_true & ~y_pred).sum()),
    }


def f1_score(cm: dict[str, int]) -> float:
    denom = 2 * cm["tp"] + cm["fp"] + cm["fn"]
    return 2 * cm["tp"] / denom if denom else float("nan")


def choose_threshold(y_true: np.ndarray, scores: np.ndarray, min_recall: float) -> float:
    """The highest threshold whose recall is still >= min_recall: sensitivity first, then specificity."""
    positives = np.sort(np.asarray(scores, dtype=np.float64)[np.asarray(y_true).astype(bool)])[::-1]
    if len(positives) == 0:
        raise ValueError("cannot choose a threshold without any positive (PNEUMONIA) example")
    if not 0.0 < min_recall <= 1.0:
        raise ValueError(f"min_recall must be in (0, 1], got {min_recall}")
    needed = math.ceil(min_recall * len(positives) - 1e-9)
    return float(positives[needed - 1])


def binary_metrics(
    y_true: np.ndarray, scores: np.ndarray, threshold: float, n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Every figure we report for one model on one set, each with its 95% interval."""
    y_true = np.asarray(y_true).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    cm = confusion(y_true, scores >= threshold)
    tp, fp, tn, fn = cm["tp"], cm["fp"], cm["tn"], cm["fn"]
    proportions = {
        "accuracy": (tp + tn, tp + fp + tn + fn),
        "precision": (tp, tp + fp),
        "recall": (tp, tp + fn),
        "specificity": (tn, tn + fp),
    }
    result: dict[str, Any] = {}
    for name, (k, n) in proportions.items():
        result[name] = {"value": k / n if n else float("nan"), "ci95": list(wilson_interval(k, n))}
    f1_ci, auc_ci = _bootstrap_f1_auc(y_true, scores, threshold, n_boot, seed)
    result["f1"] = {"value": f1_score(cm), "ci95": f1_ci}
    result["auc"] = {"value": roc_auc(y_true, scores), "ci95": auc_ci}
    result["confusion"] = cm
    result["threshold"] = threshold
    result["n"] = len(y_true)
    result["n_positive"] = int(y_true.sum())
    return result


def _bootstrap_f1_auc(
    y_true: np.ndarray, scores: np.ndarray, threshold: float, n_boot: int, seed: int
) -> tuple[list[float], list[float]]:
    rng = np.random.default_rng(seed)
    f1s, aucs = [], []
    for _ in range(n_boot):
        idx = rng.integers(0, len(y_true), len(y_true))
        yt, sc = y_true[idx], scores[idx]
        f1s.append(f1_score(confusion(yt, sc >= threshold)))
        aucs.append(roc_auc(yt, sc))
    return _percentile_ci(f1s), _percentile_ci(aucs)


def _percentile_ci(values: list[float]) -> list[float]:
    finite = np.asarray([v for v in values if not math.isnan(v)])
    if len(finite) == 0:
        return [float("nan"), float("nan")]
    return [float(np.percentile(finite, 2.5)), float(np.percentile(finite, 97.5))]
