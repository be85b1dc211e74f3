"""The audit log as administrators read it: who did what and when, with the old and new value.

Read-only (the log itself is append-only, enforced by SQLite triggers, and hash-chained: the page
says whether the chain is intact, edge.webapp.records.audit_chain); reading it is audited too.
It names cases by number, and never holds a patient identifier, PIN or file name.
"""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request
from flask_babel import gettext

from edge.webapp.access.request_guard import current_actor, current_staff
from edge.webapp.records import audit_chain, database

bp = Blueprint("audit", __name__)
SHOWN = 200


@bp.get("/audit")
def index() -> str:
    """The newest entries, or one case's (`?case=N`)."""
    staff = current_staff()
    if staff is None or not staff.is_admin:
        abort(403, description="Only an administrator can read the audit log.")
    raw = request.args.get("case", "").strip()
    if raw and not (raw.isdigit() and int(raw) <= database.MAX_ROWID):
        abort(400, description=gettext("The case number must be a whole number, like 42."))
    case_id = int(raw) if raw else None
    conn = database.get_db()
    database.append_audit(conn, current_actor(), "view_audit", case_id)
    chain = audit_chain.verify(conn)
    entries = database.audit_entries(conn, case_id, limit=SHOWN)
    return render_template("audit/audit.html", entries=entries, case_id=case_id, shown=SHOWN, chain=chain)
