"""How gunicorn serves the app: the worker class ``gunicorn.conf.py`` names.

``ThreadWorker`` is gunicorn's gthread worker with one change at the edge the app never sees.
Requests gunicorn refuses before they reach the app (a header line over 8190 bytes or more
than 100 header fields: 431; a request line over 4094 bytes: 414; a malformed request or
``Content-Length``: 400) are answered in the service's JSON error envelope rather than
gunicorn's HTML page, so a client parses every answer the same way. The status is the one
gunicorn chose; only the framing changes.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker as GthreadWorker

from chatbot_sessions.errors import envelope, error_code
from chatbot_sessions.security.headers import COMMON_HEADERS, RESOURCE_CSP

# What gunicorn's own refusals mean to a client; any other status gets its reason phrase.
_MESSAGES = {
    400: "The request is not valid HTTP/1.1.",
    403: "The request was refused.",
    414: "The request line (method, path and query) is too long.",
    417: "The request's Expect header cannot be met.",
    431: "The request headers are too large or too many.",
    500: "Something went wrong on our side.",
    501: "The request uses a transfer coding this server does not support.",
}


def json_error(status: int, reason: str) -> bytes:
    """A complete HTTP/1.1 answer with the error envelope, closing the connection."""
    body = json.dumps(
        envelope(error_code(status), _MESSAGES.get(status, f"{reason}.")), separators=(",", ":")
    ).encode()
    headers = {
        "Connection": "close",
        "Content-Type": "application/json",
        "Content-Length": str(len(body)),
        **COMMON_HEADERS,
        "Content-Security-Policy": RESOURCE_CSP,
        "Cache-Control": "no-store",
    }
    head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (head + "\r\n").encode("latin-1") + body


def write_json_error(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    """Stands in for ``gunicorn.util.write_error``; ``mesg`` (which may quote the client's
    bytes) stays in gunicorn's log line and is not echoed."""
    util.write_nonblock(sock, json_error(status_int, reason))


class ThreadWorker(GthreadWorker):
    """gunicorn's gthread worker, answering the requests it refuses itself in JSON."""

    def init_process(self) -> Any:
        """Install the JSON error writer in this worker process, then run gunicorn's loop."""
        # gunicorn's handle_error picks the status and reason, then calls util.write_error
        # to put them on the wire as HTML. Replacing only that writer keeps gunicorn's choice
        # of status for every refusal, present and future; it is looked up at each call.
        util.write_error = write_json_error
        return super().init_process()
