"""Kiosk health: probe the web app's /healthz, and keep systemd's watchdog fed while it answers.

`check` waits until /healthz reports `status: ok` (and, when asked, the expected model sha256);
update.sh uses it to keep a new release or roll back. `screen` is the other half of "healthy": the
kiosk screen's unit must keep running for a settle time after it was restarted on the new release
(a screen that exits is restarted by systemd, and after 5 starts the device reboots, so a release
whose screen fails must be rolled back before that). `supervise` runs the web app as its child
under a `Type=notify` unit with `WatchdogSec=`: it sends READY=1 once /healthz answers and
WATCHDOG=1 after every later successful probe, so an app that hangs (process alive, HTTP dead)
misses its pings and systemd kills and restarts it. Being the unit's main process, it needs no
`NotifyAccess=all` and has none of `systemd-notify`'s races.

Standard library only: it runs with the system Python, before and outside any venv.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

log = logging.getLogger("kiosk_health")

PROBE_TIMEOUT_S = 5.0
#: Until the app first answers, probe this often: READY (and so `systemctl restart` in an update's
#: health check, and the screen that waits for the app) must not wait a whole watchdog interval.
STARTUP_PROBE_S = 1.0


@dataclass(frozen=True)
class Probe:
    """One /healthz answer: healthy when HTTP 200 with status ok; `reason` says why not."""

    healthy: bool
    model_sha256: str | None
    reason: str


def probe(url: str, timeout: float = PROBE_TIMEOUT_S) -> Probe:
    """GET the health URL once; never raises, so callers can poll."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as e:
        return Probe(False, None, f"HTTP {e.code} from {url}")
    except (OSError, ValueError) as e:
        return Probe(False, None, f"no valid answer from {url}: {e}")
    model = body.get("model") if isinstance(body, dict) else None
    sha = model.get("sha256") if isinstance(model, dict) else None
    status = body.get("status") if isinstance(body, dict) else None
    if status != "ok":
        return Probe(False, sha, f"{url} reports status {status!r}, not 'ok'")
    return Probe(True, sha, "ok")


def unit_exited(unit: str) -> str | None:
    """Why systemd says the unit's app is not running (exited, waiting to restart, or failed), else None."""
    try:
        shown = subprocess.run(
            ["systemctl", "show", "--property=ActiveState,SubState", unit],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    state = dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)
    if state.get("ActiveState") in ("failed", "inactive") or state.get("SubState") == "auto-restart":
        return f"the app of {unit} exited (systemd: {state.get('ActiveState')}/{state.get('SubState')})"
    return None


def unit_state(unit: str) -> dict[str, str]:
    """systemd's ActiveState, SubState, NRestarts and ConditionResult of `unit` (empty if unknown)."""
    try:
        shown = subprocess.run(
            ["systemctl", "show", "--property=ActiveState,SubState,NRestarts,ConditionResult", unit],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)


def restarts(state: dict[str, str]) -> int:
    """How often systemd restarted the unit by itself (NRestarts)."""
    value = state.get("NRestarts", "")
    return int(value) if value.isdigit() else 0


def screen_failure(state: dict[str, str], baseline: int) -> str | None:
    """Why the screen's unit is not running well, from one look at its state, else None;
    `baseline` is its restart count when the watch began."""
    active, sub = state.get("ActiveState"), state.get("SubState")
    if active == "failed" or sub == "auto-restart" or restarts(state) > baseline:
        return f"the screen exited (systemd: {active}/{sub}, restarts {state.get('NRestarts')})"
    if active == "inactive" and state.get("ConditionResult") != "no":
        return f"the screen is not running (systemd: {active}/{sub})"
    return None


def wait_screen(unit: str, settle: float, interval: float) -> Probe:
    """Watch `unit` for `settle` seconds: healthy if it never exited and runs at the end. A unit
    whose condition is false (no screen's terminal on this device) is not a failure."""
    deadline = time.monotonic() + settle
    baseline = restarts(unit_state(unit))
    while True:
        state = unit_state(unit)
        failure = screen_failure(state, baseline)
        if failure:
            return Probe(False, None, failure)
        if time.monotonic() >= deadline:
            if state.get("ActiveState") == "active" or state.get("ConditionResult") == "no":
                return Probe(True, None, "ok")
            return Probe(False, None, f"the screen is not running (systemd: {state.get('ActiveState')})")
        time.sleep(interval)


