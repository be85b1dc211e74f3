"""The Staff page's API tokens: an administrator makes one per clinic system, and revokes it.

A new token is shown once, on the page that answers its creation (never stored, never shown again:
the kiosk keeps only its hash, edge.webapp.access.api_tokens).
"""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from edge.webapp.access import api_tokens
from edge.webapp.access.request_guard import current_actor
from edge.webapp.records import database
from edge.webapp.views.auth import admin_required

bp = Blueprint("tokens", __name__)


@bp.get("/staff/api-tokens")
@admin_required
def index() -> str:
    return _page()


@bp.post("/staff/api-tokens")
@admin_required
def create() -> tuple[str, int]:
    try:
        record, token = api_tokens.create(database.get_db(), request.form.get("name", ""), current_actor())
    except api_tokens.TokenError as e:
        return _page(error=str(e)), 400
    return _page(new_token=token, new_name=record.name), 201


@bp.post("/staff/api-tokens/<rowid:token_id>/revoke")
@admin_required
def revoke(token_id: int) -> Response | tuple[str, int]:
    try:
        api_tokens.revoke(database.get_db(), token_id, current_actor())
    except api_tokens.TokenError as e:
        return _page(error=str(e)), 400
    return redirect(url_for("tokens.index"), code=303)


def _page(error: str | None = None, new_token: str | None = None, new_name: str | None = None) -> str:
    return render_template(
        "tokens/api_tokens.html",
        tokens=api_tokens.list_all(database.get_db()),
        error=error,
        new_token=new_token,
        new_name=new_name,
    )
