"""Is the kiosk's clock plausible? Records carry its time, and a Raspberry Pi 4 or Zero 2 W has no
battery clock: with no network, after a power cut it may start in the past. A time earlier than the
release's build time (CLOCK_NOT_BEFORE, set by the device's serve.sh) is certainly wrong; /healthz
and every page say so, so staff notice before records get wrong dates.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

#: Where the device's serve.sh puts the release's build time when no setting names one.
NOT_BEFORE_ENV = "PNEUMOEDGE_CLOCK_NOT_BEFORE"


@dataclass(frozen=True)
class ClockCheck:
    ok: bool
    now_utc: str
    not_before_utc: str | None


def parse_not_before(value: str | None) -> datetime | None:
    """CLOCK_NOT_BEFORE as an aware UTC time; ValueError saying what to fix when it is not one."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"CLOCK_NOT_BEFORE={value!r} is not a time like 2026-11-30T10:00:00Z") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def check_clock(not_before: str | None, now: datetime | None = None) -> ClockCheck:
    """The clock is implausible when it reads earlier than `not_before`."""
    now = now or datetime.now(timezone.utc)
    floor = parse_not_before(not_before)
    stamp = now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if floor is None:
        return ClockCheck(True, stamp, None)
    return ClockCheck(now >= floor, stamp, floor.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
