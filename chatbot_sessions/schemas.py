"""Marshmallow schemas: request validation, response shape and the OpenAPI document at once."""

from __future__ import annotations

import re
from typing import Any

from marshmallow import (
    EXCLUDE,
    ValidationError,
    fields,
    post_load,
    validate,
    validates,
    validates_schema,
)

from chatbot_sessions.domain import RATINGS, SESSION_DOCUMENT_FORMAT
from chatbot_sessions.extensions import get_settings
from chatbot_sessions.lean_schema import LeanSchema
from chatbot_sessions.sessions.ids import parse_session_id
from chatbot_sessions.timestamps import iso_from_ms, ms_from_iso


class SourceSchema(LeanSchema):
    """A knowledge-base passage an answer drew on."""

    title = fields.String(required=True)
    source = fields.String(required=True, metadata={"description": "file path or URL"})
    score = fields.Float(required=True)


class MessageFeedbackSchema(LeanSchema):
    """The latest rating of an answer, as history shows it."""

    rating = fields.String(required=True, validate=validate.OneOf(RATINGS))
    comment = fields.String(required=True, allow_none=True)


class MessageSchema(LeanSchema):
    """One stored turn, in the API's original shape; assistant turns may carry their sources."""

    id = fields.Integer(
        required=True,
        validate=validate.Range(min=0),
        metadata={
            "description": "the message's absolute position in the session (the n-th message "
            "ever appended, from 0): stable while messages are appended and trimmed"
        },
    )
    type = fields.String(required=True, validate=validate.OneOf(["user", "assistant"]))
    content = fields.String(required=True)
    timestamp = fields.String(required=True, metadata={"description": "ISO 8601 UTC"})
    sources = fields.List(fields.Nested(SourceSchema))
    stopped = fields.Boolean(
        metadata={"description": "true on an answer the user stopped: the text so far"}
    )
    degraded = fields.Boolean(
        metadata={"description": "true on an answer from a fallback (the LLM failed)"}
    )
    feedback = fields.Nested(
        MessageFeedbackSchema,
        metadata={"description": "on an answer the user rated: the latest rating"},
    )


class PreRenderedList(fields.List):
    """A list documented by its item schema but passed through as is when dumped.

    The store's decoder is the only producer of messages and already emits the exact wire
    shape, so re-dumping every message through marshmallow only costs time: about 10 ms
    for a 1,000-message history (measured with cProfile, see docs/performance.md).
    """

    def _serialize(self, value: Any, attr: Any, obj: Any, **kwargs: Any) -> Any:
        return value


# What counts as blank in a question, one set under both regex dialects that read it: the
# OpenAPI document's pattern is ECMA-262, whose \s has U+FEFF but not U+001C-U+001F or
# U+0085; Python's \s (and str.strip) is the other way round. Listing all of them makes
# the document's "valid" and the service's the same (a fuzzer found "\x1d" between them).
_BLANK_CLASS = r"\s\x1c-\x1f\x85\ufeff"
_BLANK = re.compile(f"[{_BLANK_CLASS}]*")


class SendMessageSchema(LeanSchema):
    """Body of POST /api/send-message."""

    class Meta:
        unknown = EXCLUDE

    question = fields.String(
        required=True,
        metadata={
            "description": "the user's question: not blank, at most MAX_QUESTION_CHARS characters",
            "pattern": f"[^{_BLANK_CLASS}]",  # the blank check below, as a document says it
            "max_length_setting": "max_question_chars",  # maxLength in the document (api/)
        },
    )

    @validates("question")
    def _check_question(self, value: str, **_: Any) -> None:
        _check_text(value)
        if _BLANK.fullmatch(value):
            raise ValidationError("must not be blank")


def _check_text(value: str) -> None:
    """What any text a user sends must be: valid Unicode, at most MAX_QUESTION_CHARS."""
    # JSON may spell a lone surrogate ("\ud800"); no such string can be stored or hashed.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError("must be valid Unicode text") from None
    limit = get_settings().max_question_chars
    if len(value) > limit:
        raise ValidationError(f"must be at most {limit} characters (got {len(value)})")


