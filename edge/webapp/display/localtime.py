"""Times for people: the kiosk's configured zone on every page, UTC in the database and exports.

The zone is the `TIMEZONE` setting (an IANA name such as "Africa/Nairobi", set at provisioning);
`zoneinfo` reads the system's time zone data (Debian's tzdata package). An unknown name stops the
kiosk at start, with a message, rather than showing wrong times.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Flask, current_app

ZONE_KEY = "pneumoedge.timezone"


def parse_zone(name: str) -> ZoneInfo:
    """The zone called `name`; ValueError with a fix-it message when there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError(
            f"unknown time zone {name!r}: use an IANA name such as 'Africa/Nairobi' or 'UTC' "
            "(see /usr/share/zoneinfo)"
        ) from e


def init_app(app: Flask) -> None:
    app.extensions[ZONE_KEY] = parse_zone(app.config["TIMEZONE"])
    app.add_template_filter(local_time, "localtime")
    app.context_processor(lambda: {"zone_name": zone_abbreviation()})


def format_local(stamp: str, zone: ZoneInfo) -> str:
    """'2026-01-31T09:15:02.123Z' -> '2026-01-31 12:15 EAT'; '' for no time."""
    if not stamp:
        return ""
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(zone)
    return f"{moment:%Y-%m-%d %H:%M} {moment:%Z}"


def local_time(stamp: str | None) -> str:
    """A stored UTC time as the kiosk's people read it."""
    return format_local(stamp or "", zone())


def zone() -> ZoneInfo:
    """The kiosk's zone: dates typed on its pages are days in it."""
    return current_app.extensions[ZONE_KEY]


def zone_abbreviation() -> str:
    """The zone's short name now (e.g. 'EAT', 'CET'), for column headings."""
    return f"{datetime.now(zone()):%Z}"
