"""Leave-site-out folds: with films from several clinics, hold each clinic out in turn.

A model that learnt some clinics' look should be measured on a clinic it never saw: each fold trains
on every other site and is tested on the held-out one, beside the leave-batch-out folds of the
training evaluation (trainer/folds.py). A patient group that reaches the held-out site (a film
shared by two sites links their keys) is kept out of that fold's training side. The worst site is
the figure to report. Each fold is a full training run (fleet.distributed.train_pool), so this is
the expensive evaluation: run it on the cluster.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleet.records import Record, patient_groups, read_records, sites, trainable
from trainer.config import TrainConfig
from trainer.folds import fold_report

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SiteFold:
    site: str
    train: list[Record]
    test: list[Record]

    @property
    def name(self) -> str:
        return f"without-{self.site}"


def site_folds(records: list[Record]) -> list[SiteFold]:
    """One fold per site; refuses a pool of one site (there is nothing to hold out)."""
    records = trainable(records)
    names = sites(records)
    if len(names) < 2:
        raise ValueError(f"leave-site-out needs films from at least two sites; the pool has {names}")
    groups = patient_groups(records)
    folds = []
    for site in names:
        test = [r for r in records if r.site == site]
        reached = {groups[r.content_sha256] for r in test}
        train = [r for r in records if r.site != site and groups[r.content_sha256] not in reached]
        folds.append(SiteFold(site, train, test))
    return folds


def summarise(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    worst = min(results, key=lambda name: results[name]["auc"]["value"])
    return {"folds": results, "worst_site": worst, "worst_auc": results[worst]["auc"]}


def run_leave_site_out(config: TrainConfig, pool_dir: Path, out_dir: Path) -> dict[str, Any] | None:
    """Train and test every fold into OUT/without-SITE; the chief writes OUT/leave-site-out.json."""
    from fleet.distributed import make_strategy, train_pool

    strategy = make_strategy()
    folds = site_folds(read_records(pool_dir))
    results = {}
    for fold in folds:
        log.info("fold %s: %d training films, %d test films", fold.name, len(fold.train), len(fold.test))
        run = train_pool(config, pool_dir, out_dir / fold.name, lambda _, f=fold: (f.train, f.test), strategy)
        if run is not None:
            results[fold.site] = fold_report(out_dir / fold.name, config.min_recall, config.seed)
    if not results:
        return None  # not the chief
    summary = summarise(results)
    (out_dir / "leave-site-out.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    log.info("worst site %s: AUC %.4f", summary["worst_site"], summary["worst_auc"]["value"])
    return summary
