"""`python -m edge serve`: run the kiosk web app with waitress.

Start-up refuses, with a message saying how to fix it, rather than run unsafely: a model bundle that
is missing or altered, an unreadable data folder, or listening beyond this machine (anything but
loopback) without an operator access code.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import errno
import ipaddress
import logging
import os
import signal
import sqlite3
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from edge import kiosk_settings
from edge.bundle import BundleError

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger(__name__)

ACCESS_CODE_ENV = "PNEUMOEDGE_ACCESS_CODE"
ADMIN_PIN_ENV = "PNEUMOEDGE_ADMIN_PIN"
_M_ARENA_MAX = -8  # from glibc's malloc.h


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `serve` subcommand to the `python -m edge` dispatcher.

    An option that names a setting (its dest is the setting's name) overrides the instance file
    only when it is given; its default comes from edge/kiosk_settings.py.
    """
    parser = subparsers.add_parser(
        "serve",
        help="run the kiosk web app",
        description="Serve the PneumoEdge kiosk (pages and JSON API) with waitress. Settings: the defaults, "
        "then the instance file, then these options.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="FILE",
        help=f"the instance file (Python, UPPER_CASE setting names; see docs/kiosk.md); without it "
        f"{kiosk_settings.INSTANCE_FILE} in the app's instance folder is read if it exists",
    )
    _setting(parser, "--model", "MODEL_DIR", "model bundle folder", type=Path, metavar="DIR")
    _setting(
        parser, "--host", "HOST", "address to listen on; beyond loopback needs an access code", metavar="ADDR"
    )
    _setting(parser, "--port", "PORT", "TCP port", type=_port, metavar="N")
    _setting(
        parser, "--data-dir", "DATA_DIR", "folder for the case database and images", type=Path, metavar="DIR"
    )
    _setting(parser, "--threads", "THREADS", "request-handling threads", type=_positive, metavar="N")
    _setting(
        parser,
        "--model-threads",
        "MODEL_THREADS",
        "TFLite interpreter threads per scoring (None: the runtime chooses)",
        type=_positive,
        metavar="N",
    )
    _setting(
        parser,
        "--scoring-slots",
        "SCORING_SLOTS",
        "uploads scored at the same time (others wait); each needs tens of MB while it is scored",
        type=_positive,
        metavar="N",
    )
    parser.add_argument(
        "--access-code",
        default=None,
        metavar="CODE",
        help=f"set the operator access code (stored hashed in the data dir); prefer the {ACCESS_CODE_ENV} "
        "environment variable, since a command line is visible to other users",
    )
    parser.add_argument(
        "--admin",
        default=None,
        metavar="NAME",
        help=f"create the administrator NAME (or reset its PIN) with the PIN in {ADMIN_PIN_ENV}; "
        "administrators add the other staff logins on the Staff page",
    )
    _setting(
        parser,
        "--idle-logout",
        "IDLE_LOGOUT_S",
        "log a staff member out after this long without using the kiosk",
        type=_positive,
        metavar="SECONDS",
    )
    _setting(
        parser,
        "--min-free-mb",
        "MIN_FREE_MB",
        "refuse new uploads ('storage full') and report unhealthy below this much free space (at least 1)",
        type=_positive,
        metavar="MB",
    )
    _setting(
        parser,
        "--retention-days",
        "RETENTION_DAYS",
        "delete stored images and heatmaps of cases older than this (results are kept); 0 keeps them",
        type=_non_negative,
        metavar="DAYS",
    )
    _setting(
        parser,
        "--timezone",
        "TIMEZONE",
        "time zone for the times people read, e.g. Africa/Nairobi (the database and exports keep UTC)",
        metavar="ZONE",
    )
    parser.set_defaults(func=run)


def _setting(parser: argparse.ArgumentParser, flag: str, name: str, help: str, **kwargs: Any) -> None:
    """An option for the setting `name`: absent from the namespace unless given."""
    default = kiosk_settings.DEFAULTS[name]
    parser.add_argument(
        flag,
        dest=name,
        default=argparse.SUPPRESS,
        help=f"{help} (default: {default}; instance file: {name})",
        **kwargs,
    )


def run(args: argparse.Namespace) -> int:
    """Check the set-up, build the app and serve until stopped; non-zero exit with a fix-it message."""
    try:
        settings = settings_from(args)
        app = _build_app(settings, args)
        server = _server(app, settings)
    except StartupError as e:
        log.error("cannot start: %s", e)
        return 2
    return _serve(server, app, settings)


def settings_from(args: argparse.Namespace) -> dict[str, Any]:
    """The defaults, then the instance file, then the options given on the command line."""
    given = {name: value for name, value in vars(args).items() if name in kiosk_settings.DEFAULTS}
    given = {name: str(value) if isinstance(value, Path) else value for name, value in given.items()}
    file = args.config if args.config is not None else kiosk_settings.instance_file()
    try:
        settings = kiosk_settings.load(file, given, required=args.config is not None)
    except kiosk_settings.SettingsError as e:
        raise StartupError(f"{e}; fix the setting or the option") from e
    log.info("settings: defaults, %s (%s), command line", file, "read" if file.is_file() else "absent")
    return settings


class StartupError(RuntimeError):
    """Start-up refused; the message says how to fix it."""


