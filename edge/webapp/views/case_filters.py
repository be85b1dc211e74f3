"""Reading case filters and paging from a query string, with messages that say what would be valid."""

from __future__ import annotations

from datetime import date

from flask_babel import gettext
from werkzeug.datastructures import MultiDict

from edge.kermany import LABELS
from edge.webapp.intake.upload_checks import CASE_REF_MAX
from edge.webapp.records.database import CaseQuery

STATUSES = ("ok", "rejected")
MAX_LIMIT = 500


class QueryError(ValueError):
    """A filter or paging value the kiosk cannot use (HTTP 400)."""


def parse_case_query(args: MultiDict[str, str], exact_case_ref: bool) -> CaseQuery:
    """Filters: `case_ref`, `date_from`/`date_to` (YYYY-MM-DD, inclusive), `status`, `label`, `confirmed`."""
    case_ref = args.get("case_ref", "").strip()
    if len(case_ref) > CASE_REF_MAX:
        raise QueryError(
            gettext(
                "case_ref is %(length)d characters long; case references have at most %(max)d",
                length=len(case_ref),
                max=CASE_REF_MAX,
            )
        )
    date_from, date_to = _date(args, "date_from"), _date(args, "date_to")
    if date_from and date_to and date_from > date_to:
        raise QueryError(
            gettext("date_from %(start)s is after date_to %(end)s", start=date_from, end=date_to)
        )
    return CaseQuery(
        case_ref=case_ref or None,
        exact_case_ref=exact_case_ref,
        date_from=date_from,
        date_to=date_to,
        status=_choice(args, "status", STATUSES),
        label=_choice(args, "label", LABELS),
        confirmed=_boolean(args, "confirmed"),
    )


def parse_int(args: MultiDict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = args.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if raw.isascii() else low - 1  # int() also reads other scripts' digits
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise QueryError(
            gettext(
                "%(name)s must be a whole number from %(low)d to %(high)d, got %(value)s",
                name=name,
                low=low,
                high=high,
                value=_shown(raw),
            )
        )
    return value


def _date(args: MultiDict[str, str], name: str) -> date | None:
    raw = args.get(name, "").strip()
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError as e:
        raise QueryError(
            gettext("%(name)s must be a date like 2026-01-31, got %(value)s", name=name, value=_shown(raw))
        ) from e


def _choice(args: MultiDict[str, str], name: str, choices: tuple[str, ...]) -> str | None:
    raw = args.get(name, "").strip()
    if not raw:
        return None
    if raw not in choices:
        raise QueryError(
            gettext(
                "%(name)s must be one of %(choices)s, got %(value)s",
                name=name,
                choices=", ".join(choices),
                value=_shown(raw),
            )
        )
    return raw


def _boolean(args: MultiDict[str, str], name: str) -> bool | None:
    raw = args.get(name, "").strip().lower()
    if not raw:
        return None
    if raw not in ("true", "false"):
        raise QueryError(
            gettext("%(name)s must be true or false, got %(value)s", name=name, value=_shown(raw))
        )
    return raw == "true"


def _shown(raw: str) -> str:
    """The bad value, quoted and cut short, for an error message."""
    return repr(raw[:20] + ("…" if len(raw) > 20 else ""))
