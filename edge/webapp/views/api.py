"""The JSON API for clinic systems (docs/openapi.yaml) and the health check.

Every call but /healthz needs a credential (an API token, the access code, or the kiosk's own
logged-in pages' session: edge.webapp.access.request_guard); what each call reads or creates is in
the audit log under the credential's holder. Exempt from CSRF: cross-site requests are refused outright.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import asdict
from typing import Any

from flask import Blueprint, abort, current_app, jsonify, request, url_for
from flask_babel import gettext
from werkzeug.wrappers import Response

from edge.webapp.access.request_guard import current_actor
from edge.webapp.intake.scoring import kiosk_info, score_and_record
from edge.webapp.intake.upload_checks import UploadError, read_upload
from edge.webapp.records import clock, data_folder, database
from edge.webapp.views.case_filters import MAX_LIMIT, QueryError, parse_case_query, parse_int
from edge.webapp.views.errors import error_response
from edge.webapp.views.result_pictures import heatmap_overlay

log = logging.getLogger(__name__)

bp = Blueprint("api", __name__)
DEFAULT_LIMIT = 50


@bp.post("/api/v1/predict")
def predict() -> Response:
    """Score one X-ray (multipart `file`, optional `case_ref`); 201 with the committed case."""
    try:
        case = score_and_record(read_upload(request), current_actor())
    except UploadError as e:
        return error_response(e.status, e.code, e.message, e.detail)
    response = jsonify(_case_json(case))
    response.status_code = 201
    response.headers["Location"] = url_for("api.result", case_id=case.id)
    return response


@bp.get("/api/v1/results")
def results() -> Response:
    """Cases newest first; filters as on the history page, but `case_ref` matches exactly.

    Unlike the page's form (which sends blank fields), a query value the API is given empty is
    refused: a clinic system that sends `date_from=` meant some date, and must not get every case.
    """
    try:
        for name, value in request.args.items(multi=True):
            if not value.strip():
                raise QueryError(gettext("%(name)s is empty: give a value or leave it out", name=name))
        query = parse_case_query(request.args, exact_case_ref=True)
        limit = parse_int(request.args, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        offset = parse_int(request.args, "offset", 0, 0, 2**31)
    except QueryError as e:
        return error_response(400, "bad_query", f"{e}.")
    cases, total = database.search_cases(database.get_db(), query, limit, offset)
    database.append_audit(
        database.get_db(), current_actor(), "api_list_results", detail=f"{len(cases)} of {total} cases"
    )
    next_offset = offset + len(cases) if offset + len(cases) < total else None
    return jsonify(
        results=[_case_json(case) for case in cases],
        total=total,
        limit=limit,
        offset=offset,
        next_offset=next_offset,
    )


@bp.get("/api/v1/results/<rowid:case_id>")
def result(case_id: int) -> Response:
    case = database.get_case(database.get_db(), case_id)
    if case is None:
        abort(404, description=f"There is no case #{case_id}.")
    database.append_audit(database.get_db(), current_actor(), "api_view_result", case_id)
    return jsonify(_case_json(case))


@bp.get("/api/v1/results/<rowid:case_id>/heatmap.png")
def heatmap(case_id: int) -> Response:
    case = database.get_case(database.get_db(), case_id)
    png = None if case is None else heatmap_overlay(current_app.config["DATA_DIR"], database.get_db(), case)
    if png is None:
        abort(404, description=f"Case #{case_id} has no heatmap (none exists, or it could not be assessed).")
    database.append_audit(database.get_db(), current_actor(), "api_view_heatmap", case_id)
    return current_app.response_class(png, mimetype="image/png")


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    """For monitoring: can this kiosk record a case now (database and image folder writable, free
    space above the floor), and which model is loaded. 503 when it cannot."""
    info = kiosk_info()
    try:
        conn: sqlite3.Connection | None = database.get_db()
    except sqlite3.Error:
        conn = None
    health = data_folder.check_health(conn, current_app.config["DATA_DIR"], data_folder.reserve())
    body = {
        "status": "ok" if health.ok else "error",
        "database": health.database,
        "images": health.images,
        "storage": health.storage,
        "free_mb": health.free_mb,
        "model": {"name": info.model_name, "sha256": info.model_sha256, "threshold": info.threshold},
        "runtime": info.runtime,
        "version": info.version,
        "intended_use": info.intended_use,
        "clock": asdict(clock.check_clock(current_app.config["CLOCK_NOT_BEFORE"])),
    }
    return jsonify(body), 200 if health.ok else 503


def _case_json(case: database.Case) -> dict[str, Any]:
    body = case.to_dict()
    body["heatmap_url"] = url_for("api.heatmap", case_id=case.id) if case.status == "ok" else None
    body["report_url"] = url_for("pages.report", case_id=case.id)
    body["intended_use"] = kiosk_info().intended_use
    return body
