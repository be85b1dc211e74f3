"""Answer only requests addressed to one of the kiosk's own names (the `Host` header).

A page on another site can make a browser on the clinic network (or on the kiosk itself) send
requests to the kiosk under the other site's name, by pointing that name at the kiosk's address
(DNS rebinding). Such requests carry the other site's name in `Host`; refusing every name the
kiosk was not given stops them before any page, cookie or API answer is involved.

This is WSGI middleware around the Flask app, so that it runs before Flask builds URLs from the
header: a malformed name (a label over 63 characters, which IDNA cannot encode) is a plain 400 with
the kiosk's security headers, never an exception.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Iterable
from typing import Any

from edge.webapp.access.request_guard import SECURITY_HEADERS

#: Names every kiosk answers to: this machine, by name and by its loopback addresses.
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def allowed_names(listen_host: str, extra: Iterable[str]) -> frozenset[str]:
    """The local names, the address the kiosk listens on and the configured ones.

    A wildcard listening address (0.0.0.0, ::) is kept too: the device's own health checks use it
    (firmware_scripts: http://$APP_HOST:$APP_PORT/healthz), and it is no name another site can own.
    """
    names = {*LOCAL_NAMES, listen_host, *extra}
    return frozenset(normalise(name) for name in names if normalise(name))


def normalise(name: str) -> str:
    """A name as compared: lower case, no trailing dot, no IPv6 brackets."""
    return name.strip().strip("[]").rstrip(".").lower()


def host_name(host_header: str) -> str:
    """The name in a `Host` header, without its port (`[::1]:8080` -> `::1`)."""
    value = host_header.strip()
    if value.startswith("["):
        return normalise(value[1 : value.find("]")] if "]" in value else value)
    name, _, port = value.rpartition(":")
    if name and port.isdigit() and not _is_ipv6(value):
        return normalise(name)
    return normalise(value)


def _is_ipv6(value: str) -> bool:
    try:
        return ipaddress.ip_address(value).version == 6
    except ValueError:
        return False


class HostGuard:
    """Refuse (400) any request whose `Host` is not one of `names`."""

    def __init__(self, app: WsgiApp, names: frozenset[str]) -> None:
        self.app = app
        self.names = names

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "")
        if host_name(host) in self.names:
            return self.app(environ, start_response)
        return self._refuse(environ, start_response)

    def _refuse(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        message = (
            "This kiosk does not answer to that name. Open it by one of its own names "
            "(the technician lists them in the ALLOWED_HOSTS setting)."
        )
        path = environ.get("PATH_INFO", "")
        if path.startswith("/api/") or path == "/healthz":
            body = json.dumps({"error": {"code": "bad_host", "message": message}}).encode()
            content_type = "application/json"
        else:
            body = message.encode()
            content_type = "text/plain; charset=utf-8"
        headers = [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            *SECURITY_HEADERS.items(),
        ]
        start_response("400 Bad Request", headers)
        return [body]