class FeedbackSchema(LeanSchema):
    """Body of POST /api/session/<id>/messages/<messageId>/feedback."""

    class Meta:
        unknown = EXCLUDE

    rating = fields.String(required=True, validate=validate.OneOf(RATINGS))
    comment = fields.String(
        allow_none=True,
        load_default=None,
        metadata={
            "description": "why, in the user's words: at most MAX_QUESTION_CHARS characters; "
            "absent, null, empty or blank means no comment",
            "max_length_setting": "max_question_chars",
        },
    )

    @validates("comment")
    def _check_comment(self, value: str | None, **_: Any) -> None:
        if value is not None:
            _check_text(value)

    @post_load
    def _blank_is_none(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        # A widget sends its comment box as it is: empty is no comment, not an error.
        if data["comment"] is not None and not data["comment"].strip():
            data["comment"] = None
        return data


class SessionHeaderSchema(LeanSchema):
    """The optional ``session-id`` and ``Idempotency-Key`` request headers of send-message."""

    class Meta:
        unknown = EXCLUDE

    # No load_default: it would document the header as nullable, which no header can be;
    # the view's keyword default stands in when it is absent.
    session_id = fields.String(
        data_key="session-id",
        metadata={"description": "a session id; unknown, expired or malformed ids get a new one"},
    )
    idempotency_key = fields.String(
        data_key="Idempotency-Key",
        validate=[
            validate.Length(min=16, max=255),
            validate.Regexp(r"^[\x21-\x7e]+$", error="must be visible ASCII characters only"),
        ],
        metadata={
            "description": "a fresh random value (a UUID v4) per logical request: a retry with "
            "the same key within IDEMPOTENCY_TTL returns the original reply and stores "
            "nothing twice; the same key with a different question gets 422"
        },
    )


class HistoryQuerySchema(LeanSchema):
    """Paging of GET /api/session/<id>/history."""

    class Meta:
        unknown = EXCLUDE

    limit = fields.Integer(
        validate=validate.Range(min=1),
        metadata={"description": "return only the newest N messages (of the page)"},
    )
    before = fields.Integer(
        validate=validate.Range(min=0),
        metadata={"description": "cursor: the nextCursor of a previous page, for older messages"},
    )


class SuccessSchema(LeanSchema):
    """Fields every successful answer carries."""

    success = fields.Boolean(required=True, dump_default=True, metadata={"enum": [True]})


class CreatedSchema(SuccessSchema):
    """Answer of POST /api/session/create."""

    sessionId = fields.String(required=True, attribute="session_id")
    message = fields.String(required=True)


class HistorySchema(SuccessSchema):
    """Answer of GET /api/session/<id>/history."""

    sessionId = fields.String(
        required=True,
        attribute="session_id",
        metadata={"description": "the session id in canonical (lower-case) form"},
    )
    createdAt = fields.String(required=True, attribute="created_at")
    lastActivity = fields.String(required=True, attribute="last_activity")
    messages = PreRenderedList(fields.Nested(MessageSchema), required=True)
    nextCursor = fields.Integer(
        allow_none=True,
        attribute="next_cursor",
        metadata={"description": "pass as ?before= to get older messages; null on the first"},
    )


class ContextSchema(SuccessSchema):
    """Answer of GET /api/session/<id>/context: what the next reply would be built from."""

    sessionId = fields.String(required=True, attribute="session_id")
    summary = fields.String(
        required=True,
        metadata={"description": "rolling summary of the turns before summaryThrough ('' if none)"},
    )
    summaryThrough = fields.Integer(
        required=True,
        attribute="summary_through",
        metadata={"description": "the summary covers every message before this position"},
    )
    messages = PreRenderedList(fields.Nested(MessageSchema), required=True)
    tokens = fields.Integer(required=True, metadata={"description": "summary + messages"})
    budget = fields.Integer(required=True, metadata={"description": "CONTEXT_TOKENS"})


class FeedbackGivenSchema(SuccessSchema):
    """Answer of POST …/messages/<messageId>/feedback: the rating now stored, dumped from a
    ``Feedback``."""

    sessionId = fields.String(
        required=True,
        attribute="session_id",
        metadata={"description": "the session id in canonical (lower-case) form"},
    )
    messageId = fields.Integer(required=True, attribute="message_id")
    rating = fields.String(required=True, validate=validate.OneOf(RATINGS))
    comment = fields.String(
        required=True, allow_none=True, metadata={"description": "null when none was given"}
    )


class ClearedSchema(SuccessSchema):
    """Answer of DELETE /api/session/<id>."""

    message = fields.String(required=True)


class ValidSchema(SuccessSchema):
    """Answer of GET /api/session/<id>/validate."""

    valid = fields.Boolean(required=True)
    sessionId = fields.String(
        required=True,
        attribute="session_id",
        metadata={
            "description": "the id in canonical (lower-case) form if it is a UUID v4, else as given"
        },
    )


class ReplySchema(SuccessSchema):
    """Answer of POST /api/send-message, dumped from an ``Exchange`` (``sessionID`` is the
    spelling of the API's first clients, kept beside ``sessionId``)."""

    reply = fields.String(required=True, attribute="reply.text")
    # Two names for one attribute: marshmallow allows one field per attribute, so the older
    # spelling is computed.
    sessionID = fields.Function(
        lambda exchange: exchange.session_id, required=True, metadata={"type": "string"}
    )
    sessionId = fields.String(required=True, attribute="session_id")
    sources = fields.List(fields.Nested(SourceSchema), required=True, attribute="reply.sources")
    degraded = fields.Boolean(required=True, attribute="reply.degraded")
    messageId = fields.Integer(
        required=True,
        allow_none=True,
        attribute="message_id",
        metadata={
            "description": "the answer's id in history (rate it with POST "
            "…/messages/<messageId>/feedback); null when unknown"
        },
    )


class EventsQuerySchema(LeanSchema):
    """Query of GET …/replies/<replyId>/events."""

    class Meta:
        unknown = EXCLUDE

    after = fields.Integer(
        validate=validate.Range(min=0, max=10**12),
        metadata={
            "description": "resume after this event id (for clients that cannot send Last-Event-ID)"
        },
    )


class StopAcceptedSchema(SuccessSchema):
    """Answer of POST …/replies/<replyId>/stop."""

    message = fields.String(required=True)


class ErrorSchema(LeanSchema):
    """The one error envelope every failure uses."""

    success = fields.Boolean(required=True, dump_default=False, metadata={"enum": [False]})
    error = fields.String(required=True, metadata={"description": "machine-readable code"})
    message = fields.String(required=True, metadata={"description": "a sentence for humans"})
    details = fields.Dict(
        required=True, metadata={"description": "e.g. `fields` with per-field problems"}
    )


class TtlBucketSchema(LeanSchema):
    """One bar of the TTL histogram."""

    le = fields.Integer(
        allow_none=True,
        metadata={"description": "upper bound in seconds (inclusive); null = above the last"},
    )
    count = fields.Integer(required=True)


class AdminStatsSchema(SuccessSchema):
    """Answer of GET /api/admin/stats."""

    activeSessions = fields.Integer(required=True, attribute="stats.sessions")
    persistentSessions = fields.Integer(
        required=True,
        attribute="stats.persistent",
        metadata={"description": "sessions with no TTL"},
    )
    ttlBuckets = fields.List(
        fields.Nested(TtlBucketSchema), required=True, attribute="stats.histogram"
    )
    memory = fields.Function(
        lambda report: report.memory.as_document(),
        required=True,
        metadata={
            "type": "object",
            "description": "usedMemory (bytes, all nodes) and INFO memory per node",
        },
    )
    scanMs = fields.Float(required=True, attribute="scan_ms")


#: The longest ``?wait=`` of POST /api/admin/kb/reload: the request holds a gunicorn thread
#: while it waits, and every worker swaps within a few poll intervals or has a problem.
MAX_RELOAD_WAIT_SECONDS = 30


def _iso_from_seconds(seconds: float | None) -> str | None:
    return None if seconds is None else iso_from_ms(round(seconds * 1000))


class KnowledgeWorkerSchema(LeanSchema):
    """What one live worker serves, as it last reported it (``flask kb stats``'s row)."""

    worker = fields.String(required=True, metadata={"description": "host:pid"})
    version = fields.Integer(
        required=True,
        allow_none=True,
        metadata={"description": "the knowledge version it serves; null until it could ask Redis"},
    )
    documents = fields.Integer(required=True, allow_none=True)
    chunks = fields.Integer(required=True, allow_none=True)
    builtAt = fields.Function(
        lambda w: _iso_from_seconds(w.built_at),
        required=True,
        allow_none=True,
        metadata={"type": "string", "description": "when its index was built, ISO 8601 UTC"},
    )
    checkedAt = fields.Function(
        lambda w: _iso_from_seconds(w.checked_at),
        required=True,
        metadata={
            "type": "string",
            "description": "its last report (it reports after every KNOWLEDGE_POLL_INTERVAL "
            "check), ISO 8601 UTC",
        },
    )
    error = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "why its last rebuild failed (it serves `version` still)"},
    )
    failedVersion = fields.Integer(
        required=True,
        allow_none=True,
        attribute="failed_version",
        metadata={"description": "the version that failed; not retried until the next reload"},
    )


