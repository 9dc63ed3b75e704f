"""Flask's JSON through orjson: every ``jsonify`` response body.

Flask's default provider goes through the standard library's ``json`` (a Python-level
encoder with a ``default`` hook per call); orjson does the same job in C, several times
faster, and emits UTF-8 bytes that the response takes as they are. View arguments are
still parsed by webargs with the standard library (``api/parsing.py`` documents how every
malformed body becomes a 400); ``loads`` here serves ``request.get_json`` callers, where
orjson's stricter parsing (no lone surrogate escapes, no integers beyond 64 bits, no
``NaN``) raises ``ValueError`` like any other invalid JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson
from flask import Response
from flask.json.provider import DefaultJSONProvider, JSONProvider

_OPTIONS = {"sort_keys": orjson.OPT_SORT_KEYS, "indent": orjson.OPT_INDENT_2}


def _default(value: Any) -> Any:
    # What Flask's own provider also accepts: dates, decimals, UUIDs, dataclasses, markup.
    return DefaultJSONProvider.default(value)


def encode(obj: Any, option: int = 0, default: Callable[[Any], Any] = _default) -> bytes:
    """orjson's bytes (``option``: its flags); the standard library's for what orjson refuses
    to write: a string with a lone surrogate, which an error message or a log line can echo
    from a client's JSON, is written as its escape (``\\ud800``) instead of failing."""
    try:
        return orjson.dumps(obj, default=default, option=option)
    except TypeError:
        indent = 2 if option & orjson.OPT_INDENT_2 else None
        text = json.dumps(
            obj,
            default=default,
            sort_keys=bool(option & orjson.OPT_SORT_KEYS),
            indent=indent,
            separators=(",", ":") if indent is None else None,
        )
        return (text + "\n" if option & orjson.OPT_APPEND_NEWLINE else text).encode()


class OrjsonProvider(JSONProvider):
    """``app.json``: orjson for dumps, loads and ``jsonify`` responses."""

    mimetype = "application/json"

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        """Serialise ``obj``; ``sort_keys`` and ``indent`` (as 2) are honoured, and any other
        standard-library option falls back to ``json.dumps`` so callers never lose one."""
        option = 0
        for name, value in kwargs.items():
            if name not in _OPTIONS or (name == "indent" and value not in (None, 2)):
                return json.dumps(obj, default=_default, **kwargs)
            if value:
                option |= _OPTIONS[name]
        return encode(obj, option).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        """Parse JSON text or UTF-8 bytes (``kwargs`` are standard-library options)."""
        if kwargs:
            return json.loads(s, **kwargs)
        return orjson.loads(s)

    def response(self, *args: Any, **kwargs: Any) -> Response:
        """``jsonify``: the body as orjson wrote it, with a trailing newline like Flask's."""
        obj = self._prepare_response_obj(args, kwargs)
        body = encode(obj, orjson.OPT_APPEND_NEWLINE)
        return self._app.response_class(body, mimetype=self.mimetype)
