"""LeanSchema dumps and loads exactly as marshmallow's Schema does, for every schema we have."""

from __future__ import annotations

import inspect
import re
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marshmallow import Schema, fields

from chatbot_sessions import schemas
from chatbot_sessions.lean_schema import LeanSchema

LEAN_SCHEMAS = sorted(
    (
        cls
        for _, cls in inspect.getmembers(schemas, inspect.isclass)
        if issubclass(cls, LeanSchema) and cls is not LeanSchema
    ),
    key=lambda cls: cls.__name__,
)
# The ones requests are read with (the others are answers).
REQUEST_SCHEMAS = [
    schemas.SendMessageSchema,
    schemas.FeedbackSchema,
    schemas.SessionHeaderSchema,
    schemas.HistoryQuerySchema,
    schemas.EventsQuerySchema,
    schemas.ReloadQuerySchema,
]

# Right and wrong types alike: a value a field cannot convert must fail the same way.
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.sampled_from(["1", "true", "0", "up", "down", "2026-12-02T00:00:00Z"]),
)


def objects(schema: Schema, depth: int = 0) -> st.SearchStrategy[Any]:
    """Objects to dump with ``schema``: each field's value present or not, as a dict item
    or an attribute, nested along dotted attributes (``reply.text``)."""

    @st.composite
    def build(draw: st.DrawFn) -> Any:
        tree: dict[str, Any] = {}
        for name, field in schema.dump_fields.items():
            if draw(st.booleans()):
                continue  # absent: a default, or the key left out
            path = (field.attribute or name).split(".")
            node = tree
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = draw(values(field, depth))
        return draw(shaped(tree))

    return build()


def values(field: fields.Field, depth: int) -> st.SearchStrategy[Any]:
    if isinstance(field, fields.Nested) and depth < 2:
        return st.one_of(st.none(), objects(field.schema, depth + 1))
    if isinstance(field, fields.List) and depth < 2:
        return st.one_of(st.none(), st.lists(values(field.inner, depth + 1), max_size=3))
    return SCALARS


def shaped(tree: dict[str, Any]) -> st.SearchStrategy[Any]:
    """The tree as dicts, as objects with attributes, or a mix."""
    if not isinstance(tree, dict):
        return st.just(tree)
    inner = {
        key: shaped(value) if isinstance(value, dict) else st.just(value)
        for key, value in tree.items()
    }
    fixed = st.fixed_dictionaries(inner)
    return st.one_of(fixed, fixed.map(lambda d: SimpleNamespace(**d)))


def outcome(schema: Schema, obj: Any, method: str = "dump") -> str:
    try:
        result: Any = ("done", getattr(schema, method)(obj))
    except Exception as exc:  # the same failure, type and message, is the same answer
        result = ("raised", (type(exc).__name__, str(exc), getattr(exc, "messages", None)))
    # A wrong type can reach a String field as a bound method (``"x".title``), whose text
    # names its address: the same answer from two runs differs only there.
    return re.sub(r" at 0x[0-9a-f]+", "", repr(result))


# Request data as clients send it: the declared keys (and others), any JSON value.
WIRE_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
    | st.sampled_from(["0", "10", "-1", "1e3", " ", "up", "down", "x" * 300, "\x1d"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)


def request_data(schema: Schema) -> st.SearchStrategy[Any]:
    keys = [field.data_key or name for name, field in schema.fields.items()]
    mapping = st.dictionaries(st.sampled_from([*keys, "other", "limit"]), WIRE_VALUES, max_size=4)
    return st.one_of(mapping, mapping, WIRE_VALUES)  # mostly objects, sometimes not


@pytest.mark.parametrize("schema_class", REQUEST_SCHEMAS, ids=lambda cls: cls.__name__)
# The app only lends its settings (read, never changed) to each example's context.
@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_every_request_schema_loads_as_marshmallow_does(app, schema_class, data):
    schema = schema_class()
    wire = data.draw(request_data(schema))
    with app.app_context():  # the question's length limit comes from the settings
        lean = outcome(schema, wire, "load")
        with mock.patch.object(LeanSchema, "load", Schema.load):
            plain = outcome(schema_class(), wire, "load")
    assert lean == plain


@pytest.mark.parametrize("schema_class", LEAN_SCHEMAS, ids=lambda cls: cls.__name__)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_every_response_schema_dumps_as_marshmallow_does(schema_class, data):
    schema = schema_class()
    obj = data.draw(objects(schema))
    lean = outcome(schema, obj)
    with mock.patch.object(LeanSchema, "dump", Schema.dump):  # marshmallow's own, nested too
        plain = outcome(schema_class(), obj)
    assert lean == plain


def test_the_answers_we_send_take_the_short_way():
    # The schemas of our hot answers must not fall back field by field (else no gain).
    for schema in (schemas.ValidSchema(), schemas.CreatedSchema(), schemas.HistorySchema()):
        schema.dump({})
        assert all(path is not None for _, _, _, path, _ in schema._lean_plan), schema
        # ...and their values (text, numbers, flags) skip a conversion that would keep them.
        assert all(
            kept is not None or isinstance(field, schemas.PreRenderedList)
            for _, _, field, _, kept in schema._lean_plan
        ), schema


def test_the_requests_we_read_take_the_short_way(monkeypatch):
    # A schema with no hooks loads without marshmallow's per-call preparation (else no gain).
    prepared = []
    monkeypatch.setattr(Schema, "_do_load", lambda *args, **kwargs: prepared.append(args))
    assert schemas.HistoryQuerySchema().load({"limit": "10"}) == {"limit": 10}
    assert schemas.SessionHeaderSchema().load({"session-id": "x"}) == {"session_id": "x"}
    assert prepared == []


def test_hooks_and_many_go_marshmallows_way():
    class Hooked(LeanSchema):
        name = fields.String()

        from marshmallow import post_dump

        @post_dump
        def shout(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
            return {key: value.upper() for key, value in data.items()}

    assert Hooked().dump({"name": "ada"}) == {"name": "ADA"}
    assert schemas.SourceSchema(many=True).dump([{"title": "t", "source": "s", "score": 1}]) == [
        {"title": "t", "source": "s", "score": 1.0}
    ]
