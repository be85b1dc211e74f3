"""The touchscreen pages: upload an X-ray, see its result, print its report."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for
from flask_babel import gettext
from werkzeug.wrappers import Response

from edge.kermany import LABELS
from edge.quality import plain_words
from edge.webapp.access.request_guard import current_actor
from edge.webapp.intake import case_refs
from edge.webapp.intake.scoring import refused_thumbnail, score_and_record
from edge.webapp.intake.upload_checks import CASE_REF_FIELD, CASE_REF_MAX, UploadError, read_upload
from edge.webapp.records import database
from edge.webapp.views import result_pictures

bp = Blueprint("pages", __name__)


@bp.get("/")
def index() -> str:
    return _upload_page()


@bp.post("/assess")
def assess() -> Response | tuple[str, int]:
    """Score the upload; on success show its result (303: a reload does not resubmit)."""
    try:
        case = score_and_record(read_upload(request), current_actor())
    except UploadError as e:
        return _upload_page(
            error=e.message,
            error_detail=e.detail,
            case_ref=request.form.get(CASE_REF_FIELD, "")[:CASE_REF_MAX],
        ), e.status
    return redirect(url_for("pages.result", case_id=case.id), code=303)


@bp.get("/cases/<rowid:case_id>")
def result(case_id: int) -> str:
    case = _case_or_404(case_id)
    database.append_audit(database.get_db(), current_actor(), "view_result", case_id)
    return render_template(
        "pages/result.html",
        case=case,
        has_heatmap=_has_heatmap(case),
        has_thumbnail=case.status != "ok" and refused_thumbnail(case_id) is not None,
        advice=_advice(case),
        labels=LABELS,
    )


@bp.get("/cases/<rowid:case_id>/report")
def report(case_id: int) -> str:
    case = _case_or_404(case_id)
    database.append_audit(database.get_db(), current_actor(), "view_report", case_id)
    return render_template(
        "pages/report.html",
        case=case,
        has_heatmap=_has_heatmap(case),
        advice=_advice(case),
        facility=current_app.config["FACILITY_NAME"],
    )


@bp.get("/cases/<rowid:case_id>/heatmap.png")
def heatmap(case_id: int) -> Response:
    """The X-ray with its heatmap blended in (the printed report)."""
    png = result_pictures.heatmap_overlay(
        current_app.config["DATA_DIR"], database.get_db(), _case_or_404(case_id)
    )
    return _picture(png, "image/png", gettext("Case %(id)d has no heatmap.", id=case_id))


@bp.get("/cases/<rowid:case_id>/heatmap-layer.png")
def heatmap_layer(case_id: int) -> Response:
    """The see-through heatmap the result page lays over the X-ray."""
    layer = database.get_heatmap(database.get_db(), case_id)
    return _picture(layer, "image/png", gettext("Case %(id)d has no heatmap.", id=case_id))


@bp.get("/cases/<rowid:case_id>/xray.jpg")
def xray(case_id: int) -> Response:
    """The stored de-identified X-ray at display size."""
    jpeg = result_pictures.xray_jpeg(current_app.config["DATA_DIR"], _case_or_404(case_id))
    return _picture(jpeg, "image/jpeg", gettext("Case %(id)d has no stored image.", id=case_id))


@bp.get("/cases/<rowid:case_id>/refused.jpg")
def refused_thumbnail_image(case_id: int) -> Response:
    """A refused film's thumbnail, while the kiosk still holds it in memory."""
    jpeg = refused_thumbnail(case_id)
    missing = gettext("Case %(id)d has no thumbnail: refused images are not kept.", id=case_id)
    return _picture(jpeg, "image/jpeg", missing)


def _upload_page(error: str | None = None, error_detail: str | None = None, case_ref: str = "") -> str:
    max_mb = current_app.config["MAX_CONTENT_LENGTH"] // (1024 * 1024)
    return render_template(
        "pages/index.html",
        error=error,
        error_detail=error_detail,
        case_ref=case_ref,
        case_ref_max=CASE_REF_MAX,
        case_ref_example=case_refs.rules().example,
        max_upload_mb=max_mb,
    )


def _case_or_404(case_id: int) -> database.Case:
    case = database.get_case(database.get_db(), case_id)
    if case is None:
        abort(404, description=gettext("There is no case #%(id)d.", id=case_id))
    return case


def _has_heatmap(case: database.Case) -> bool:
    return database.has_heatmap(database.get_db(), case.id)


def _advice(case: database.Case) -> list[str]:
    """What a refusal means and what to do next, in plain words (accepted cases: none)."""
    return plain_words(case.quality_flags) if case.status != "ok" else []


def _picture(body: bytes | None, mimetype: str, missing: str) -> Response:
    if body is None:
        abort(404, description=missing)
    return current_app.response_class(body, mimetype=mimetype)
