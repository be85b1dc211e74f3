"""`python -m edge serve`: run the kiosk web app with waitress.

Start-up refuses, with a message saying how to fix it, rather than run unsafely: a model bundle that
is missing or altered, an unreadable data folder, or listening beyond this machine (anything but
loopback) without an operator access code.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import ipaddress
import logging
import os
import signal
import sqlite3
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from edge.bundle import BundleError
from edge.screener import default_model_dir

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_DATA_DIR = "kiosk-data"
DEFAULT_THREADS = 4
DEFAULT_SCORING_SLOTS = 1
ACCESS_CODE_ENV = "PNEUMOEDGE_ACCESS_CODE"
ADMIN_PIN_ENV = "PNEUMOEDGE_ADMIN_PIN"
DEFAULT_IDLE_LOGOUT_S = 600
DEFAULT_MIN_FREE_MB = 200
DEFAULT_RETENTION_DAYS = 0
_M_ARENA_MAX = -8  # from glibc's malloc.h


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `serve` subcommand to the `python -m edge` dispatcher."""
    parser = subparsers.add_parser(
        "serve",
        help="run the kiosk web app",
        description="Serve the PneumoEdge kiosk (pages and JSON API) with waitress.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--model", type=Path, default=default_model_dir(), metavar="DIR", help="model bundle folder"
    )
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        metavar="ADDR",
        help="address to listen on; beyond loopback needs an access code",
    )
    parser.add_argument("--port", type=_port, default=DEFAULT_PORT, metavar="N", help="TCP port")
    parser.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        default=Path(DEFAULT_DATA_DIR),
        help="folder for the case database and images",
    )
    parser.add_argument(
        "--threads", type=_positive, default=DEFAULT_THREADS, metavar="N", help="request-handling threads"
    )
    parser.add_argument(
        "--scoring-slots",
        type=_positive,
        default=DEFAULT_SCORING_SLOTS,
        metavar="N",
        help="uploads scored at the same time (others wait); each needs tens of MB while it is scored",
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
    parser.add_argument(
        "--idle-logout",
        type=_positive,
        default=DEFAULT_IDLE_LOGOUT_S,
        metavar="SECONDS",
        help="log a staff member out after this long without using the kiosk",
    )
    parser.add_argument(
        "--min-free-mb",
        type=_non_negative,
        default=DEFAULT_MIN_FREE_MB,
        metavar="MB",
        help="refuse new uploads ('storage full') and report unhealthy below this much free space",
    )
    parser.add_argument(
        "--retention-days",
        type=_non_negative,
        default=DEFAULT_RETENTION_DAYS,
        metavar="DAYS",
        help="delete stored images and heatmaps of cases older than this (results are kept); 0 keeps them",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check the set-up, build the app and serve until stopped; non-zero exit with a fix-it message."""
    try:
        app = _build_app(args)
    except StartupError as e:
        log.error("cannot start: %s", e)
        return 2
    return _serve(app, args)


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


def _build_app(args: argparse.Namespace) -> Flask:
    """Check the data folder and access code, then build the app (which verifies the model)."""
    from edge.webapp import create_app, security
    from edge.webapp.accounts import AccountError

    data_dir: Path = args.data_dir
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        code = args.access_code or os.environ.get(ACCESS_CODE_ENV)
        if code:
            security.store_access_code(data_dir, code)
            log.info("operator access code set (stored hashed in %s)", data_dir / security.ACCESS_CODE_FILE)
        has_code = security.load_access_code_hash(data_dir) is not None
    except security.AccessCodeError as e:
        raise StartupError(f"{e}; choose another access code") from e
    except OSError as e:
        raise StartupError(
            f"the data folder {data_dir} cannot be used ({e}); pass a writable --data-dir"
        ) from e
    admin = getattr(args, "admin", None)
    admin_pin = os.environ.get(ADMIN_PIN_ENV, "")
    if admin and not admin_pin:
        raise StartupError(f"--admin {admin} needs the administrator's PIN in the {ADMIN_PIN_ENV} variable")
    if not is_loopback(args.host) and not has_code:
        raise StartupError(
            f"listening on {args.host} lets other machines reach the kiosk, so an operator access code "
            f"is required: set {ACCESS_CODE_ENV} (at least {security.MIN_ACCESS_CODE_LENGTH} characters) "
            f"or pass --access-code, or listen on {DEFAULT_HOST}"
        )
    try:
        app = create_app(
            {
                "DATA_DIR": str(data_dir.resolve()),
                "MODEL_DIR": str(args.model),
                "SCORING_SLOTS": args.scoring_slots,
                "IDLE_LOGOUT_S": getattr(args, "idle_logout", DEFAULT_IDLE_LOGOUT_S),
                "MIN_FREE_MB": getattr(args, "min_free_mb", DEFAULT_MIN_FREE_MB),
                "RETENTION_DAYS": getattr(args, "retention_days", DEFAULT_RETENTION_DAYS),
            }
        )
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
    from edge.webapp import accounts, store

    conn = store.connect(store.db_path(app.config["DATA_DIR"]))
    try:
        staff = accounts.provision_admin(conn, name, pin)
    finally:
        conn.close()
    log.info("administrator login %r is ready (its PIN is stored hashed)", staff.name)


def _serve(app: Flask, args: argparse.Namespace) -> int:
    from waitress import create_server

    from edge.webapp import oversize

    _limit_malloc_arenas()  # before create_server starts the worker threads
    server = create_server(
        app,
        host=args.host,
        port=args.port,
        threads=args.threads,
        # Leave room above Flask's limit so oversized uploads get the app's clear 413 message.
        max_request_body_size=2 * app.config["MAX_CONTENT_LENGTH"],
        ident="PneumoEdge",
        clear_untrusted_proxy_headers=True,
    )
    oversize.install(server)  # bodies over waitress's limit get the kiosk's own 413 page or JSON
    signal.signal(signal.SIGTERM, _stop)
    info = app.extensions["pneumoedge.kiosk"]
    port = getattr(server, "effective_port", args.port)  # a multi-address server has no single port
    # The operator's start-up banner: shown whatever --log-level says.
    print(
        f"PneumoEdge kiosk on http://{args.host}:{port} with model {info.model_name} "
        f"(sha256 {info.model_sha256[:12]}), data in {app.config['DATA_DIR']}, "
        f"access code {'required' if info.access_enabled else 'not set'}. Ctrl-C stops it.",
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
