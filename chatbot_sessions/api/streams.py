"""Streamed replies over Server-Sent Events: follow, resume and stop a reply.

- ``POST /api/send-message`` with ``Accept: text/event-stream`` (``messages.py``) starts a
  reply and follows its events;
- ``GET /api/session/<id>/replies/<replyId>/events`` resumes: the events after
  ``Last-Event-ID`` (or ``?after=``), then live until ``done``, from any worker; 204 when
  the client already saw the end (an EventSource reconnects after every stream);
- ``POST /api/session/<id>/replies/<replyId>/stop`` asks the producer to stop: 202, and the
  stream ends with ``done`` (``stopped: true``) holding the text so far.

Each SSE response is a loop of ``XREAD BLOCK`` on the reply's Redis Stream (with the TTL
refresh in the same round trip, reading is an access), writing every event as
``id:``/``event:``/one ``data:`` line, and a comment line as a keep-alive whenever nothing
happened for ``KEEPALIVE_SECONDS``. The loop ends after ``done`` or ``error``, or when no
event came for longer than a reply can take (its producer is gone). A response occupies one
gunicorn thread for as long as the client listens: see docs/operations.md for sizing.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

from flask import Response, request, stream_with_context

from chatbot_sessions import current
from chatbot_sessions.api.blueprint import Blueprint, MethodView
from chatbot_sessions.api.responses import errors
from chatbot_sessions.chat import StreamTicket
from chatbot_sessions.domain import Exchange
from chatbot_sessions.exceptions import ReplyNotFound, SessionNotFound, StoreUnavailable
from chatbot_sessions.extensions import get_settings, get_store
from chatbot_sessions.http_errors import envelope
from chatbot_sessions.schemas import (
    EventsQuerySchema,
    ReplySchema,
    StopAcceptedSchema,
)
from chatbot_sessions.sessions.codec import decode_reply
from chatbot_sessions.sessions.ids import parse_reply_id, parse_session_id
from chatbot_sessions.sessions.store import FINAL_EVENTS, ReplyEvent

KEEPALIVE_SECONDS = 15.0
#: Largest event id a client may name: far beyond any reply, well within Redis stream ids.
MAX_EVENT_ID = 10**12
_EVENT_ID = re.compile(r"[0-9]{1,12}")  # ASCII digits only (str.isdigit takes "²" too)
EVENT_STREAM = "text/event-stream"

blp = Blueprint(
    "replies", __name__, url_prefix="/api/session", description="Streamed replies (SSE)"
)


def wants_stream() -> bool:
    """Whether the client asked for Server-Sent Events by name (``*/*`` or no Accept header
    keeps the JSON answer every existing client expects)."""
    req = current.request()
    # Parsing Accept (werkzeug's accept_mimetypes) is the dear part; a header that does not
    # even spell the type cannot ask for it (unless a backslash escapes part of a quoted
    # value, which werkzeug's parse drops).
    raw = req.environ.get("HTTP_ACCEPT", "")
    if EVENT_STREAM not in raw.lower() and "\\" not in raw:
        return False
    return any(value == EVENT_STREAM and q > 0 for value, q in req.accept_mimetypes)


def _frame(event_id: int, name: str, data: dict[str, Any]) -> str:
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"id: {event_id}\nevent: {name}\ndata: {payload}\n\n"


def _done_payload(exchange: Exchange, reply_id: str, stopped: bool) -> dict[str, Any]:
    """The JSON endpoint's answer, plus the reply's id and whether it was stopped."""
    return {**ReplySchema().dump(exchange), "replyId": reply_id, "stopped": stopped}


def _render(event: ReplyEvent) -> str:
    data = json.loads(event.data)
    if event.name == "done":
        # An event published before done events carried messageId renders it as null.
        exchange = Exchange(
            data["sessionId"], decode_reply(data["reply"]), message_id=data.get("messageId")
        )
        data = _done_payload(exchange, data["replyId"], bool(data["stopped"]))
    elif event.name == "error":
        data = envelope(data["error"], data["message"])
    return _frame(event.id, event.name, data)


def follow(session_id: str, reply_id: str, after: int) -> Iterator[str]:
    """The reply's events after number ``after`` as SSE frames, then live until it ends."""
    settings = get_settings()
    store = get_store()
    # Shorter than the socket timeout, so a blocked read is never taken for a dead Redis.
    block_ms = int(min(1.0, settings.redis_socket_timeout / 2) * 1000)
    # A reply takes at most LLM_TIMEOUT (twice: the model, then the fallback) to finish.
    give_up_after = 2 * settings.llm_timeout + 10
    quiet_since = time.monotonic()
    last_sign = quiet_since
    last_id = after
    while True:
        try:
            found = store.read_events(session_id, reply_id, after=last_id, block_ms=block_ms)
        except SessionNotFound:
            yield _frame(
                last_id + 1, "error", envelope("session_not_found", "The session is gone.")
            )
            return
        except StoreUnavailable:
            message = "The session store is unavailable; resume this reply shortly."
            yield _frame(last_id + 1, "error", envelope("store_unavailable", message))
            return
        now = time.monotonic()
        for event in found:
            yield _render(event)
            last_id = event.id
            if event.name in FINAL_EVENTS:
                return
        if found:
            quiet_since = last_sign = now
        elif now - quiet_since > give_up_after:
            message = "The reply stopped without an end; ask again."
            yield _frame(last_id + 1, "error", envelope("reply_lost", message))
            return
        elif now - last_sign >= KEEPALIVE_SECONDS:
            last_sign = now
            yield ": keep-alive\n\n"


def _replay(exchange: Exchange) -> Iterator[str]:
    """A reply answered before, as the events it had: start, its text, done."""
    sid = exchange.session_id
    yield _frame(1, "start", {"sessionId": sid, "sessionID": sid, "replyId": ""})
    if exchange.reply.text:
        yield _frame(2, "delta", {"text": exchange.reply.text})
    yield _frame(3, "done", _done_payload(exchange, "", exchange.reply.stopped))


def event_stream(frames: Iterator[str], session_id: str, **headers: str) -> Response:
    """An SSE response that proxies must not buffer or cache."""
    response = Response(stream_with_context(frames), mimetype=EVENT_STREAM)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    response.headers["session-id"] = session_id
    response.headers.update(headers)
    return response


def stream_ticket(ticket: StreamTicket) -> Response:
    """The SSE response for a reply just started (or joined, or replayed)."""
    if ticket.replay is not None:
        return event_stream(
            _replay(ticket.replay), ticket.session_id, **{"Idempotent-Replayed": "true"}
        )
    return event_stream(follow(ticket.session_id, ticket.reply_id, 0), ticket.session_id)


def _reply_id(raw: str) -> str:
    reply_id = parse_reply_id(raw)
    if reply_id is None:
        raise ReplyNotFound(raw)
    return reply_id


@blp.route("/<session:session_id>/replies/<reply_id>/events")
class ReplyEvents(MethodView):
    """GET …/replies/<replyId>/events: resume a streamed reply (SSE)."""

    @blp.arguments(EventsQuerySchema(), location="query", as_kwargs=True)
    @blp.response(200, content_type=EVENT_STREAM, description="the reply's events (SSE)")
    @blp.alt_response(204, description="the reply had ended before the event named: nothing more")
    @errors(blp, 404, 503)
    def get(self, session_id: str, reply_id: str, after: int | None = None) -> Response:
        """The events after ``Last-Event-ID`` (or ``?after=``), then live until ``done``."""
        reply_id = _reply_id(reply_id)
        last = request.headers.get("Last-Event-ID", "").strip()
        start = after if after is not None else (int(last) if _EVENT_ID.fullmatch(last) else 0)
        canonical = parse_session_id(session_id)
        if canonical is None:
            raise SessionNotFound(session_id)
        latest = get_store().last_reply_event(canonical, reply_id)
        if latest is None:
            raise ReplyNotFound(reply_id)
        if latest.name in FINAL_EVENTS and latest.id <= start:
            # The client saw the end already (an EventSource reconnects after every stream):
            # 204 tells it there is nothing more, instead of holding a thread waiting.
            return Response(status=204, headers={"Cache-Control": "no-store"})
        return event_stream(follow(canonical, reply_id, start), canonical)


@blp.route("/<session:session_id>/replies/<reply_id>/stop")
class StopReply(MethodView):
    """POST …/replies/<replyId>/stop: end a streamed reply now, keeping the text so far."""

    @blp.response(202, StopAcceptedSchema)
    @errors(blp, 404, 503)
    def post(self, session_id: str, reply_id: str) -> dict[str, Any]:
        """Ask the reply's producer to stop; its stream ends with ``done`` (stopped)."""
        outcome = get_store().stop_reply(session_id, _reply_id(reply_id))
        if outcome == "gone":
            raise ReplyNotFound(reply_id)
        return {"message": "The reply is stopping." if outcome == "ok" else "The reply had ended."}
