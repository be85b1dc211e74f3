"""The pool's film table (`records.csv`), its patient groups, and the split that keeps patients whole.

Every pooled film has one row: its content hash, confirmed label, the site that sent it first, the
site-scoped pseudonymous patient keys it is known under, its status and the shard that holds it. The
table is the pool's contract with the trainer and the folds; the shards hold only pixels and labels.
"""

from __future__ import annotations

import csv
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from edge.files import atomic_write_bytes
from edge.kermany import LABELS

RECORDS_FILE = "records.csv"
RECORD_FIELDS = ("content_sha256", "label", "site", "patients", "status", "shard", "export", "file_sha256")
FILMS_DIR = "films"  # the pool's films in the Kermany layout: FILMS_DIR/{NORMAL,PNEUMONIA}/<hash>.png
STATUS_OK = "ok"
STATUS_CONFLICT = "conflicting labels"  # the same film confirmed differently at two sites: not trained on


@dataclass(frozen=True)
class Record:
    """One pooled film. `patients`: site-scoped keys (`SITE:KEY`, or `film:SHA` when none was typed)."""

    content_sha256: str
    label: int
    site: str
    patients: tuple[str, ...]
    status: str
    shard: str
    export: str
    file_sha256: str  # of the film's file under FILMS_DIR (the same PNG bytes as in its shard)

    @property
    def film_path(self) -> str:
        """Relative to the pool: what run directories (split.csv), evaluation and quantize read."""
        return f"{FILMS_DIR}/{LABELS[self.label]}/{self.content_sha256}.png"

    def with_patients(self, more: Iterable[str]) -> Record:
        return replace(self, patients=tuple(sorted(set(self.patients) | set(more))))


def read_records(pool_dir: Path) -> list[Record]:
    path = Path(pool_dir) / RECORDS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {pool_dir} is not a pool made by `python -m fleet pool`")
    with path.open(newline="", encoding="utf-8") as handle:
        return [
            Record(
                row["content_sha256"],
                LABELS.index(row["label"]),
                row["site"],
                tuple(row["patients"].split(";")),
                row["status"],
                row["shard"],
                row["export"],
                row["file_sha256"],
            )
            for row in csv.DictReader(handle)
        ]


def write_records(pool_dir: Path, records: Sequence[Record]) -> None:
    lines = [",".join(RECORD_FIELDS)]
    for r in records:
        fields = (
            r.content_sha256,
            LABELS[r.label],
            r.site,
            ";".join(r.patients),
            r.status,
            r.shard,
            r.export,
            r.file_sha256,
        )
        lines.append(",".join(fields))
    atomic_write_bytes(Path(pool_dir) / RECORDS_FILE, ("\n".join(lines) + "\n").encode(), mode=0o644)


def trainable(records: Iterable[Record]) -> list[Record]:
    return [r for r in records if r.status == STATUS_OK]


def patient_groups(records: Sequence[Record]) -> dict[str, str]:
    """Content hash -> group: films sharing any patient key (a duplicate dropped at another site links
    that site's key too) are one group, so no child's films can land on both sides of a split."""
    parent: dict[str, str] = {}

    def find(key: str) -> str:
        while parent.setdefault(key, key) != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for record in records:
        first = find(record.patients[0])
        for other in record.patients[1:]:
            parent[find(other)] = first
    return {r.content_sha256: find(r.patients[0]) for r in records}


def group_split(
    records: Sequence[Record], val_fraction: float, seed: int
) -> tuple[list[Record], list[Record]]:
    """Hold out whole patient groups, per class (a group is PNEUMONIA if any film is), seeded."""
    groups = patient_groups(records)
    stratum: dict[str, int] = defaultdict(int)
    for record in records:
        stratum[groups[record.content_sha256]] = max(stratum[groups[record.content_sha256]], record.label)
    rng = random.Random(seed)
    held: set[str] = set()
    for label in range(len(LABELS)):
        members = sorted(g for g, s in stratum.items() if s == label)
        rng.shuffle(members)
        held.update(members[: max(1, round(len(members) * val_fraction))] if members else [])
    train = [r for r in records if groups[r.content_sha256] not in held]
    val = [r for r in records if groups[r.content_sha256] in held]
    return train, val


def sites(records: Iterable[Record]) -> list[str]:
    return sorted({r.site for r in records})
