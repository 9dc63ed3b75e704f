"""Our argument reader gives webargs' answer: the same values, the same errors, for any input."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marshmallow import fields
from werkzeug.exceptions import HTTPException

from chatbot_sessions import schemas
from chatbot_sessions.api.blueprint import Blueprint, _ArgumentReader, _plain_query
from chatbot_sessions.lean_schema import LeanSchema

PARSER = Blueprint.ARGUMENTS_PARSER

# Every declaration our views make (api/*.py), by location.
DECLARATIONS = {
    "history query": (schemas.HistoryQuerySchema(), "query"),
    "events query": (schemas.EventsQuerySchema(), "query"),
    "reload query": (schemas.ReloadQuerySchema(), "query"),
    "send headers": (schemas.SessionHeaderSchema(), "headers"),
    "send body": (schemas.SendMessageSchema(), "json"),
    "feedback body": (schemas.FeedbackSchema(), "json"),
}

# Values right and wrong: numbers in range and out, text, blanks, odd characters.
TEXT = st.one_of(
    st.sampled_from(["", " ", "0", "1", "10", "-1", "1e3", "abc", "null", "true", "up"]),
    st.integers(min_value=-(10**13), max_value=10**13).map(str),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40),
)
KEYS = st.sampled_from(
    ["limit", "before", "after", "wait", "session-id", "Idempotency-Key", "idempotency-key",
     "question", "rating", "comment", "other"]
)  # fmt: skip
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=8,
)
BODIES = st.one_of(
    JSON_VALUES.map(lambda value: json.dumps(value).encode()),
    st.dictionaries(KEYS, JSON_VALUES, max_size=4).map(lambda d: json.dumps(d).encode()),
    st.sampled_from([b"", b"{", b"[[[", b"\xff\xfe", b'{"question": "\\ud800"}', b"1" * 5000]),
)
CONTENT_TYPES = st.sampled_from(
    ["application/json", "application/json; charset=utf-8", "text/plain", None]
)


# Query strings as clients write them, raw: separators doubled or missing, escapes, "+",
# "=" in values, keys without values, non-ASCII.
RAW_QUERIES = st.lists(
    st.one_of(
        KEYS,
        TEXT,
        st.sampled_from(["&", "&&", "=", "==", "+", "%20", "%", "%zz", "%C3%A9", "é", ";"]),
    ),
    max_size=8,
).map("".join)


def outcome(call: Any) -> tuple[str, Any]:
    try:
        return "values", call()
    except HTTPException as exc:  # webargs' answer: the status and the messages it carries
        return "refused", (exc.code, getattr(exc, "data", None))


def test_every_declaration_is_read_by_us():
    for schema, location in DECLARATIONS.values():
        assert _ArgumentReader.for_case(PARSER, schema, location, {}) is not None


@pytest.mark.parametrize("name", sorted(DECLARATIONS))
@settings(
    max_examples=120,
    deadline=None,
    # the app is only read (a request context per example), never changed
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    pairs=st.lists(st.tuples(KEYS, TEXT), max_size=6),
    body=BODIES,
    content_type=CONTENT_TYPES,
)
def test_the_reader_answers_as_webargs(app, name, pairs, body, content_type):
    schema, location = DECLARATIONS[name]
    reader = _ArgumentReader.for_case(PARSER, schema, location, {})
    headers = [(key, value) for key, value in pairs]
    if content_type:
        headers.append(("Content-Type", content_type))
    with app.test_request_context(
        "/?" + urlencode(pairs), method="POST", headers=headers, data=body
    ):
        ours = outcome(reader.read)
        theirs = outcome(lambda: PARSER.parse(schema, location=location))
    assert ours == theirs


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(query=RAW_QUERIES)
def test_a_plain_query_is_split_as_werkzeug_parses_it(app, query):
    with app.test_request_context("/", query_string=query) as ctx:
        plain = _plain_query(ctx.request)
        parsed = ctx.request.args.to_dict(flat=False)
    if plain is not None:  # else werkzeug parses it
        assert plain == parsed
    assert (plain is None) == (not query.isascii() or "%" in query or "+" in query)


@pytest.mark.parametrize("name", ["history query", "events query", "reload query"])
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(query=RAW_QUERIES)
def test_the_reader_answers_raw_queries_as_webargs(app, name, query):
    schema, location = DECLARATIONS[name]
    reader = _ArgumentReader.for_case(PARSER, schema, location, {})
    with app.test_request_context("/", query_string=query):
        ours = outcome(reader.read)
        theirs = outcome(lambda: PARSER.parse(schema, location=location))
    assert ours == theirs


def test_a_view_gets_the_values_where_webargs_put_them(client):
    # History takes its query as keyword arguments; a bad one is our 422 envelope.
    sid = client.post("/api/session/create").get_json()["sessionId"]
    assert client.get(f"/api/session/{sid}/history?limit=1").status_code == 200
    refused = client.get(f"/api/session/{sid}/history?limit=0")
    assert refused.status_code == 422
    assert refused.get_json()["details"] == {
        "fields": {"limit": ["Must be greater than or equal to 1."]}
    }


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(body=BODIES, content_type=CONTENT_TYPES)
def test_the_body_is_read_as_webargs_reads_it_whatever_the_content_type(app, body, content_type):
    from webargs.flaskparser import FlaskParser

    def read(method):
        headers = {"Content-Type": content_type} if content_type else {}
        with app.test_request_context("/", method="POST", headers=headers, data=body) as ctx:
            try:
                return "read", method(PARSER, ctx.request)
            except Exception as exc:  # the comparison is the point: type and text
                return "raised", type(exc), str(exc)

    assert read(type(PARSER)._raw_load_json) == read(FlaskParser._raw_load_json)


class _RepeatedHeaders(LeanSchema):
    """Headers no view reads today: repeatable ones, an underscore, Content-Type."""

    class Meta:
        unknown = "exclude"

    tokens = fields.List(fields.String(), data_key="x_token")
    types = fields.List(fields.String(), data_key="content-type")
    one = fields.String(data_key="x_one")


@pytest.mark.parametrize(
    "environ",
    [{"HTTP_X_TOKEN": "t1", "HTTP_X_ONE": "o"}, {"CONTENT_TYPE": ""},
     {"CONTENT_TYPE": "text/plain"}, {}],
)  # fmt: skip
def test_any_header_declaration_is_read_as_webargs_reads_it(app, environ):
    schema = _RepeatedHeaders()
    reader = _ArgumentReader.for_case(PARSER, schema, "headers", {})
    with app.test_request_context("/") as ctx:
        ctx.request.environ.update(environ)
        ours = outcome(reader.read)
        theirs = outcome(lambda: PARSER.parse(schema, location="headers"))
    assert ours == theirs
