"""Personal staff logins: log in with name and PIN, log out, the first-run set-up, and staff management.

Every page needs a logged-in staff member (edge.webapp.access.request_guard); what they do is
attributed to them in the audit log. Administrators add staff, reset PINs and disable logins at /staff.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, abort, redirect, render_template, request, session, url_for
from flask_babel import gettext
from werkzeug.wrappers import Response

from edge.webapp.access import accounts
from edge.webapp.access.accounts import AccountError, LockedOutError
from edge.webapp.access.request_guard import current_actor, current_staff
from edge.webapp.records import database

bp = Blueprint("auth", __name__)


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | tuple[str, int] | tuple[str, int, dict[str, str]] | str:
    target = safe_next(request.values.get("next", ""))
    conn = database.get_db()
    if accounts.count_staff(conn) == 0:
        return _first_run(target)
    if request.method == "GET":
        return render_template("auth/login.html", next=target)
    name = request.form.get("name", "")
    client = request.remote_addr or "unknown"
    try:
        staff = accounts.authenticate(
            conn, name, request.form.get("pin", ""), client, own_screen=_is_loopback(request.remote_addr)
        )
    except LockedOutError as e:
        wait = max(1, math.ceil(e.retry_after_s))
        message = gettext("Too many wrong PINs. Wait %(s)d seconds and try again.", s=wait)
        page = render_template("auth/login.html", next=target, name=name, error=message)
        return page, 429, {"Retry-After": str(wait)}
    if staff is None:
        database.append_audit(conn, database.Actor(None, "unknown"), "login_failed", detail=f"from {client}")
        error = gettext("That name and PIN do not match an active login. Check both and try again.")
        return render_template("auth/login.html", next=target, name=name, error=error), 401
    _start_session(staff)
    database.append_audit(conn, staff.actor, "login")
    return redirect(target)


@bp.post("/logout")
def logout() -> Response:
    token = session.get("sid")
    staff = current_staff()
    if isinstance(token, str) and token:
        accounts.close_session(database.get_db(), token)  # a copied cookie stops working too
    if staff is not None:
        database.append_audit(database.get_db(), staff.actor, "logout")
    session.clear()
    return redirect(url_for("auth.login"))


def admin_required(view: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        staff = current_staff()
        if staff is None or not staff.is_admin:
            abort(403, description=gettext("Only an administrator can manage staff logins."))
        return view(*args, **kwargs)

    return wrapped


@bp.get("/staff")
@admin_required
def staff_list() -> str:
    return _staff_page()


@bp.post("/staff")
@admin_required
def staff_add() -> Response | tuple[str, int]:
    form = request.form
    try:
        if form.get("pin", "") != form.get("pin_again", ""):
            raise AccountError(gettext("The two PINs differ; type the same PIN twice."))
        accounts.add_staff(
            database.get_db(),
            form.get("name", ""),
            form.get("pin", ""),
            form.get("role", "staff"),
            current_actor(),
        )
    except AccountError as e:
        return _staff_page(error=str(e)), 400
    return redirect(url_for("auth.staff_list"), code=303)


@bp.post("/staff/<rowid:staff_id>")
@admin_required
def staff_change(staff_id: int) -> Response | tuple[str, int]:
    form, conn = request.form, database.get_db()
    try:
        if form.get("action") == "pin":
            accounts.set_pin(conn, staff_id, form.get("pin", ""), current_actor())
        elif form.get("action") in ("disable", "enable"):
            accounts.set_active(conn, staff_id, form["action"] == "enable", current_actor())
        else:
            raise AccountError(gettext("Choose what to change: a new PIN, disable or enable."))
    except AccountError as e:
        return _staff_page(error=str(e)), 400
    return redirect(url_for("auth.staff_list"), code=303)


def safe_next(target: str) -> str:
    """Only a path on this kiosk: never redirect a login to another site, never a broken header.

    Browsers drop tabs and newlines from URLs and read a backslash as a slash, so `/\\t/evil` and
    `/\\\\evil` are other sites to them: anything with a control character, a space, a backslash,
    or a scheme or host after parsing is replaced by the home page.
    """
    home = url_for("pages.index")
    if not target.startswith("/") or target.startswith("//"):
        return home
    if "\\" in target or any(ch.isspace() or not ch.isprintable() for ch in target):
        return home
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/") or parts.path.startswith("//"):
        return home
    return target


def _start_session(staff: accounts.Staff) -> None:
    session.clear()
    session.permanent = True
    session["sid"] = accounts.open_session(database.get_db(), staff)


def _first_run(target: str) -> Response | tuple[str, int] | str:
    """No login exists yet: the kiosk's own screen (loopback only) may create the first administrator."""
    local = _is_loopback(request.remote_addr)
    if request.method == "GET" or not local:
        return render_template(
            "auth/setup.html", local=local, pin_rule=accounts.pin_rule()
        ), 200 if local else 403
    form = request.form
    try:
        if form.get("pin", "") != form.get("pin_again", ""):
            raise AccountError(gettext("The two PINs differ; type the same PIN twice."))
        staff = accounts.add_staff(
            database.get_db(),
            form.get("name", ""),
            form.get("pin", ""),
            "admin",
            database.Actor(None, "first-run set-up"),
            only_if_none=True,
        )
    except AccountError as e:
        page = render_template(
            "auth/setup.html",
            local=True,
            error=str(e),
            name=form.get("name", ""),
            pin_rule=accounts.pin_rule(),
        )
        return page, 400
    _start_session(staff)
    database.append_audit(database.get_db(), staff.actor, "login")
    return redirect(target)


def _is_loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _staff_page(error: str | None = None) -> str:
    return render_template(
        "auth/staff.html",
        staff=accounts.list_staff(database.get_db()),
        roles=accounts.ROLES,
        pin_rule=accounts.pin_rule(),
        error=error,
    )
