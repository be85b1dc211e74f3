"""Screened and confirmed kiosk cases, made with the kiosk's own image code, for the store, export and
fleet tests: one definition, so a new Case field is filled in once for all of them."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from edge.webapp.records import xray_copies
from edge.webapp.records.database import Case, NewCase


def scored_upload(input_sha256: str, **fields: Any) -> NewCase:
    """An upload the screener scored `ok` with a stand-in model; `fields` replace any of its values."""
    values: dict[str, Any] = {
        "case_ref": None,
        "status": "ok",
        "label": "NORMAL",
        "probability": 0.5,
        "threshold": 0.5,
        "refer_band_upper": None,
        "reason": None,
        "detail": "",
        "quality_flags": (),
        "model_name": "tiny",
        "model_sha256": "0" * 64,
        "runtime": "test",
        "input_sha256": input_sha256,
        "image_file": None,
        "elapsed_ms": 1.0,
    }
    return NewCase(**{**values, **fields})


def confirmed_case(
    data_dir: Path, case_id: int, pixels: np.ndarray, input_sha256: str, case_ref: str | None, label: str
) -> Case:
    """Case `case_id`, confirmed as `label` by a nurse, its film stored de-identified in `data_dir`
    (an initialised kiosk data folder) as the kiosk stores it, so an export can read it."""
    name = xray_copies.save(data_dir, input_sha256, xray_copies.deidentified_png(pixels))
    upload = scored_upload(input_sha256, case_ref=case_ref, label=label, image_file=name)
    return Case(
        **asdict(upload),
        id=case_id,
        created_utc="2026-11-30T10:00:00+00:00",
        confirmed_label=label,
        confirmed_utc="2026-11-30T10:05:00+00:00",
        confirmed_by="nurse",
    )
