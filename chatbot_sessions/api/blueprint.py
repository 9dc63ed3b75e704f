"""Our flask-smorest Blueprint: the decorators document as flask-smorest's do, and run leaner.

A view still declares what it takes and returns (``@blp.arguments``, ``@blp.response``), and
flask-smorest still turns those declarations into the OpenAPI document. What changes is the
work per request: flask-smorest's response wrapper is general (async views, ETags,
pagination wrappers, a ``g`` entry for them), and on a cheap request it cost more than the
view itself. Ours does only what our views use, with the same bytes on the wire.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

import flask_smorest
from flask import current_app
from flask_smorest.utils import (
    resolve_schema_instance,
    set_status_and_headers_in_response,
    unpack_tuple_response,
)
from werkzeug.wrappers import Response

from chatbot_sessions.api.parsing import JsonBodyParser


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's Blueprint, parsing ``@blp.arguments`` with ``JsonBodyParser`` and
    answering ``@blp.response`` views without flask-smorest's per-request wrapper."""

    ARGUMENTS_PARSER = JsonBodyParser()

    def response(
        self, status_code: int, schema: Any = None, **options: Any
    ) -> Callable[[Callable], Callable]:
        """``flask_smorest.Blueprint.response``: the same document and the same answer.

        flask-smorest's decorator is applied only for the OpenAPI notes it leaves on its
        wrapper (``_apidoc``); the view answers through ``_answer`` instead. Our views are
        plain functions (no coroutine to run), use no ETag (which reads the dumped result
        from ``g``) and no pagination (which would reshape it), so those steps are left out.
        """
        schema = resolve_schema_instance(schema)  # one instance documents and dumps
        document = super().response(status_code, schema, **options)
        dump = schema.dump if schema is not None else None

        def decorator(view: Callable) -> Callable:
            @wraps(view)
            def answer(*args: Any, **kwargs: Any) -> Response:
                return _answer(view(*args, **kwargs), status_code, dump)

            answer._apidoc = document(view)._apidoc  # type: ignore[attr-defined]
            return answer

        return decorator


def _answer(returned: Any, default_status: int, dump: Callable[[Any], Any] | None) -> Response:
    """A view's return value as flask-smorest answers it: a ``Response`` as it is, anything
    else dumped by the schema into a ``jsonify`` body; ``(body, status, headers)`` tuples
    as Flask reads them."""
    body, status, headers = unpack_tuple_response(returned)
    if isinstance(body, Response):
        set_status_and_headers_in_response(body, status, headers)
        return body
    response = current_app.json.response(body if dump is None else dump(body))
    status = default_status if status is None else status
    set_status_and_headers_in_response(response, status, headers)
    return response
