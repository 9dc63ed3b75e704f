"""What the OpenAPI document says about failures and headers, declared next to each view.

Every error leaves in the one envelope (``ErrorSchema``); a view lists the statuses it can
answer with ``@errors(blp, 404, 503)`` so the document names them one by one instead of a
catch-all ``default``, and schemathesis can hold the service to exactly that list.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask_smorest import Blueprint

from chatbot_sessions.schemas import ErrorSchema

_RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait before retrying",
        "schema": {"type": "integer", "minimum": 1},
    }
}

# status -> (description, headers); descriptions name the ``error`` codes clients may see.
ERROR_RESPONSES: dict[int, tuple[str, dict[str, Any] | None]] = {
    400: ("`invalid_json`: the body is not valid JSON", None),
    404: (
        "`session_not_found`: unknown, expired or deleted session; `reply_not_found`: no such "
        "streamed reply (or it ended more than STREAM_RETENTION ago); `message_not_found`: "
        "no such message stored in the session (malformed, beyond the newest, or trimmed)",
        None,
    ),
    409: (
        "`idempotency_in_progress`: a request with this Idempotency-Key is still being answered",
        _RETRY_AFTER,
    ),
    413: ("`payload_too_large`: the body is larger than MAX_CONTENT_LENGTH", None),
    422: (
        "`validation_error`: the body or query is invalid (`details.fields` says how); "
        "`not_an_answer`: the message is a question, and only answers can be rated",
        None,
    ),
    429: ("`rate_limited`: too many requests from this client or session", _RETRY_AFTER),
    503: (
        "`store_unavailable`: the session store is down; `busy`: every reply writer of this "
        "worker is taken (streamed replies); retry shortly",
        _RETRY_AFTER,
    ),
}

SESSION_ID_HEADER = {
    "session-id": {
        "description": "the session this exchange was stored in (new if the request had none)",
        "schema": {"type": "string", "format": "uuid"},
    }
}

REPLAYED_HEADER = {
    "Idempotent-Replayed": {
        "description": "`true` when this is the stored reply to an earlier request with the "
        "same Idempotency-Key (nothing was stored again)",
        "schema": {"type": "string", "enum": ["true"]},
    }
}


def errors(blp: Blueprint, *statuses: int) -> Callable[[Callable], Callable]:
    """Document each of ``statuses`` as an ``ErrorSchema`` response of the decorated view.

    ``blp.alt_response`` documents by wrapping: its wrapper only calls the view, and carries
    the view's OpenAPI notes (``_apidoc``, which the decorators above it copy through
    ``functools.wraps``). Each wrapper cost a call and an app-context lookup per request,
    five of them on send-message, so the view keeps the notes and loses the wrappers.
    """

    def decorator(view: Callable) -> Callable:
        documented = view
        for status in statuses:
            description, headers = ERROR_RESPONSES[status]
            documented = blp.alt_response(
                status, schema=ErrorSchema, description=description, headers=headers
            )(documented)
        view._apidoc = documented._apidoc  # type: ignore[attr-defined]
        return view

    return decorator
