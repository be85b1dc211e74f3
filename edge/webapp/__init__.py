"""The PneumoEdge kiosk web application: `create_app` builds it, `python -m edge serve` runs it.

Like Flask's tutorial app: the settings are the defaults, then the instance folder's `config.py`
(edge/kiosk_settings.py), unless the caller passes settings it resolved itself; one blueprint per
concern (pages, history, auth, tokens, audit, api: `views/`); each resource offers `init_app`. The
modules are grouped by concern: `views/`, `access/`, `intake/`, `records/`, `display/` (docs/kiosk.md,
"Code"). Nothing happens at import time. Building the app verifies and loads the model bundle (a
missing or altered model raises edge.bundle.BundleError) and opens the data folder.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.routing import IntegerConverter

import edge
from edge import kiosk_settings
from edge.screener import Screener, ScreenerOptions
from edge.webapp.access import api_tokens, host_guard, request_guard
from edge.webapp.display import i18n, localtime, percent
from edge.webapp.intake import scoring
from edge.webapp.intake.case_refs import init_case_refs
from edge.webapp.records import clock, data_folder, database, xray_copies
from edge.webapp.views import api, audit, auth, errors, history, pages, tokens


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the kiosk app from `config` (settings already resolved: serve, tests) over the defaults,
    or, without it, from the defaults and then the instance file (edge/kiosk_settings.py)."""
    app = Flask(__name__, instance_relative_config=True)
    if config is None:
        instance_file = Path(app.instance_path) / kiosk_settings.INSTANCE_FILE
        app.config.from_mapping(kiosk_settings.load(instance_file, {}))
    else:
        app.config.from_mapping({**kiosk_settings.DEFAULTS, **config})
    app.config["DATA_DIR"] = str(Path(app.config["DATA_DIR"]).resolve())
    if app.config["CLOCK_NOT_BEFORE"] is None:
        app.config["CLOCK_NOT_BEFORE"] = os.environ.get(clock.NOT_BEFORE_ENV)
    clock.parse_not_before(app.config["CLOCK_NOT_BEFORE"])  # a bad value stops start-up, clearly

    data_dir = Path(app.config["DATA_DIR"])
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = request_guard.load_or_create_secret_key(data_dir)
    if "ACCESS_CODE_HASH" not in app.config:
        app.config["ACCESS_CODE_HASH"] = request_guard.load_access_code_hash(data_dir)

    screener = Screener.from_path(
        app.config["MODEL_DIR"], ScreenerOptions(num_threads=app.config["MODEL_THREADS"])
    )
    init_case_refs(app)
    database.init_app(app)
    api_tokens.init_app(app)
    xray_copies.init_dir(data_dir)
    data_folder.init_app(app)
    scoring.init_app(app, screener, getattr(edge, "__version__", "unknown"))
    request_guard.init_app(app)
    errors.init_app(app)
    i18n.init_app(app)

    app.url_map.converters["rowid"] = RowIdConverter
    localtime.init_app(app)
    percent.init_app(app)
    app.context_processor(
        lambda: {"kiosk": scoring.kiosk_info(), "clock": clock.check_clock(app.config["CLOCK_NOT_BEFORE"])}
    )
    for blueprint in (pages.bp, history.bp, auth.bp, api.bp, tokens.bp, audit.bp):
        app.register_blueprint(blueprint)
    request_guard.csrf.exempt(api.bp)
    names = host_guard.allowed_names(app.config["HOST"], app.config["ALLOWED_HOSTS"])
    app.wsgi_app = host_guard.HostGuard(app.wsgi_app, names)  # type: ignore[method-assign]
    return app


class RowIdConverter(IntegerConverter):
    """A record number in a URL: beyond SQLite's integer range it matches no route (404), never a 500.

    ASCII digits only: werkzeug's `\\d` also matches other scripts' digits (`/cases/１` would be
    case 1 under a name no link ever uses).
    """

    regex = r"[0-9]+"

    def __init__(self, map: Any) -> None:
        super().__init__(map, min=0, max=database.MAX_ROWID)
