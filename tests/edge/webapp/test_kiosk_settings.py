"""The kiosk's settings: the defaults, then the instance file, then `serve`'s options."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from flask import Flask

from edge import kiosk_settings
from edge.__main__ import build_parser, main
from edge.bundle import Bundle
from edge.commands import serve
from edge.webapp import create_app
from edge.webapp.intake import scoring


def serve_settings(*args: str) -> dict:
    """What `python -m edge serve ARGS` would run with."""
    return serve.settings_from(build_parser().parse_args(["serve", *args]))


@pytest.fixture
def instance_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Flask's instance folder for the kiosk app, moved under tmp_path."""
    folder = tmp_path / "instance"
    folder.mkdir()
    monkeypatch.setattr(Flask, "auto_find_instance_path", lambda self: str(folder))
    return folder


def test_without_an_instance_file_serve_uses_the_defaults(instance_dir: Path) -> None:
    assert kiosk_settings.instance_file() == instance_dir / "config.py"
    assert serve_settings() == kiosk_settings.DEFAULTS


def test_the_instance_file_overrides_the_defaults_and_options_override_it(
    instance_dir: Path, tmp_path: Path
) -> None:
    (instance_dir / "config.py").write_text("MODEL_THREADS = 2\nPORT = 9001\nSCORING_SLOTS = 3\nlower = 1\n")
    settings = serve_settings("--port", "9002", "--data-dir", str(tmp_path / "d"))
    assert settings["MODEL_THREADS"] == 2  # from the file
    assert settings["SCORING_SLOTS"] == 3
    assert settings["PORT"] == 9002  # the option wins over the file
    assert settings["DATA_DIR"] == str(tmp_path / "d")
    assert settings["THREADS"] == kiosk_settings.DEFAULTS["THREADS"]  # neither: the default
    assert "lower" not in settings  # Flask reads upper-case names only


def test_config_names_another_instance_file(instance_dir: Path, tmp_path: Path) -> None:
    (instance_dir / "config.py").write_text("MODEL_THREADS = 2\n")
    other = tmp_path / "kiosk.py"
    other.write_text("MODEL_THREADS = 3\n")
    assert serve_settings("--config", str(other))["MODEL_THREADS"] == 3
    assert serve_settings("--config", str(other), "--model-threads", "1")["MODEL_THREADS"] == 1


def test_model_threads_reach_the_interpreter(tiny_bundle_int8: Bundle, tmp_path: Path) -> None:
    settings = serve_settings(
        "--model", str(tiny_bundle_int8.root), "--data-dir", str(tmp_path), "--model-threads", "2"
    )
    app = create_app({**settings, "TESTING": True})
    assert app.extensions[scoring.SCREENER_KEY].model.num_threads == 2


def test_create_app_without_settings_reads_the_instance_file(
    instance_dir: Path, tiny_bundle_int8: Bundle, tmp_path: Path
) -> None:
    (instance_dir / "config.py").write_text(
        f"MODEL_DIR = {str(tiny_bundle_int8.root)!r}\nDATA_DIR = {str(tmp_path / 'd')!r}\n"
        "MODEL_THREADS = 2\nRETENTION_DAYS = 30\nTESTING = True\n"
    )
    app = create_app()
    assert app.config["DATA_DIR"] == str(tmp_path / "d")
    assert app.config["RETENTION_DAYS"] == 30
    assert app.extensions[scoring.SCREENER_KEY].model.num_threads == 2


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("MODEL_THREADS = 'two'", "MODEL_THREADS in {file} must be None or a whole number >= 1, got 'two'"),
        ("PORT = 70000", "PORT in {file} must be a whole number from 0 to 65535, got 70000"),
        ("SCORING_SLOTS = 0", "SCORING_SLOTS in {file} must be a whole number of at least 1, got 0"),
        ("IDLE_LOGOUT_S = True", "IDLE_LOGOUT_S in {file} must be a number of seconds above 0, got True"),
        ("RETENTION_DAYS = -1", "RETENTION_DAYS in {file} must be a number of days of at least 0"),
        ("MIN_FREE_MB = 0", "MIN_FREE_MB in {file} must be a number of MB of at least 1"),
        ("ALLOWED_HOSTS = 'kiosk.local'", "ALLOWED_HOSTS in {file} must be a list of host names"),
    ],
)
def test_a_bad_value_in_the_instance_file_stops_the_start(
    caplog: pytest.LogCaptureFixture, tmp_path: Path, line: str, message: str
) -> None:
    file = tmp_path / "kiosk.py"
    file.write_text(line + "\n")
    with caplog.at_level(logging.ERROR, logger="edge.commands.serve"):
        code = main(["serve", "--config", str(file), "--data-dir", str(tmp_path / "data")])
    assert code == 2
    assert "cannot start: " + message.format(file=file) in caplog.text
    assert not (tmp_path / "data").exists()  # refused before anything was created


def test_a_missing_config_file_stops_the_start(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    with caplog.at_level(logging.ERROR, logger="edge.commands.serve"):
        code = main(["serve", "--config", str(tmp_path / "nowhere.py")])
    assert code == 2
    assert f"cannot start: the settings file {tmp_path / 'nowhere.py'} does not exist" in caplog.text


def test_help_shows_each_default_and_its_instance_file_name(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 8080; instance file: PORT)" in text
    assert "(default: None; instance file: MODEL_THREADS)" in text
