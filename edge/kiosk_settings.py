"""The kiosk's settings in one place: their defaults, the instance file, and their checks.

Each source overrides the one before: these defaults, then the instance file (Python assignments
of the same upper-case names, read with Flask's `from_pyfile`; by default `config.py` in the kiosk
app's instance folder), then `serve`'s command-line options. Importing this module does not
import Flask, so every `python -m edge` command can show the defaults cheaply.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from edge.screener import default_model_dir

#: The instance file's name inside the app's instance folder (Flask's convention).
INSTANCE_FILE = "config.py"
#: Largest upload accepted; a 16-bit full-resolution DICOM is about 20 MB.
MAX_UPLOAD_BYTES = 40 * 1024 * 1024

DEFAULTS: dict[str, Any] = {
    # The model bundle folder (docs/bundle-format.md): the shipped int8 bundle.
    "MODEL_DIR": str(default_model_dir()),
    # The case database, de-identified images and the kiosk's secrets (relative: to the working folder).
    "DATA_DIR": "kiosk-data",
    # TFLite interpreter threads for the model; None lets the runtime choose.
    "MODEL_THREADS": None,
    # Uploads scored at the same time (the rest wait): bounds memory on a small board.
    "SCORING_SLOTS": 1,
    # A staff session ends after this many seconds without a request (the kiosk is shared).
    "IDLE_LOGOUT_S": 600,
    # Below this much free space in the data folder new uploads are refused ("storage full"); at
    # least 1: half of it (at most 16 MB) is the reserve that keeps logins working on a full disk.
    "MIN_FREE_MB": 200,
    # Delete de-identified images and heatmaps of cases older than this (0: keep them for ever).
    "RETENTION_DAYS": 0,
    # Time zone people read times in (IANA name, set at provisioning); UTC stays in the database.
    "TIMEZONE": "UTC",
    # `serve` only: the address waitress listens on; beyond loopback needs an access code.
    "HOST": "127.0.0.1",
    # Names the kiosk answers to besides localhost, 127.0.0.1, ::1 and HOST (the names clinic
    # systems use when it listens on the network), e.g. ("kiosk.local", "192.168.10.20"); any other
    # Host is refused (edge/webapp/access/host_guard.py).
    "ALLOWED_HOSTS": (),
    # `serve` only: the TCP port.
    "PORT": 8080,
    # `serve` only: waitress's request-handling threads.
    "THREADS": 4,
    "MAX_CONTENT_LENGTH": MAX_UPLOAD_BYTES,
    "SESSION_COOKIE_SAMESITE": "Strict",
    "PERMANENT_SESSION_LIFETIME": timedelta(hours=12),
    # A kiosk page may stay open all shift: tokens last as long as the session.
    "WTF_CSRF_TIME_LIMIT": None,
    # The clinic's register numbers: a regular expression the whole case reference must match;
    # what it matches is accepted before the identifier rules (edge.webapp.intake.case_refs). None: the
    # clinic has none, and a reference needs at least one digit and must pass those rules.
    "CASE_REF_PATTERN": None,
    # One of the clinic's register numbers, shown as the example of what to type.
    "CASE_REF_EXAMPLE": "OPD-2026-00123",
    # The facility's name, printed at the top of every report ("": a line to write it in).
    "FACILITY_NAME": "",
    # The pages' language until someone uses the header's switch; None: the browser's, else English.
    "DEFAULT_LANGUAGE": None,
    # A clock earlier than this UTC time is wrong; None: $PNEUMOEDGE_CLOCK_NOT_BEFORE, which the
    # device's serve.sh sets to the release's build time (edge/webapp/records/clock.py).
    "CLOCK_NOT_BEFORE": None,
}
#: The pages' languages (edge/webapp/translations, and English, the source).
LANGUAGES = ("en", "fr", "pt")


class SettingsError(ValueError):
    """A setting has a value the kiosk cannot use; the message names it and where it came from."""


def load(file: Path | None, overrides: Mapping[str, Any], *, required: bool = False) -> dict[str, Any]:
    """The defaults, then `file` (skipped when absent unless `required`), then `overrides`; checked."""
    from flask import Config

    settings = Config(Path.cwd(), DEFAULTS)
    if file is not None:
        if required and not file.is_file():
            raise SettingsError(f"the settings file {file} does not exist")
        try:
            settings.from_pyfile(str(file.resolve()), silent=True)
        except OSError as e:
            raise SettingsError(f"the settings file {file} cannot be read ({e})") from e
        check(settings, f"in {file}")
    settings.update(overrides)
    check(settings, "")
    return dict(settings)


def instance_file() -> Path:
    """The kiosk app's instance file: `config.py` in Flask's instance folder for `edge.webapp`.

    In a source checkout that is `instance/config.py`; once installed, `<prefix>/var/edge.webapp-instance/`.
    """
    from flask import Flask

    return Path(Flask("edge.webapp", instance_relative_config=True).instance_path) / INSTANCE_FILE


def check(settings: Mapping[str, Any], where: str) -> None:
    """Refuse a value of the wrong kind or range before the kiosk starts with it."""
    for name, (rule, wanted) in _RULES.items():
        value = settings.get(name)
        if not rule(value):
            place = f" {where}" if where else ""
            raise SettingsError(f"{name}{place} must be {wanted}, got {value!r}")


def _whole(minimum: int, maximum: int | None = None) -> Callable[[Any], bool]:
    def ok(value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int):
            return False
        return value >= minimum and (maximum is None or value <= maximum)

    return ok


def _number(minimum: float, *, strict: bool = False) -> Callable[[Any], bool]:
    def ok(value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        return value > minimum if strict else value >= minimum

    return ok


def _zone(value: Any) -> bool:
    try:
        ZoneInfo(value)
    except (TypeError, ValueError, ZoneInfoNotFoundError):
        return False
    return True


def _names(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(name, str) and name.strip() for name in value)


def _text(value: Any) -> bool:
    return isinstance(value, (str, Path)) and str(value) != ""


_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "MODEL_DIR": (_text, "a folder"),
    "DATA_DIR": (_text, "a folder"),
    "MODEL_THREADS": (lambda value: value is None or _whole(1)(value), "None or a whole number >= 1"),
    "SCORING_SLOTS": (_whole(1), "a whole number of at least 1"),
    "IDLE_LOGOUT_S": (_number(0, strict=True), "a number of seconds above 0"),
    "MIN_FREE_MB": (_number(1), "a number of MB of at least 1 (a full disk cannot take a case)"),
    "RETENTION_DAYS": (_number(0), "a number of days of at least 0 (0 keeps everything)"),
    "HOST": (_text, "an address"),
    "ALLOWED_HOSTS": (_names, "a list of host names or addresses, like ('kiosk.local', '192.168.10.20')"),
    "PORT": (_whole(0, 65535), "a whole number from 0 to 65535"),
    "THREADS": (_whole(1), "a whole number of at least 1"),
    "CASE_REF_PATTERN": (lambda value: value is None or _text(value), "None or a regular expression"),
    "CASE_REF_EXAMPLE": (_text, "an example register number"),
    "FACILITY_NAME": (lambda value: isinstance(value, str), "text"),
    "TIMEZONE": (_zone, "an IANA time zone name such as 'Africa/Nairobi' (see /usr/share/zoneinfo)"),
    "DEFAULT_LANGUAGE": (lambda value: value is None or value in LANGUAGES, f"None or one of {LANGUAGES}"),
}
