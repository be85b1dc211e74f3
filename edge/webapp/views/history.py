"""Past cases: search, record the clinician's confirmed diagnosis; export CSV, FHIR, the labelled dataset."""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
from collections.abc import Mapping
from datetime import datetime

from flask import Blueprint, abort, current_app, redirect, render_template, request, send_file, url_for
from flask_babel import gettext
from werkzeug.wrappers import Response

from edge.kermany import LABELS
from edge.signing import SigningError
from edge.webapp.access.request_guard import current_actor
from edge.webapp.display import localtime
from edge.webapp.intake.scoring import kiosk_info
from edge.webapp.intake.upload_checks import CASE_REF_MAX
from edge.webapp.records import audit_chain, database, fhir
from edge.webapp.records.export import cases_csv, write_dataset_zip
from edge.webapp.views.case_filters import QueryError, parse_case_query, parse_int
from edge.webapp.views.errors import error_response

log = logging.getLogger(__name__)
bp = Blueprint("history", __name__)

PAGE_SIZE = 25
FILTER_FIELDS = ("case_ref", "date_from", "date_to")


@bp.get("/history")
def index() -> str | tuple[str, int]:
    filters = {name: request.args[name] for name in FILTER_FIELDS if request.args.get(name, "").strip()}
    try:
        query = _page_query()
        page = parse_int(request.args, "page", 1, 1, 1_000_000)
    except QueryError as e:
        return _page([], 0, 1, filters, error=gettext("Cannot search: %(reason)s.", reason=e)), 400
    cases, total = database.search_cases(database.get_db(), query, PAGE_SIZE, (page - 1) * PAGE_SIZE)
    return _page(cases, total, page, filters)


@bp.post("/cases/<rowid:case_id>/diagnosis")
def confirm(case_id: int) -> Response | str:
    """Two taps: the first (a diagnosis) shows what will be recorded and by whom; the second
    (`confirmed=yes`, with the confirmation the person saw as `previous`) writes it, attributed and
    audited. Nothing is written by the first tap, nor for a case that could not be assessed."""
    diagnosis = request.form.get("diagnosis", "")
    if diagnosis not in LABELS:
        normal, pneumonia = (gettext(label) for label in LABELS)
        abort(
            400, description=gettext("Choose the confirmed diagnosis: %(a)s or %(b)s.", a=normal, b=pneumonia)
        )
    conn = database.get_db()
    case = database.get_case(conn, case_id)
    if case is None:
        abort(404, description=gettext("There is no case #%(id)d.", id=case_id))
    try:
        if case.status != "ok" or request.form.get("confirmed") == "yes":
            database.confirm_case(
                conn, case_id, diagnosis, current_actor(), request.form.get("previous") or None
            )
        else:
            return render_template("history/confirm.html", case=case, diagnosis=diagnosis)
    except database.ConfirmError as e:
        return error_response(e.status, e.code, e.message)
    return redirect(url_for("pages.result", case_id=case_id), code=303)


@bp.get("/history/export.csv")
def export_csv() -> Response:
    try:
        query = _page_query()
    except QueryError as e:
        abort(400, description=gettext("Cannot export: %(reason)s.", reason=e))
    conn = database.get_db()
    database.append_audit(conn, current_actor(), "export_csv", detail=_described(request.args))
    body = cases_csv(database.iter_cases(conn, query), audit_chain.head(conn))
    response = current_app.response_class(body, mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="pneumoedge-cases-{_today()}.csv"'
    return response


@bp.get("/history/export-fhir.json")
def export_fhir() -> Response:
    """The listed cases that have a confirmed diagnosis, as FHIR R4 DiagnosticReports (a Bundle)."""
    try:
        query = dataclasses.replace(_page_query(), confirmed=True)
    except QueryError as e:
        abort(400, description=gettext("Cannot export: %(reason)s.", reason=e))
    conn = database.get_db()
    database.append_audit(conn, current_actor(), "export_fhir", detail=_described(request.args))
    body = fhir.bundle(
        database.iter_cases(conn, query),
        database.corrected_case_ids(conn),
        database.utc_now(),
        kiosk_info().intended_use,
        audit_chain.head(conn),
    )
    response = current_app.response_class(json.dumps(body, indent=1), mimetype=fhir.MEDIA_TYPE)
    response.headers["Content-Disposition"] = f'attachment; filename="pneumoedge-fhir-{_today()}.json"'
    return response


@bp.get("/history/confirmed-dataset.zip")
def export_dataset() -> Response:
    """Every confirmed, assessable case's de-identified image, in NORMAL/ and PNEUMONIA/ folders."""
    data_dir = current_app.config["DATA_DIR"]
    # Unnamed, so nothing is left behind: the response closes (and so deletes) it once sent.
    spool = tempfile.TemporaryFile(dir=data_dir)  # noqa: SIM115
    conn = database.get_db()
    try:
        # The head before this export's own entry, which is written once the zip exists.
        cases = database.iter_cases(conn, database.CaseQuery(confirmed=True))
        write_dataset_zip(cases, data_dir, spool, audit_chain.head(conn))
    except SigningError as e:  # no openssl 3: an unsigned export would be refused by the programme
        spool.close()
        log.error("the confirmed-images export cannot be signed: %s", e)
        abort(503, description=gettext("Cannot export: %(reason)s.", reason=e))
    database.append_audit(conn, current_actor(), "export_dataset")
    spool.seek(0)
    return send_file(
        spool,
        mimetype="application/zip",
        as_attachment=True,
        download_name=f"pneumoedge-confirmed-{_today()}.zip",
    )


def _page(
    cases: list[database.Case], total: int, page: int, filters: dict[str, str], error: str | None = None
) -> str:
    return render_template(
        "history/history.html",
        cases=cases,
        total=total,
        page=page,
        page_size=PAGE_SIZE,
        filters=filters,
        error=error,
        case_ref_max=CASE_REF_MAX,
    )


def _page_query() -> database.CaseQuery:
    """The filters typed on the page: dates are days in the kiosk's time zone."""
    return dataclasses.replace(parse_case_query(request.args, exact_case_ref=False), zone=localtime.zone())


def _described(args: Mapping[str, str]) -> str:
    """The export's filters for the audit log (dates and a case-reference fragment; no patient data)."""
    return " ".join(f"{key}={args[key]}" for key in FILTER_FIELDS if args.get(key)) or "all cases"


def _today() -> str:
    """Today in the kiosk's zone, for the names of downloaded files."""
    return datetime.now(localtime.zone()).strftime("%Y%m%d")
