"""The JSON error envelope, and the single place exceptions become HTTP statuses.

Every failure, ours or Flask's (404, 405, 413, ...) or an unexpected crash, leaves as
``{"success": false, "error": <code>, "message": <sentence>, "details": {...}}``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from chatbot_sessions.exceptions import (
    AdminTokenRequired,
    GenerationsBusy,
    IdempotencyInProgress,
    IdempotencyKeyReused,
    KnowledgeReloadFailed,
    KnowledgeReloadTimedOut,
    MessageNotFound,
    NotAnAnswer,
    RateLimited,
    ReplyNotFound,
    SessionNotFound,
    StoreUnavailable,
)
from chatbot_sessions.schemas import KnowledgeWorkerSchema

log = logging.getLogger(__name__)

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    417: "expectation_failed",
    422: "validation_error",
    429: "rate_limited",
    431: "header_too_large",
    500: "internal_error",
    501: "not_implemented",
    503: "service_unavailable",
    504: "gateway_timeout",
}
STORE_RETRY_AFTER_SECONDS = 1


def error_code(status: int) -> str:
    """The ``error`` code of a status that has no more specific one (``http_<status>`` if new)."""
    return _CODES.get(status, f"http_{status}")


def envelope(error: str, message: str, details: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The body of every error answer, also for those gunicorn writes itself (``serving.py``)."""
    return {"success": False, "error": error, "message": message, "details": dict(details or {})}