class KnowledgeStateSchema(SuccessSchema):
    """Answer of GET /api/admin/kb, dumped from a ``ReloadState``."""

    version = fields.Integer(
        required=True,
        validate=validate.Range(min=0),
        metadata={"description": "the version workers should serve (0: never reloaded)"},
    )
    workers = fields.List(
        fields.Nested(KnowledgeWorkerSchema),
        required=True,
        metadata={"description": "every live worker, by id; a dead one drops out by itself"},
    )


class KnowledgeReloadSchema(KnowledgeStateSchema):
    """Answer of POST /api/admin/kb/reload: the version asked for, and with ``?wait`` the
    workers that serve it."""

    version = fields.Integer(
        required=True,
        validate=validate.Range(min=1),
        metadata={"description": "the version every worker now rebuilds for"},
    )
    workers = fields.List(
        fields.Nested(KnowledgeWorkerSchema),
        metadata={"description": "with ?wait (200 only): every live worker, each serving it"},
    )


class ReloadQuerySchema(LeanSchema):
    """Query of POST /api/admin/kb/reload."""

    class Meta:
        unknown = EXCLUDE

    wait = fields.Float(
        validate=validate.Range(min=0, max=MAX_RELOAD_WAIT_SECONDS),
        metadata={
            "description": "seconds to wait until every live worker serves the new version "
            "(absent or 0: answer 202 at once)"
        },
    )


