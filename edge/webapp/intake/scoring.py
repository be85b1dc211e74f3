"""Scoring one checked upload and recording it: the path shared by the upload page and the API.

The order matters: free space is checked first (below the floor nothing is attempted: 507
"storage full"); the file is decoded once within the memory budget and the screener assesses that
decoded film (an undecodable or oversized file raises and nothing is written); then the
de-identified image is encoded and written (accepted images only: they are what a clinician may
later confirm for retraining); then the case row, its heatmap layer and the audit entry are
committed in one transaction. Only after the commit does the caller answer the client, so every
acknowledged result is on disk. A refused film leaves only a thumbnail in memory
(edge.webapp.intake.refused_thumbnails).
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass

from flask import Flask, current_app

from edge.preprocess import ImageError, load_xray
from edge.screener import INTENDED_USE, STATUS_OK, Assessment, Screener
from edge.webapp.intake.refused_thumbnails import RefusedThumbnails, thumbnail_jpeg
from edge.webapp.intake.upload_checks import Upload, UploadError
from edge.webapp.records import data_folder, database, xray_copies

log = logging.getLogger(__name__)

SCREENER_KEY = "pneumoedge.screener"
KIOSK_KEY = "pneumoedge.kiosk"
SLOTS_KEY = "pneumoedge.scoring_slots"
REFUSED_KEY = "pneumoedge.refused_thumbnails"


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
    app.extensions[REFUSED_KEY] = RefusedThumbnails()
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


def refused_thumbnail(case_id: int) -> bytes | None:
    """The JPEG thumbnail of a refused case, while the kiosk still holds it in memory."""
    return current_app.extensions[REFUSED_KEY].get(case_id)


def score_and_record(upload: Upload, actor: database.Actor | None = None) -> database.Case:
    """Assess the upload and commit the case; UploadError when it cannot be read or stored.

    The file is decoded once, here, inside the preprocessing memory budget (an image that would
    not fit is refused before its pixels are allocated), and the screener assesses that decoded
    film. The de-identified copy is encoded only when the film was accepted.
    """
    data_dir = current_app.config["DATA_DIR"]
    try:
        data_folder.require_space()
        with current_app.extensions[SLOTS_KEY]:
            assessment, image_file, thumbnail = _assess_and_keep(upload, data_dir)
        conn = database.get_db()
        try:
            case = database.insert_case(
                conn, _new_case(assessment, upload.case_ref, image_file), assessment.heatmap_png, actor
            )
        except BaseException:
            if image_file is not None:
                data_folder.remove_if_unreferenced(conn, data_dir, image_file)
            raise
    except (OSError, sqlite3.Error) as e:
        if not data_folder.is_out_of_space(e):
            raise
        log.error("storage full: an upload was refused")
        raise UploadError(507, "storage_full", data_folder.STORAGE_FULL_MESSAGE) from e
    if thumbnail is not None:
        current_app.extensions[REFUSED_KEY].put(case.id, thumbnail)
    return case


def _assess_and_keep(upload: Upload, data_dir: str) -> tuple[Assessment, str | None, bytes | None]:
    """Decode once, assess, then keep what the storage rules allow: (assessment, image, thumbnail).

    An accepted film's de-identified copy is written (its name returned); a refused one only
    gets a thumbnail for the memory-held preview.
    """
    screener: Screener = current_app.extensions[SCREENER_KEY]
    started = time.perf_counter()
    try:
        image = load_xray(upload.data)
    except ImageError as e:
        log.info("refused an upload: %s", e.reason)
        raise UploadError.from_image_error(e) from e
    assessment = screener.assess_image(image, hashlib.sha256(upload.data).hexdigest(), started)
    if assessment.status != STATUS_OK:
        return assessment, None, thumbnail_jpeg(image.pixels)
    png = xray_copies.deidentified_png(image.pixels)
    del image  # the full-resolution pixels go before the file is written
    return assessment, xray_copies.save(data_dir, assessment.input_sha256, png), None


def _new_case(assessment: Assessment, case_ref: str | None, image_file: str | None) -> database.NewCase:
    return database.NewCase(
        case_ref=case_ref,
        status=assessment.status,
        label=assessment.label,
        probability=assessment.probability,
        threshold=assessment.threshold,
        refer_band_upper=assessment.refer_band_upper,
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