def error_response(
    status: int,
    error: str,
    message: str,
    details: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """Build the envelope; ``details`` is always present so clients need no key checks."""
    response = jsonify(envelope(error, message, details))
    response.status_code = status
    response.headers.update(headers or {})
    return response


def _field_errors(messages: Mapping[str, Any]) -> dict[str, Any]:
    """Flatten webargs' ``{location: {field: [...]}}`` into ``{field: [...]}``."""
    fields: dict[str, Any] = {}
    for location, errors in messages.items():
        if not isinstance(errors, Mapping):
            fields[location] = errors
            continue
        for name, problems in errors.items():
            fields["body" if name == "_schema" else name] = problems
    return fields


def _describe(fields: Mapping[str, Any]) -> str:
    parts = []
    for name, problems in fields.items():
        text = " ".join(map(str, problems)) if isinstance(problems, list) else str(problems)
        parts.append(f"{name}: {text}")
    return "Invalid request: " + "; ".join(parts)


def http_exception_response(exc: HTTPException) -> Response:
    """Render any werkzeug HTTPException, including webargs' parsing failures."""
    status = exc.code or 500
    data = getattr(exc, "data", None) or {}
    # Keep what werkzeug would send (Allow on 405, Retry-After on 429), not its HTML type.
    headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
    headers.update(data.get("headers") or {})
    messages = data.get("messages")
    if isinstance(messages, Mapping) and messages:
        fields = _field_errors(messages)
        if status == 400 and "json" in fields:
            return error_response(
                400, "invalid_json", "The request body is not valid JSON.", {}, headers
            )
        return error_response(
            status,
            _CODES.get(status, "bad_request"),
            _describe(fields),
            {"fields": fields},
            headers,
        )
    message = data.get("message") or exc.description or exc.name
    return error_response(status, error_code(status), message, {}, headers)


def _session_not_found(exc: SessionNotFound) -> Response:
    return error_response(
        404, "session_not_found", "No such session: it may have expired or been deleted."
    )


def _message_not_found(exc: MessageNotFound) -> Response:
    return error_response(
        404,
        "message_not_found",
        "No such message in this session: the id must be one that history shows (older "
        "messages are trimmed away).",
    )


def _not_an_answer(exc: NotAnAnswer) -> Response:
    return error_response(
        422, "not_an_answer", "Only answers can be rated; this message is a question."
    )


def _store_unavailable(exc: StoreUnavailable) -> Response:
    log.error("session store unavailable: %s", exc)
    return error_response(
        503,
        "store_unavailable",
        "The session store is unavailable; please retry shortly.",
        headers={"Retry-After": str(STORE_RETRY_AFTER_SECONDS)},
    )


def _idempotency_key_reused(exc: IdempotencyKeyReused) -> Response:
    return error_response(
        422,
        "idempotency_key_reused",
        "This Idempotency-Key was already used for a different request; use a new key.",
    )


def _idempotency_in_progress(exc: IdempotencyInProgress) -> Response:
    return error_response(
        409,
        "idempotency_in_progress",
        "A request with this Idempotency-Key is still being answered; retry shortly.",
        headers={"Retry-After": str(exc.retry_after)},
    )


def _rate_limited(exc: RateLimited) -> Response:
    return error_response(
        429,
        "rate_limited",
        f"Too many requests; retry in {exc.retry_after} s.",
        {"limit": exc.limit, "retry_after": exc.retry_after},
        headers={"Retry-After": str(exc.retry_after)},
    )


def _reply_not_found(exc: ReplyNotFound) -> Response:
    return error_response(
        404, "reply_not_found", "No such reply: it may have ended too long ago (STREAM_RETENTION)."
    )


def _generations_busy(exc: GenerationsBusy) -> Response:
    return error_response(
        503,
        "busy",
        "Every reply writer is busy; please retry shortly.",
        headers={"Retry-After": str(exc.retry_after)},
    )


def _admin_token_required(exc: AdminTokenRequired) -> Response:
    return error_response(
        401,
        "unauthorized",
        "A valid admin token is required: Authorization: Bearer <ADMIN_TOKEN>.",
        headers={"WWW-Authenticate": 'Bearer realm="admin"'},
    )


#: A reload that ``?wait`` saw go wrong: status, error code, and what its message adds.
_RELOAD_ERRORS: dict[type, tuple[int, str, str]] = {
    # 409: the request conflicts with what the server has (KNOWLEDGE_DIR as the workers see
    # it); retrying cannot help until an operator fixes the folder and reloads again.
    KnowledgeReloadFailed: (
        409,
        "reload_failed",
        "those workers still serve their previous index.",
    ),
    # 504: the request was accepted, and the workers it waited on did not answer in time.
    # Nothing is wrong with the request (not a 4xx), and the reload stays requested.
    KnowledgeReloadTimedOut: (
        504,
        "reload_timeout",
        "the reload stays requested: GET /api/admin/kb shows the workers catching up.",
    ),
}


def _knowledge_reload_error(exc: KnowledgeReloadFailed | KnowledgeReloadTimedOut) -> Response:
    """Either reload error, with the version asked for and every live worker's state, as
    GET /api/admin/kb shows them."""
    status, error, outcome = _RELOAD_ERRORS[type(exc)]
    log.warning("knowledge reload: %s", exc)
    workers = KnowledgeWorkerSchema(many=True).dump(exc.state.workers)
    return error_response(
        status,
        error,
        f"Knowledge version {exc.version} was requested, but {exc}; {outcome}",
        {"version": exc.version, "workers": workers},
    )


def _unexpected(exc: Exception) -> Response:
    if isinstance(exc, HTTPException):
        return http_exception_response(exc)
    log.exception("unhandled error")
    return error_response(500, "internal_error", "Something went wrong on our side.")


def register_error_handlers(app: Flask) -> None:
    """Route domain exceptions and every other failure through the envelope."""
    app.register_error_handler(HTTPException, http_exception_response)
    app.register_error_handler(SessionNotFound, _session_not_found)
    app.register_error_handler(MessageNotFound, _message_not_found)
    app.register_error_handler(NotAnAnswer, _not_an_answer)
    app.register_error_handler(StoreUnavailable, _store_unavailable)
    app.register_error_handler(IdempotencyKeyReused, _idempotency_key_reused)
    app.register_error_handler(IdempotencyInProgress, _idempotency_in_progress)
    app.register_error_handler(RateLimited, _rate_limited)
    app.register_error_handler(AdminTokenRequired, _admin_token_required)
    app.register_error_handler(ReplyNotFound, _reply_not_found)
    app.register_error_handler(GenerationsBusy, _generations_busy)
    for reload_error in _RELOAD_ERRORS:
        app.register_error_handler(reload_error, _knowledge_reload_error)
    app.register_error_handler(Exception, _unexpected)