def _check_iso(value: str) -> None:
    try:
        ms_from_iso(value)
    except ValueError:
        raise ValidationError("must be an ISO 8601 timestamp with a time zone") from None


class _StoredMessageSchema(MessageSchema):
    # An export carries each message's id; an import ignores it (``seq`` and the order
    # give every position back), so documents from before ids existed still load.
    id = fields.Integer()
    timestamp = fields.String(required=True, validate=_check_iso)


class SessionDocumentSchema(LeanSchema):
    """A whole session as ``flask sessions export`` writes it and ``import`` reads it."""

    format = fields.String(required=True)
    sessionId = fields.String(required=True)
    createdAt = fields.String(required=True, validate=_check_iso)
    lastActivity = fields.String(required=True, validate=_check_iso)
    seq = fields.Integer(validate=validate.Range(min=0))
    ttlMs = fields.Integer(
        allow_none=True,
        validate=validate.Range(min=1),
        metadata={"description": "remaining TTL in ms; null = no expiry (persisted)"},
    )
    messages = fields.List(fields.Nested(_StoredMessageSchema), required=True)

    @validates("format")
    def _check_format(self, value: str, **_: Any) -> None:
        if value != SESSION_DOCUMENT_FORMAT:
            raise ValidationError(f"must be {SESSION_DOCUMENT_FORMAT!r}")

    @validates("sessionId")
    def _check_session_id(self, value: str, **_: Any) -> None:
        if parse_session_id(value) is None:
            raise ValidationError("must be a canonical UUID v4 session id")

    @validates_schema
    def _check_seq(self, data: dict[str, Any], **_: Any) -> None:
        # seq counts every message ever appended; fewer than are stored breaks history cursors.
        if "seq" in data and data["seq"] < len(data.get("messages", [])):
            raise ValidationError("must be at least the number of messages", "seq")
