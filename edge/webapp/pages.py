"""The touchscreen pages: upload an X-ray, see its result, print its report."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from edge.kermany import LABELS
from edge.webapp import case_refs, store
from edge.webapp.scoring import score_and_record
from edge.webapp.security import current_actor
from edge.webapp.uploads import CASE_REF_FIELD, CASE_REF_MAX, UploadError, read_upload

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
            error=e.message, case_ref=request.form.get(CASE_REF_FIELD, "")[:CASE_REF_MAX]
        ), e.status
    return redirect(url_for("pages.result", case_id=case.id), code=303)


@bp.get("/cases/<rowid:case_id>")
def result(case_id: int) -> str:
    case = _case_or_404(case_id)
    store.append_audit(store.get_db(), current_actor(), "view_result", case_id)
    return render_template("result.html", case=case, has_heatmap=_has_heatmap(case), labels=LABELS)


@bp.get("/cases/<rowid:case_id>/report")
def report(case_id: int) -> str:
    case = _case_or_404(case_id)
    store.append_audit(store.get_db(), current_actor(), "view_report", case_id)
    return render_template(
        "report.html",
        case=case,
        has_heatmap=_has_heatmap(case),
        facility=current_app.config["FACILITY_NAME"],
    )


@bp.get("/cases/<rowid:case_id>/heatmap.png")
def heatmap(case_id: int) -> Response:
    png = store.get_heatmap(store.get_db(), case_id)
    if png is None:
        abort(404, description=f"Case {case_id} has no heatmap.")
    return current_app.response_class(png, mimetype="image/png")


def _upload_page(error: str | None = None, case_ref: str = "") -> str:
    max_mb = current_app.config["MAX_CONTENT_LENGTH"] // (1024 * 1024)
    return render_template(
        "index.html",
        error=error,
        case_ref=case_ref,
        case_ref_max=CASE_REF_MAX,
        case_ref_example=case_refs.rules().example,
        max_upload_mb=max_mb,
    )


def _case_or_404(case_id: int) -> store.Case:
    case = store.get_case(store.get_db(), case_id)
    if case is None:
        abort(404, description=f"There is no case #{case_id}.")
    return case


def _has_heatmap(case: store.Case) -> bool:
    return store.has_heatmap(store.get_db(), case.id)