def is_loopback(host: str) -> bool:
    """True only for addresses no other machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _build_app(settings: dict[str, Any], args: argparse.Namespace) -> Flask:
    """Check the data folder and access code, then build the app (which verifies the model)."""
    from edge.webapp import create_app
    from edge.webapp.access import request_guard
    from edge.webapp.access.accounts import AccountError

    data_dir = Path(settings["DATA_DIR"])
    os.umask(0o077)  # whatever the kiosk writes (database, images, exports) is its user's alone
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        code = args.access_code or os.environ.get(ACCESS_CODE_ENV)
        if code:
            request_guard.store_access_code(data_dir, code)
            log.info(
                "operator access code set (stored hashed in %s)", data_dir / request_guard.ACCESS_CODE_FILE
            )
        has_code = request_guard.load_access_code_hash(data_dir) is not None
    except request_guard.AccessCodeError as e:
        raise StartupError(f"{e}; choose another access code") from e
    except OSError as e:
        raise StartupError(
            f"the data folder {data_dir} cannot be used ({e}); pass a writable --data-dir"
        ) from e
    admin = args.admin
    # Read once and removed, so that nothing the server runs later (or reads /proc/PID/environ
    # from it) sees the PIN or the code.
    admin_pin = os.environ.pop(ADMIN_PIN_ENV, "")
    os.environ.pop(ACCESS_CODE_ENV, None)
    if admin and not admin_pin:
        raise StartupError(f"--admin {admin} needs the administrator's PIN in the {ADMIN_PIN_ENV} variable")
    host = settings["HOST"]
    if not is_loopback(host) and not has_code:
        raise StartupError(
            f"listening on {host} lets other machines reach the kiosk, so an operator access code "
            f"is required: set {ACCESS_CODE_ENV} "
            f"(at least {request_guard.MIN_ACCESS_CODE_LENGTH} characters) "
            f"or pass --access-code, or listen on {kiosk_settings.DEFAULTS['HOST']}"
        )
    try:
        app = create_app(settings)
        if admin:
            _provision_admin(app, admin, admin_pin)
        return app
    except AccountError as e:
        raise StartupError(f"{e} Choose another name or PIN for --admin.") from e
    except BundleError as e:
        raise StartupError(f"the model bundle cannot be used: {e}") from e
    except (OSError, sqlite3.Error, RuntimeError, ValueError) as e:
        raise StartupError(f"{e}") from e


def _provision_admin(app: Flask, name: str, pin: str) -> None:
    from edge.webapp.access import accounts
    from edge.webapp.records import database

    conn = database.connect(database.db_path(app.config["DATA_DIR"]))
    try:
        staff = accounts.provision_admin(conn, name, pin)
    finally:
        conn.close()
    log.info("administrator login %r is ready (its PIN is stored hashed)", staff.name)


def _server(app: Flask, settings: dict[str, Any]) -> Any:
    """waitress listening on HOST:PORT; StartupError saying what to do when it cannot."""
    from waitress import create_server

    from edge.webapp.intake import oversize_uploads

    _limit_malloc_arenas()  # before create_server starts the worker threads
    try:
        server = create_server(
            app,
            host=settings["HOST"],
            port=settings["PORT"],
            threads=settings["THREADS"],
            # Leave room above Flask's limit so oversized uploads get the app's clear 413 message.
            max_request_body_size=2 * app.config["MAX_CONTENT_LENGTH"],
            ident="PneumoEdge",
            clear_untrusted_proxy_headers=True,
        )
    except OSError as e:
        where = f"{settings['HOST']}:{settings['PORT']}"
        if e.errno == errno.EADDRINUSE:
            raise StartupError(
                f"port {settings['PORT']} on {settings['HOST']} is already in use (another kiosk or "
                "program is listening there): stop it, or pass another --port"
            ) from e
        raise StartupError(f"cannot listen on {where} ({e.strerror or e}); check --host and --port") from e
    oversize_uploads.install(server)  # bodies over waitress's limit get the kiosk's own 413 page or JSON
    return server


def _serve(server: Any, app: Flask, settings: dict[str, Any]) -> int:
    signal.signal(signal.SIGTERM, _stop)
    info = app.extensions["pneumoedge.kiosk"]
    if not is_loopback(settings["HOST"]) and not settings["ALLOWED_HOSTS"]:
        log.warning(
            "listening on %s, but only requests to localhost and %s are answered: list the names and "
            "addresses clinic systems use in ALLOWED_HOSTS (instance file)",
            settings["HOST"],
            settings["HOST"],
        )
    port = getattr(server, "effective_port", settings["PORT"])  # a multi-address server has no single port
    # The operator's start-up banner: shown whatever --log-level says.
    credentials = "tokens made on the Staff page" + (" or the access code" if info.access_enabled else "")
    print(
        f"PneumoEdge kiosk on http://{settings['HOST']}:{port} with model {info.model_name} "
        f"(sha256 {info.model_sha256[:12]}), data in {app.config['DATA_DIR']}, "
        f"API credentials: {credentials}. Ctrl-C stops it.",
        flush=True,
    )
    server.run()
    return 0


def _limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's per-thread malloc arenas before waitress starts its threads.

    Each thread otherwise gets an arena that keeps the tens of megabytes a full-resolution X-ray
    needed, so the kiosk's memory grows with --threads; measured with benchmarks/kiosk_latency.py.
    Elsewhere than glibc this does nothing.
    """
    libc_name = ctypes.util.find_library("c")
    mallopt = getattr(ctypes.CDLL(libc_name), "mallopt", None) if libc_name else None
    if mallopt is not None:
        mallopt(_M_ARENA_MAX, arenas)


def _stop(_signum: int, _frame: FrameType | None) -> None:
    """SIGTERM ends waitress's loop the way Ctrl-C does."""
    raise SystemExit(0)


def _port(value: str) -> int:
    if not value.isdigit() or not 0 <= int(value) <= 65535:
        raise argparse.ArgumentTypeError(f"a port is a whole number from 0 to 65535, got {value!r}")
    return int(value)


def _non_negative(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 0, got {value!r}")
    return int(value)


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {value!r}")
    return int(value)
