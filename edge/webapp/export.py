"""Exports: the case list as CSV, and confirmed cases as a labelled dataset in the Kermany layout.

The dataset zip holds `NORMAL/<sha256>.png` and `PNEUMONIA/<sha256>.png` (the de-identified copies,
labelled with the clinician's confirmed diagnosis, not the model's) plus `manifest.csv`, so it
unzips straight into `SPLIT/` of a folder that `edge.kermany.scan_split` and the trainer read. An
image confirmed with different diagnoses in different cases is left out and listed as conflicting.
"""

from __future__ import annotations

import csv
import io
import logging
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from edge.webapp import images
from edge.webapp.store import Case

log = logging.getLogger(__name__)

CSV_COLUMNS = (
    "id",
    "case_ref",
    "created_utc",
    "status",
    "label",
    "probability",
    "threshold",
    "reason",
    "quality_flags",
    "model_name",
    "model_sha256",
    "runtime",
    "input_sha256",
    "elapsed_ms",
    "confirmed_label",
    "confirmed_utc",
    "confirmed_by",
)
MANIFEST_COLUMNS = ("file", "label", "status", "cases", "last_confirmed_utc")


def cases_csv(cases: Iterable[Case]) -> str:
    """One row per case; quality flags joined with ';'."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for case in cases:
        row = case.to_dict()
        row["quality_flags"] = ";".join(case.quality_flags)
        writer.writerow("" if row[column] is None else row[column] for column in CSV_COLUMNS)
    return buffer.getvalue()


@dataclass
class _Image:
    """One distinct stored image and every diagnosis confirmed for it."""

    file: str
    labels: set[str] = field(default_factory=set)
    cases: int = 0
    last_confirmed_utc: str = ""


def write_dataset_zip(cases: Iterable[Case], data_dir: Path | str, out: IO[bytes]) -> int:
    """Write the Kermany-layout zip of confirmed, assessable cases to `out`; return the images written."""
    by_sha = _group_confirmed(cases)
    manifest = io.StringIO()
    writer = csv.writer(manifest, lineterminator="\r\n")
    writer.writerow(MANIFEST_COLUMNS)
    written = 0
    # PNGs are already compressed: storing them is as small and much faster.
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        for sha, entry in sorted(by_sha.items()):
            label = next(iter(entry.labels)) if len(entry.labels) == 1 else ""
            path = images.path_of(data_dir, entry.file)
            if not label:
                status = "conflicting diagnoses: " + " / ".join(sorted(entry.labels))
            elif not path.is_file():
                status = "image missing"
                log.warning("stored image for input %s is missing; left out of the export", sha[:12])
            else:
                archive.write(path, f"{label}/{entry.file}")
                status = "exported"
                written += 1
            writer.writerow((entry.file, label, status, entry.cases, entry.last_confirmed_utc))
        archive.writestr("manifest.csv", manifest.getvalue())
    return written


def _group_confirmed(cases: Iterable[Case]) -> dict[str, _Image]:
    by_sha: dict[str, _Image] = {}
    for case in cases:
        if case.status != "ok" or case.confirmed_label is None or case.image_file is None:
            continue
        entry = by_sha.setdefault(case.input_sha256, _Image(case.image_file))
        entry.labels.add(case.confirmed_label)
        entry.cases += 1
        entry.last_confirmed_utc = max(entry.last_confirmed_utc, case.confirmed_utc or "")
    return by_sha
