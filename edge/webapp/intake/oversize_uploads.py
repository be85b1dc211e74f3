"""Uploads over waitress's own body limit get the kiosk's answer, not waitress's bare text.

waitress refuses a body over `max_request_body_size` as soon as it has read the headers (none of
the body is buffered, so a 200 MB upload costs the kiosk nothing), but with a plain-text 413 of its
own: no security headers, no page for the nurse, no JSON for a clinic system. This channel answers
that refusal from the kiosk app instead: the app gets the request with its declared length and an
empty body, so Flask's MAX_CONTENT_LENGTH (below waitress's limit) trips and the app's own 413 page
or JSON goes out, with every header the kiosk sets. Every other waitress error is left as it was.
"""

from __future__ import annotations

import io
from typing import Any

from waitress.channel import HTTPChannel
from waitress.task import ErrorTask, Task, WSGITask
from waitress.utilities import RequestEntityTooLarge


class _AnswerFromApp(WSGITask):
    """The over-long request, passed to the app without its body (which was never read)."""

    def get_environment(self) -> dict[str, Any]:
        environ = super().get_environment()
        declared = int(environ.get("CONTENT_LENGTH") or 0)
        # A chunked body has no declared length: say it is over the limit, as it is.
        environ["CONTENT_LENGTH"] = str(max(declared, self.channel.adj.max_request_body_size))
        environ["wsgi.input"] = io.BytesIO()
        return environ

    def execute(self) -> None:
        self.set_close_on_finish()  # the unread body is still on the connection: it cannot be reused
        super().execute()


def _error_task(channel: HTTPChannel, request: Any) -> Task:
    if isinstance(request.error, RequestEntityTooLarge):
        return _AnswerFromApp(channel, request)
    return ErrorTask(channel, request)


class KioskChannel(HTTPChannel):
    """waitress's channel, answering too-large requests from the app."""

    error_task_class = staticmethod(_error_task)


def install(server: Any) -> None:
    """Use KioskChannel for every connection the server (from waitress.create_server) accepts."""
    listeners = [server] if hasattr(server, "channel_class") else list(server.map.values())
    for listener in listeners:
        if hasattr(listener, "channel_class"):
            listener.channel_class = KioskChannel
