"""MAX_CONTENT_LENGTH for bodies that declare no length (``Transfer-Encoding: chunked``).

Flask refuses a declared ``Content-Length`` over the limit with 413 by itself. A chunked
body is different: werkzeug reads it only up to the limit and then stops quietly, so the
view parsed a truncated body (a misleading 400 ``invalid_json``, or worse, a prefix that
happens to parse). This hook reads such a body up front, at most the limit plus one byte,
and turns "there is more" into the same 413 as the declared case.
"""

from __future__ import annotations

from flask import Flask, request
from werkzeug.exceptions import RequestEntityTooLarge


def refuse_oversized_streams() -> None:
    """before_request: 413 when an undeclared-length body runs past the limit."""
    # Nearly every request has no Transfer-Encoding: one dictionary lookup decides.
    if "HTTP_TRANSFER_ENCODING" not in request.environ:
        return
    limit = request.max_content_length
    if limit is None or request.content_length is not None:
        return
    body = request.get_data(cache=True)  # stops at `limit` bytes; cached for the view
    if len(body) >= limit and request.environ["wsgi.input"].read(1):
        raise RequestEntityTooLarge()


def init_body_limit(app: Flask) -> None:
    """Register the check; it runs before any view parses a body."""
    app.before_request(refuse_oversized_streams)
