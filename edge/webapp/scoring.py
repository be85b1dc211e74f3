"""Scoring one checked upload and recording it: the path shared by the upload page and the API.

The order matters: the screener runs first (an undecodable file raises and nothing is written),
then the de-identified image is written (accepted images only: they are what a clinician may later
confirm for retraining), then the case row and its heatmap are committed in one transaction. Only
after the commit does the caller answer the client, so every acknowledged result is on disk.

The de-identified PNG is encoded on a worker thread while the screener works: decoding, the model
and zlib all run outside Python's GIL, so on a multi-core board the copy costs little extra time.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass

from flask import Flask, current_app

from edge.preprocess import ImageError, load_xray
from edge.screener import INTENDED_USE, STATUS_OK, Assessment, Screener
from edge.webapp import images, store
from edge.webapp.uploads import Upload, UploadError

log = logging.getLogger(__name__)

SCREENER_KEY = "pneumoedge.screener"
KIOSK_KEY = "pneumoedge.kiosk"
SLOTS_KEY = "pneumoedge.scoring_slots"
COPIER_KEY = "pneumoedge.copier"


@dataclass(frozen=True)
class KioskInfo:
    """What every page footer and /healthz say about the running kiosk."""

    model_name: str
    model_sha256: str
    threshold: float
    runtime: str
    version: str
    intended_use: str
    access_enabled: bool


def init_app(app: Flask, screener: Screener, version: str) -> None:
    """Share one screener (thread-safe) among all requests, scoring at most SCORING_SLOTS at once.

    A full-resolution X-ray needs tens of megabytes while it is decoded, scored and drawn; the slots
    bound the kiosk's memory however many uploads arrive together (the others wait their turn).
    """
    app.extensions[SCREENER_KEY] = screener
    app.extensions[SLOTS_KEY] = threading.BoundedSemaphore(app.config["SCORING_SLOTS"])
    app.extensions[COPIER_KEY] = ThreadPoolExecutor(app.config["SCORING_SLOTS"], "deidentify")
    app.extensions[KIOSK_KEY] = KioskInfo(
        model_name=screener.bundle.name,
        model_sha256=screener.bundle.model_sha256,
        threshold=screener.bundle.threshold,
        runtime=screener.model.runtime_name,
        version=version,
        intended_use=INTENDED_USE,
        access_enabled=app.config.get("ACCESS_CODE_HASH") is not None,
    )


def kiosk_info() -> KioskInfo:
    return current_app.extensions[KIOSK_KEY]


def score_and_record(upload: Upload) -> store.Case:
    """Assess the upload and commit the case; UploadError when the file cannot be read as an X-ray."""
    screener: Screener = current_app.extensions[SCREENER_KEY]
    with current_app.extensions[SLOTS_KEY]:
        copy = current_app.extensions[COPIER_KEY].submit(_deidentified_png, upload.data)
        try:
            assessment = screener.assess(upload.data)
        except ImageError as e:
            log.info("refused an upload: %s", e.reason)
            raise UploadError.from_image_error(e) from e
        finally:
            wait([copy])  # its memory is part of this slot's
        image_file = None
        if assessment.status == STATUS_OK:
            # copy.result() cannot raise: the screener has just decoded the same bytes.
            image_file = images.save(current_app.config["DATA_DIR"], assessment.input_sha256, copy.result())
    return store.insert_case(
        store.get_db(), _new_case(assessment, upload.case_ref, image_file), assessment.heatmap_png
    )


def _deidentified_png(data: bytes) -> bytes:
    return images.deidentified_png(load_xray(data).pixels)


def _new_case(assessment: Assessment, case_ref: str | None, image_file: str | None) -> store.NewCase:
    return store.NewCase(
        case_ref=case_ref,
        status=assessment.status,
        label=assessment.label,
        probability=assessment.probability,
        threshold=assessment.threshold,
        reason=assessment.reason,
        detail=assessment.detail,
        quality_flags=assessment.quality_flags,
        model_name=assessment.model_name,
        model_sha256=assessment.model_sha256,
        runtime=assessment.runtime,
        input_sha256=assessment.input_sha256,
        image_file=image_file,
        elapsed_ms=assessment.elapsed_ms,
    )
