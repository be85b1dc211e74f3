"""Error responses a user can act on: an HTML page for people, JSON for the API."""

from __future__ import annotations

import logging

from flask import Flask, current_app, jsonify, render_template, request
from flask_babel import gettext
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.wrappers import Response

from edge.webapp.access.request_guard import is_api_request
from edge.webapp.intake.upload_checks import CASE_REF_MAX

log = logging.getLogger(__name__)


def error_response(status: int, code: str, message: str, detail: str | None = None) -> Response:
    """JSON `{"error": {"code", "message"[, "detail"]}}` for the API, the error page otherwise.

    `detail` is the technical reason behind a plain-words message, for a clinic system's logs (the
    upload page shows its own).
    """
    if is_api_request():
        error = {"code": code, "message": message} | ({"detail": detail} if detail else {})
        response = jsonify(error=error)
    else:
        response = current_app.make_response(
            render_template("errors/error.html", status=status, message=message)
        )
    response.status_code = status
    return response


def init_app(app: Flask) -> None:
    app.register_error_handler(CSRFError, _csrf_failed)
    app.register_error_handler(413, _too_large)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(InternalServerError, _internal_error)


def _csrf_failed(error: CSRFError) -> Response:
    log.info("CSRF check failed: %s", error.description)
    return error_response(
        400,
        "csrf",
        gettext(
            "This form has expired or did not come from this kiosk. Go back, reload the page and try again."
        ),
    )


def _too_large(_error: HTTPException) -> Response:
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is not None and request.content_length <= limit:
        # Within the upload limit, so one of Werkzeug's limits on the form itself was hit (Werkzeug
        # does not say which): too many parts, or a text field too long.
        return error_response(
            413,
            "form_too_large",
            gettext(
                "The form is too big: it has more than %(parts)d parts or a text field over %(kb)d kB. "
                "Send one X-ray in the field 'file' and, if you like, a case reference of at most "
                "%(max)d characters.",
                parts=request.max_form_parts,
                kb=request.max_form_memory_size // 1000,
                max=CASE_REF_MAX,
            ),
        )
    limit_mb = limit / (1024 * 1024)
    return error_response(
        413,
        "too_large",
        gettext(
            "The upload is larger than the %(mb)d MB limit. "
            "Export the X-ray as JPEG or at a lower resolution.",
            mb=round(limit_mb),
        ),
    )


def _http_error(error: HTTPException) -> Response:
    code = (error.name or "error").lower().replace(" ", "_")
    response = error_response(error.code or 500, code, error.description or error.name)
    for name, value in error.get_headers():  # e.g. a 405's Allow, which the new body must keep
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def _internal_error(error: InternalServerError) -> Response:
    log.error("unhandled error", exc_info=error.original_exception)
    return error_response(
        500,
        "internal_error",
        gettext(
            "Something went wrong on the kiosk. Check the history; if the case is missing, assess it again."
        ),
    )
