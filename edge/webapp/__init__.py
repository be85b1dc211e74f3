"""The PneumoEdge kiosk web application: `create_app` builds it, `python -m edge serve` runs it.

Like Flask's tutorial app: defaults first, then the instance folder's `config.py`, then the
caller's overrides; one blueprint per concern (pages, history, api, auth); each resource offers
`init_app`. Nothing happens at import time. Building the app verifies and loads the model bundle
(a missing or altered model raises edge.bundle.BundleError) and opens the data folder.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.routing import IntegerConverter

import edge
from edge.screener import Screener, ScreenerOptions, default_model_dir
from edge.webapp import api, auth, errors, history, images, pages, scoring, security, storage, store
from edge.webapp.case_refs import DEFAULT_EXAMPLE, DEFAULT_PATTERN, init_case_refs

#: Largest upload accepted; a 16-bit full-resolution DICOM is about 20 MB.
MAX_UPLOAD_BYTES = 40 * 1024 * 1024


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the kiosk app; `test_config` overrides everything (tests, and the serve command)."""
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_mapping(
        DATA_DIR=app.instance_path,
        MODEL_DIR=str(default_model_dir()),
        MODEL_THREADS=None,
        # Uploads scored at the same time (the rest wait): bounds memory on a small board.
        SCORING_SLOTS=1,
        MAX_CONTENT_LENGTH=MAX_UPLOAD_BYTES,
        SESSION_COOKIE_SAMESITE="Strict",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=12),
        # A staff session ends after this many seconds without a request (the kiosk is shared).
        IDLE_LOGOUT_S=600,
        # Below this much free space in the data folder new uploads are refused ("storage full").
        MIN_FREE_MB=200,
        # Delete de-identified images and heatmaps of cases older than this (0: keep them for ever).
        RETENTION_DAYS=0,
        # A kiosk page may stay open all shift: tokens last as long as the session.
        WTF_CSRF_TIME_LIMIT=None,
        # The clinic's register numbers (a regular expression the whole case reference must match).
        CASE_REF_PATTERN=DEFAULT_PATTERN,
        # One of the clinic's register numbers, shown as the example of what to type.
        CASE_REF_EXAMPLE=DEFAULT_EXAMPLE,
        # The facility's name, printed at the top of every report.
        FACILITY_NAME="",
    )
    if test_config is None:
        app.config.from_pyfile("config.py", silent=True)
    else:
        app.config.from_mapping(test_config)

    data_dir = Path(app.config["DATA_DIR"])
    data_dir.mkdir(parents=True, exist_ok=True)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = security.load_or_create_secret_key(data_dir)
    if "ACCESS_CODE_HASH" not in app.config:
        app.config["ACCESS_CODE_HASH"] = security.load_access_code_hash(data_dir)

    screener = Screener.from_path(
        app.config["MODEL_DIR"], ScreenerOptions(num_threads=app.config["MODEL_THREADS"])
    )
    init_case_refs(app)
    store.init_app(app)
    images.init_dir(data_dir)
    storage.init_app(app)
    scoring.init_app(app, screener, getattr(edge, "__version__", "unknown"))
    security.init_app(app)
    errors.init_app(app)

    app.url_map.converters["rowid"] = RowIdConverter
    app.add_template_filter(_utc, "utc")
    app.context_processor(lambda: {"kiosk": scoring.kiosk_info()})
    for blueprint in (pages.bp, history.bp, auth.bp, api.bp):
        app.register_blueprint(blueprint)
    security.csrf.exempt(api.bp)
    return app


class RowIdConverter(IntegerConverter):
    """A record number in a URL: beyond SQLite's integer range it matches no route (404), never a 500."""

    def __init__(self, map: Any) -> None:
        super().__init__(map, min=0, max=store.MAX_ROWID)


def _utc(stamp: str) -> str:
    """'2026-01-31T09:15:02.123Z' -> '2026-01-31 09:15 UTC' for people."""
    return f"{stamp[:10]} {stamp[11:16]} UTC" if stamp else ""
