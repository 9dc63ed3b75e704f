"""How gunicorn serves the app: the worker class ``gunicorn.conf.py`` names, and how many.

``split_store_problem`` is the one rule on the count: the embedded store lives inside one
process, so it must never run in more than one worker (``gunicorn.conf.py`` checks it when
gunicorn settles the count, command line and ``TTIN`` included).

``ThreadWorker`` is gunicorn's gthread worker with three changes at the edge of HTTP:

- Requests gunicorn refuses before they reach the app (a header line over 8190 bytes or more
  than 100 header fields: 431; a request line over 4094 bytes: 414; a malformed request or
  ``Content-Length``: 400) are answered in the service's JSON error envelope rather than
  gunicorn's HTML page, so a client parses every answer the same way. The status is the one
  gunicorn chose; only the framing changes.
- A body the app did not read (the 413 for a declared ``Content-Length`` over
  ``MAX_CONTENT_LENGTH``, a 404 to a large POST) is read off the socket and discarded after
  the answer, up to ``UNREAD_BODY_BYTES`` within ``UNREAD_BODY_SECONDS``. gunicorn itself
  reads off only 64 KiB; closing a socket with more unread makes the kernel send a reset, so
  a client still uploading saw its connection reset instead of the answer. A declared body
  over the limit is answered with ``Connection: close``: it is refused whatever it holds.
- A chunked body with broken framing (a bad chunk size, a missing CRLF, a bad trailer) makes
  gunicorn's body reader raise its own parse errors inside the app, which knows nothing of
  them and answered 500. The app's ``wsgi.input`` turns them into werkzeug's 400.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

from gunicorn import util
from gunicorn.http.body import Body
from gunicorn.http.errors import ParseException
from gunicorn.http.message import Request
from gunicorn.workers.gthread import TConn
from gunicorn.workers.gthread import ThreadWorker as GthreadWorker
from werkzeug.exceptions import BadRequest

from chatbot_sessions.config import Settings, load_settings
from chatbot_sessions.extensions import is_service_app, start_app
from chatbot_sessions.http_errors import envelope, error_code
from chatbot_sessions.security.headers import COMMON_HEADERS, RESOURCE_CSP

# A refused upload of a few MB is read off whole; a larger or slower one holds the thread no
# longer than this, and then the socket closes with the rest unread (and may be reset).
UNREAD_BODY_BYTES = 4 * 1024 * 1024
UNREAD_BODY_SECONDS = 5.0

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


def split_store_problem(settings: Settings, workers: int) -> str | None:
    """Why ``workers`` processes cannot serve these settings, or None when they can."""
    if workers <= 1 or not settings.uses_embedded_store:
        return None
    return (
        f"gunicorn was asked for {workers} worker processes, but no REDIS_URL, REDIS_HOST, "
        "REDIS_SENTINELS or REDIS_CLUSTER is set, so sessions would live in the embedded "
        "in-process store: each worker would keep its own, and a session would vanish whenever "
        "a request reached another worker. Set REDIS_URL, or run one worker: drop -w/--workers "
        "(or the -w in GUNICORN_CMD_ARGS); WEB_CONCURRENCY is already ignored without Redis."
    )


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


class RequestBody:
    """``wsgi.input`` as the app sees it: gunicorn's body, its framing errors raised as a 400."""

    def __init__(self, body: Body) -> None:
        self._body = body

    def _read(self, method: Callable[..., Any], *args: Any) -> Any:
        try:
            return method(*args)
        except ParseException:
            raise BadRequest("The request body is not valid chunked encoding.") from None

    def read(self, size: int | None = None) -> bytes:
        return self._read(self._body.read, size)

    def readline(self, size: int | None = None) -> bytes:
        return self._read(self._body.readline, size)

    def readlines(self, size: int | None = None) -> list[bytes]:
        return self._read(self._body.readlines, size)

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line


def declared_length(req: Request) -> int:
    """The request's ``Content-Length`` (gunicorn has validated it: one, all digits), or 0."""
    for name, value in req.headers:
        if name == "CONTENT-LENGTH":
            return int(value)
    return 0


class ThreadWorker(GthreadWorker):
    """gunicorn's gthread worker: JSON for its own refusals, unread bodies read off."""

    max_content_length: int

    def init_process(self) -> Any:
        """Install the JSON error writer in this worker process, then run gunicorn's loop."""
        # gunicorn's handle_error picks the status and reason, then calls util.write_error
        # to put them on the wire as HTML. Replacing only that writer keeps gunicorn's choice
        # of status for every refusal, present and future; it is looked up at each call.
        util.write_error = write_json_error
        return super().init_process()

    def load_wsgi(self) -> None:
        """Load the app, and its body limit with it (after gunicorn's ``raw_env`` is applied),
        then start its background work: this runs in the worker, after the fork."""
        self.max_content_length = load_settings().max_content_length
        super().load_wsgi()
        app = self.wsgi
        if is_service_app(app):  # tests and benchmarks serve other WSGI apps too
            start_app(app)

        def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            environ["wsgi.input"] = RequestBody(environ["wsgi.input"])
            return app(environ, start_response)

        serve.app = app  # type: ignore[attr-defined]  # for gunicorn.conf.py's worker_exit
        self.wsgi = serve

    def handle_request(self, req: Request, conn: TConn) -> bool:
        """Serve one request, then read off what the app left of its body; True: keep alive."""
        if declared_length(req) > self.max_content_length:
            req.force_close()  # the app answers 413 without reading; the answer says "close"
        keepalive = super().handle_request(req, conn)
        deadline = time.monotonic() + UNREAD_BODY_SECONDS
        try:
            drained = conn.parser.finish_body(deadline=deadline, max_bytes=UNREAD_BODY_BYTES)
        except (ParseException, OSError):  # OSError: gunicorn's NoMoreData too
            # Broken framing or a vanished client in the unread rest: the answer is already
            # out, so nothing more is written; where a next request would start is unknown.
            drained = False
        return keepalive and drained