def wait_healthy(
    url: str, expect_sha256: str | None, timeout: float, interval: float, unit: str | None = None
) -> Probe:
    """Poll until healthy (with the expected model, if given) or the timeout passes; with `unit`,
    stop at once when systemd says the app exited: waiting longer cannot help."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe(url)
        if result.healthy and expect_sha256 and result.model_sha256 != expect_sha256:
            result = Probe(
                False,
                result.model_sha256,
                f"serving model sha256 {result.model_sha256}, expected {expect_sha256}",
            )
        if result.healthy or time.monotonic() >= deadline:
            return result
        exited = unit_exited(unit) if unit else None
        if exited:
            return Probe(False, None, exited)
        time.sleep(interval)


def notify(message: str) -> None:
    """Send one sd_notify datagram to $NOTIFY_SOCKET; a no-op outside a Type=notify unit."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(message.encode(), address)


def watchdog_interval(default: float) -> float:
    """Probe at a third of systemd's WatchdogSec (given as $WATCHDOG_USEC), else `default`."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    return int(usec) / 3_000_000 if usec.isdigit() and int(usec) > 0 else default


def supervise(url: str, command: list[str], interval: float) -> int:
    """Run `command`; report READY and feed the watchdog while `url` is healthy; return its exit code."""
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
    child = subprocess.Popen(command, env=env)

    stopping: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        stopping.append(signum)
        child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    ready = False
    while child.poll() is None:
        result = probe(url, timeout=min(PROBE_TIMEOUT_S, interval))
        if result.healthy:
            if not ready:
                notify("READY=1\nSTATUS=serving")
                log.info("%s is healthy; told systemd READY", url)
                ready = True
            notify("WATCHDOG=1")
        elif ready:
            log.warning("health probe failed, watchdog not fed: %s", result.reason)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=interval if ready else min(interval, STARTUP_PROBE_S))
    log.info("the app exited with status %s", child.returncode)
    if stopping:
        return 0  # asked to stop: a clean stop, not a failure for Restart=on-failure
    return 128 - child.returncode if child.returncode < 0 else child.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser(
        "check",
        help="wait until /healthz is ok; exit 1 if it never is",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    check.add_argument("--url", default="http://127.0.0.1:8080/healthz")
    check.add_argument("--expect-sha256", default=None, help="also require this model sha256")
    check.add_argument("--timeout", type=float, default=120.0, help="seconds to keep trying")
    check.add_argument("--interval", type=float, default=1.0, help="seconds between probes")
    check.add_argument("--unit", default=None, help="give up at once when this systemd unit's app exits")
    screen = sub.add_parser(
        "screen",
        help="watch the screen's unit for a while; exit 1 if it exits or is not running",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    screen.add_argument("--unit", default="pneumoedge-kiosk.service")
    screen.add_argument("--settle", type=float, default=15.0, help="seconds it must keep running")
    screen.add_argument("--interval", type=float, default=0.5, help="seconds between looks")
    run = sub.add_parser(
        "supervise",
        help="run the app and feed systemd's watchdog while healthy",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    run.add_argument("--url", default="http://127.0.0.1:8080/healthz")
    run.add_argument(
        "--interval",
        type=float,
        default=10.0,
        help="seconds between probes when systemd sets no WATCHDOG_USEC",
    )
    run.add_argument("app", nargs=argparse.REMAINDER, help="-- then the app's command line")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s [kiosk_health] %(message)s")

    if args.command == "check":
        result = wait_healthy(args.url, args.expect_sha256, args.timeout, args.interval, args.unit)
        if result.healthy:
            log.info("%s is healthy, model sha256 %s", args.url, result.model_sha256)
            return 0
        log.error("not healthy: %s", result.reason)
        return 1
    if args.command == "screen":
        result = wait_screen(args.unit, args.settle, args.interval)
        if result.healthy:
            log.info("%s kept running for %s s", args.unit, args.settle)
            return 0
        log.error("%s is not healthy: %s", args.unit, result.reason)
        return 1
    app = args.app[1:] if args.app[:1] == ["--"] else args.app
    if not app:
        parser.error("supervise needs the app's command after --, e.g. supervise -- serve.sh")
    return supervise(args.url, app, watchdog_interval(args.interval))


if __name__ == "__main__":
    sys.exit(main())
