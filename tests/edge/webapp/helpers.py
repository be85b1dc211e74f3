"""Helpers for the web app tests: upload a file, and see what the kiosk has stored."""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from edge.webapp import images, store

AppFactory = Callable[..., Flask]


def post_file(
    client: FlaskClient,
    url: str,
    data: bytes | None,
    filename: str = "xray.jpg",
    case_ref: str | None = None,
    **kwargs: Any,
) -> TestResponse:
    """POST a multipart upload as the page and the API expect it (`data=None`: no file field)."""
    form: dict[str, Any] = {}
    if data is not None:
        form["file"] = (io.BytesIO(data), filename)
    if case_ref is not None:
        form["case_ref"] = case_ref
    return client.post(url, data=form, content_type="multipart/form-data", **kwargs)


def stored_state(data_dir: Path) -> tuple[int, list[str]]:
    """(number of case rows, sorted files under images/): what an upload may change."""
    conn = sqlite3.connect(store.db_path(data_dir))
    try:
        rows = conn.execute("SELECT count(*) FROM cases").fetchone()[0]
    finally:
        conn.close()
    folder = images.images_dir(data_dir)
    files = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    return int(rows), files
