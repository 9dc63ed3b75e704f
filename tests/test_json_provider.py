"""Flask's JSON through orjson (json_provider.py) and the app class that installs it."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid

from chatbot_sessions import ServiceFlask
from chatbot_sessions.json_provider import OrjsonProvider


@dataclasses.dataclass
class Point:
    x: int
    y: int


def test_the_service_answers_with_orjson_bodies(client):
    response = client.post("/api/session/create")
    assert isinstance(client.application.json, OrjsonProvider)
    # orjson's compact form: no space after separators, one trailing newline like Flask's.
    assert response.data.endswith(b"}\n") and b'": ' not in response.data
    assert response.get_json()["success"] is True


def test_dumps_honours_flask_options_and_falls_back_for_others(app):
    provider = app.json
    assert provider.dumps({"b": 1, "a": 2}, sort_keys=True) == '{"a":2,"b":1}'
    assert provider.dumps({"a": [1]}, indent=2) == '{\n  "a": [\n    1\n  ]\n}'
    # An option orjson lacks goes to the standard library rather than being dropped.
    assert provider.dumps({"a": "é"}, ensure_ascii=True) == '{"a": "\\u00e9"}'
    assert provider.loads(b'{"a": [1, 2]}') == {"a": [1, 2]}


def test_values_flask_accepts_are_written_as_flask_writes_them(app):
    value = uuid.uuid4()
    body = json.loads(app.json.response({"id": value, "p": Point(1, 2)}).get_data())
    assert body == {"id": str(value), "p": {"x": 1, "y": 2}}


def test_a_lone_surrogate_is_escaped_instead_of_failing_the_response(app):
    # orjson refuses such strings; an error message may echo one from a client's JSON.
    response = app.json.response({"echo": "a\ud800b"})
    assert response.get_data() == b'{"echo":"a\\ud800b"}\n'
    assert json.loads(app.json.dumps(["\udfff"])) == ["\udfff"]


def test_ensure_sync_still_wraps_coroutine_functions():
    app = ServiceFlask(__name__)

    def plain() -> str:
        return "plain"

    async def coroutine() -> str:
        await asyncio.sleep(0)
        return "awaited"

    assert app.ensure_sync(plain) is plain
    assert app.ensure_sync(plain) is plain  # remembered, same answer
    try:
        wrapped = app.ensure_sync(coroutine)
    except RuntimeError:  # Flask's own answer without the asgiref extra: still not cached
        assert coroutine not in app._known_sync
    else:
        assert wrapped is not coroutine and wrapped() == "awaited"
    assert coroutine not in app._known_sync
