"""The events of a streamed reply, as its producer publishes them into Redis.

A reply's events go to a Redis Stream under the session's hash tag
(``keys.reply_events_key``), numbered 1, 2, 3... so that an SSE client's ``Last-Event-ID``
is simply the last number it saw, on whichever worker it reconnects to:

    start  {"sessionId", "sessionID", "replyId"}   before any text
    delta  {"text"}                                 one or more, in order
    done   {"sessionId", "replyId", "reply", "stopped", "messageId"} once the turn is
           stored; ``reply`` is the codec's encoding of the Reply (the view renders it),
           ``messageId`` the answer's id in history (null when unknown)
    error  {"error", "message"}                     when the reply could not be finished

Each publish is one script (``scripts.PUBLISH``): it refuses to write into a session that
is gone, keeps the stream STREAM_RETENTION seconds after its last event, and answers
whether the user asked to stop.
"""

from __future__ import annotations

import json
from typing import Any

from chatbot_sessions.domain import Exchange
from chatbot_sessions.sessions.codec import encode_reply
from chatbot_sessions.sessions.store import Published, ReplyEvent, SessionStore


class EventPublisher:
    """Publishes one reply's events in order (used by its producer thread alone)."""

    def __init__(self, store: SessionStore, session_id: str, reply_id: str, retention: int):
        self.store = store
        self.session_id = session_id
        self.reply_id = reply_id
        self.retention = retention
        self._last = 0
        self._gone = False

    def _publish(self, name: str, data: dict[str, Any]) -> Published:
        if self._gone:  # the session was deleted: never a key naming it again
            return Published.GONE
        self._last += 1
        event = ReplyEvent(self._last, name, json.dumps(data, ensure_ascii=False))
        outcome = self.store.publish(
            self.session_id, self.reply_id, event, retention=self.retention
        )
        self._gone = outcome == Published.GONE
        return outcome

    def start(self) -> Published:
        """The first event: which session and reply this is."""
        return self._publish(
            "start",
            {"sessionId": self.session_id, "sessionID": self.session_id, "replyId": self.reply_id},
        )

    def delta(self, text: str) -> Published:
        """More text; STOP when the user asked to stop."""
        return self._publish("delta", {"text": text})

    def done(self, exchange: Exchange, *, stopped: bool) -> Published:
        """The stored exchange (its session may be a new one, if this one vanished)."""
        return self._publish(
            "done",
            {
                "sessionId": exchange.session_id,
                "replyId": self.reply_id,
                "reply": encode_reply(exchange.reply),
                "stopped": stopped,
                "messageId": exchange.message_id,
            },
        )

    def error(self) -> Published:
        """The reply could not be finished (the producer logged why)."""
        return self._publish(
            "error",
            {"error": "reply_failed", "message": "The answer could not be finished; please retry."},
        )


class ReplyEvents:
    """Makes publishers for the app's store with the configured retention."""

    def __init__(self, store: SessionStore, *, retention: int) -> None:
        self.store = store
        self.retention = retention

    def publisher(self, session_id: str, reply_id: str) -> EventPublisher:
        """A publisher of the events of ``reply_id`` in ``session_id``."""
        return EventPublisher(self.store, session_id, reply_id, self.retention)
