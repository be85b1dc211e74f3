"""Helpers for the web app tests: upload a file, and see what the kiosk has stored."""

from __future__ import annotations

import io
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from edge.webapp.access import accounts
from edge.webapp.records import database, xray_copies

AppFactory = Callable[..., Flask]

NURSE, NURSE_PIN = "Amina Nurse", "246810"
ADMIN, ADMIN_PIN = "Joao Admin", "135790"


def add_staff(app: Flask, name: str, pin: str, role: str = "staff") -> accounts.Staff:
    """Create a staff login straight in the app's database (as an administrator would)."""
    conn = database.connect(database.db_path(app.config["DATA_DIR"]))
    try:
        return accounts.add_staff(conn, name, pin, role, database.Actor(None, "test set-up"))
    finally:
        conn.close()


def login(client: FlaskClient, name: str = NURSE, pin: str = NURSE_PIN, target: str = "/") -> TestResponse:
    """Log in through the login form (CSRF token included when the app checks it)."""
    page = client.get("/login").data.decode()
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    form = {"name": name, "pin": pin, "next": target}
    if match:
        form["csrf_token"] = match.group(1)
    return client.post("/login", data=form)


def audit_rows(data_dir: Path) -> list[dict[str, Any]]:
    """The audit log, oldest first, read straight from the database."""
    conn = sqlite3.connect(database.db_path(data_dir))
    conn.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in conn.execute("SELECT * FROM audit_log ORDER BY id")]
    finally:
        conn.close()


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
    conn = sqlite3.connect(database.db_path(data_dir))
    try:
        rows = conn.execute("SELECT count(*) FROM cases").fetchone()[0]
    finally:
        conn.close()
    folder = xray_copies.images_dir(data_dir)
    files = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    return int(rows), files
