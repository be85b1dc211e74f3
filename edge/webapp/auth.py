"""Operator login and logout with the access code (only when one is set)."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

from edge.webapp.security import LOCKOUT_S, guard

bp = Blueprint("auth", __name__)


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | tuple[str, int] | str:
    access = guard()
    target = _safe_next(request.values.get("next", ""))
    if not access.enabled:
        return redirect(target)
    if request.method == "GET":
        return render_template("login.html", next=target)
    client = request.remote_addr or "unknown"
    if access.locked_out(client):
        message = f"Too many wrong access codes. Wait {LOCKOUT_S:.0f} seconds and try again."
        return render_template("login.html", next=target, error=message), 429
    if not access.check(request.form.get("access_code", ""), client):
        return render_template("login.html", next=target, error="That access code is wrong."), 401
    session.clear()
    session.permanent = True
    session["operator"] = access.fingerprint
    return redirect(target)


@bp.post("/logout")
def logout() -> Response:
    session.clear()
    return redirect(url_for("auth.login"))


def _safe_next(target: str) -> str:
    """Only a path on this kiosk: never redirect a login to another site."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("pages.index")
