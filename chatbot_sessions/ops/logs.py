"""JSON logs on stdout (twelve-factor): one line per request, with a request id.

``JsonLineFormatter`` plugs into the standard ``logging`` module, so gunicorn's, redis-py's
and our own records all come out the same way. Every record made while a request is handled
carries that request's id. What users typed is never logged unless ``LOG_MESSAGE_CONTENT``
is on.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from typing import Any

from flask import Request, has_request_context, request

from chatbot_sessions.json_provider import encode

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_ENVIRON = "HTTP_X_REQUEST_ID"  # the header as WSGI hands it over
# A client's id is kept only if it is short and cannot forge log structure or headers.
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:=+/-]{1,128}")
_HANDLER_NAME = "chatbot_sessions.json"
# Where a request's id and (with LOG_MESSAGE_CONTENT) its turn's text wait for its log line.
_REQUEST_ID_KEY = "chatbot_sessions.request_id"
_CONTENT_KEY = "chatbot_sessions.log_content"

access_log = logging.getLogger("chatbot_sessions.access")


# What every LogRecord has; anything else on a record came from ``extra=`` and is a field.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonLineFormatter(logging.Formatter):
    """One JSON object per record: level, logger, message, the ``extra`` fields, time.

    It replaced python-json-logger, which builds the same line through a chain of
    overridable steps and the standard library's encoder: a third of the cost of a
    request's log line. orjson writes the object in one C call; values it cannot write
    (an object passed in ``extra``) are written as ``str()``.
    """

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON (tracebacks and stacks included as text)."""
        fields = {k: v for k, v in record.__dict__.items() if k not in _RECORD_ATTRIBUTES}
        if record.exc_info:
            fields["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            fields["exc_info"] = record.exc_text
        if record.stack_info:
            fields["stack_info"] = self.formatStack(record.stack_info)
        return _json_line(
            record.levelname, record.name, record.getMessage(), fields, record.created
        )


def _json_line(level: str, logger: str, message: str, fields: dict[str, Any], at: float) -> str:
    """The one layout of a line: level, logger, message, the fields, time (``at``: epoch s).
    Both the formatter and the access log's direct write (``_write_line``) use it."""
    line = {"level": level, "logger": logger, "message": message, **fields}
    line["time"] = utc_timestamp(at)
    return encode(line, default=str).decode()


_second: tuple[int, str] = (-1, "")  # the last whole second written, and its text


def utc_timestamp(at: float) -> str:
    """``at`` (epoch seconds) as ISO 8601 in UTC with microseconds: what
    ``datetime.fromtimestamp(at, UTC).isoformat()`` writes, except that a whole second
    keeps its ``.000000``, so every line has the same shape.

    The date and clock part is worked out once per second; building a timezone-aware
    datetime per line cost more than the rest of the line together (2.5 of 4 µs).
    """
    global _second
    # Split and rounded as datetime does it (its pure-Python twin: modf, then round).
    whole = int(at)
    micro = round((at - whole) * 1_000_000)
    if micro >= 1_000_000:
        whole, micro = whole + 1, micro - 1_000_000
    second, text = _second
    if whole != second:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        _second = (whole, text)  # one tuple, replaced whole: safe across threads
    return f"{text}.{micro:06d}+00:00"


def json_formatter() -> logging.Formatter:
    """The one JSON layout (a factory, because gunicorn.conf.py's ``logconfig_dict`` names it
    so gunicorn's own lines match ours)."""
    return JsonLineFormatter()


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is when a record is emitted (or stderr, see
    ``send_logs_to_stderr``), like logging's own last-resort handler: test runners and
    CLIs replace the stream after start-up."""

    def __init__(self) -> None:
        self.to_stderr = False
        super().__init__()

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr if self.to_stderr else sys.stdout

    @stream.setter
    def stream(self, _value) -> None:
        pass


class _RequestIdFilter(logging.Filter):
    """Stamps the current request's id on every record logged while it is handled."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id") and has_request_context():
            record.request_id = current_request_id()
        return True


def configure_logging(level: str) -> None:
    """Install the JSON handler on the root logger, once per process (idempotent)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(handler)
    handler = _StdoutHandler()
    # Under the ``flask`` command (``flask sessions ...``) stdout is the command's output,
    # which scripts parse; even warnings raised while the app is built must stay out of it.
    handler.to_stderr = os.environ.get("FLASK_RUN_FROM_CLI") == "true"
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(json_formatter())
    handler.addFilter(_RequestIdFilter())
    root.addHandler(handler)
    root.setLevel(level)
    # Our lines carry no source line, thread or process, so records need not collect them:
    # the "Optimization" table of Python's logging HOWTO; a third of a record's cost.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    # bm25s sets its own logger to DEBUG and narrates every index build.
    logging.getLogger("bm25s").setLevel(logging.WARNING)


def send_logs_to_stderr() -> None:
    """Move our log lines to stderr, for CLI commands whose stdout is their output."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, _StdoutHandler):
            handler.to_stderr = True


def request_id_of(environ: dict[str, Any]) -> str:
    """The id of the request ``environ`` describes: the client's ``X-Request-ID`` if sane,
    else a fresh one; kept in the environ, so every later call gives the same id.

    The WSGI environ rather than ``flask.g``: the caller usually holds the request already,
    and each ``g`` access is a context-variable lookup through a proxy."""
    request_id = environ.get(_REQUEST_ID_KEY)
    if request_id is None:
        given = environ.get(_REQUEST_ID_ENVIRON, "")
        # 128 random bits as 32 hex digits, as uuid4().hex gave, without building a UUID.
        request_id = given if _SAFE_REQUEST_ID.fullmatch(given) else os.urandom(16).hex()
        environ[_REQUEST_ID_KEY] = request_id
    return request_id


def current_request_id() -> str:
    """The id of the request being handled (inside a request context only)."""
    return request_id_of(request.environ)


def log_request(req: Request, path: str, status: int, duration_ms: float, request_id: str) -> None:
    """The one line per request. ``path`` is the route template, never the raw path:
    raw paths carry session ids, which are credentials."""
    if not access_log.isEnabledFor(logging.INFO):
        return  # LOG_LEVEL=WARNING: not even the fields are worth building
    method = req.method
    fields = {
        "method": method,
        "path": path,
        "status": status,
        "duration_ms": round(duration_ms, 2),
        "request_id": request_id,
        # The client as ProxyFix resolved it: the real caller behind TRUSTED_PROXIES proxies.
        "client_ip": req.remote_addr,
    }
    content = req.environ.get(_CONTENT_KEY)
    if content is not None:
        fields.update(content)
    message = f"{method} {path} {status}"
    handler = _sole_handler()
    if handler is None or not _write_line(handler, message, fields):
        access_log.info("%s %s %s", method, path, status, extra=fields)


def _sole_handler() -> _StdoutHandler | None:
    """Our stdout handler, when it is the only place an access record would reach.

    That is the service as configured (``configure_logging``, gunicorn.conf.py): no handler
    or filter on the way up from ``chatbot_sessions.access``, and on the root logger only
    our handler, formatter and request-id filter. Anything else (a test's capture handler,
    an operator's extra handler or filter) gets real records through ``logging``.
    """
    logger: logging.Logger | None = access_log
    while logger is not None and logger.parent is not None:  # below the root
        if logger.handlers or logger.filters or not logger.propagate:
            return None
        logger = logger.parent
    if logger is None or logger.filters or len(logger.handlers) != 1:
        return None
    handler = logger.handlers[0]
    if (
        type(handler) is _StdoutHandler
        and type(handler.formatter) is JsonLineFormatter
        and handler.level <= logging.INFO
        and len(handler.filters) == 1
        and type(handler.filters[0]) is _RequestIdFilter
    ):
        return handler
    return None


def _write_line(handler: _StdoutHandler, message: str, fields: dict[str, Any]) -> bool:
    """Write the request's line as ``JsonLineFormatter`` would, without a ``LogRecord``.

    Building a record and passing it down logging's chain of loggers, filters and handlers
    was the largest single cost of a cheap request (about 110,000 instructions of a
    validate's million). Same fields, same order, same lock, flushed per line. False if
    the write failed: the caller then logs through ``logging``, which reports the failure
    its own way (``Handler.handleError``) instead of failing the request.
    """
    text = _json_line("INFO", access_log.name, message, fields, time.time()) + handler.terminator
    handler.acquire()
    try:
        stream = handler.stream
        stream.write(text)
        stream.flush()
    except Exception:
        return False
    finally:
        handler.release()
    return True


def remember_content(question: str, reply: str) -> None:
    """Attach the turn's text to the request line (only wired up with LOG_MESSAGE_CONTENT)."""
    if has_request_context():
        request.environ[_CONTENT_KEY] = {"question": question, "reply": reply}
