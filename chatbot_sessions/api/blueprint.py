"""Our flask-smorest Blueprint: the decorators document as flask-smorest's do, and run leaner.

A view still declares what it takes and returns (``@blp.arguments``, ``@blp.response``), and
flask-smorest still turns those declarations into the OpenAPI document. What changes is the
work per request: flask-smorest's response wrapper is general (async views, ETags,
pagination wrappers, a ``g`` entry for them), and on a cheap request it cost more than the
view itself. Ours does only what our views use, with the same bytes on the wire.

Arguments likewise: webargs' ``parse`` works out per request what never changes (the
loader, the ``unknown`` rule, which fields take repeated values) and wraps the query or
the headers in a proxy that marshmallow then reads through ``Mapping``'s generic methods.
That was as much work again as the schema's ``load`` (about 55,000 instructions per
location under callgrind). ``_ArgumentReader`` settles those questions once per view and
hands ``load`` a plain dict of the declared keys; the schema, its messages and the error
answer are webargs' own.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from functools import wraps
from typing import Any

import flask.views
import flask_smorest
import marshmallow as ma
from flask_smorest.utils import (
    resolve_schema_instance,
    set_status_and_headers_in_response,
    unpack_tuple_response,
)
from webargs.core import _UNKNOWN_DEFAULT_PARAM, Parser
from werkzeug.wrappers import Request, Response

from chatbot_sessions import current
from chatbot_sessions.api.parsing import JsonBodyParser


class MethodView(flask.views.MethodView):
    """Flask's ``MethodView``, dispatched in one step.

    Flask's view makes an instance per request, then finds the handler by name and asks
    whether it is a coroutine, twice, through ``current_app`` (about 20,000 instructions,
    counting the proxies). Ours keep nothing on ``self``, so one instance serves the app's
    life, and the table from HTTP method to handler is made when the route is registered.
    A class with ``decorators`` or an ``async`` handler gets Flask's own view.
    """

    init_every_request = False

    @classmethod
    def as_view(cls, name: str, *class_args: Any, **class_kwargs: Any) -> Any:
        methods = sorted(cls.methods or ())
        if cls.decorators or any(
            inspect.iscoroutinefunction(getattr(cls, method.lower())) for method in methods
        ):
            return super().as_view(name, *class_args, **class_kwargs)
        instance = cls(*class_args, **class_kwargs)
        handlers = {method: getattr(instance, method.lower()) for method in methods}
        if "GET" in handlers:  # HEAD runs GET when there is no head(), as in Flask
            handlers.setdefault("HEAD", handlers["GET"])

        def view(**kwargs: Any) -> Any:
            return handlers[current.request().method](**kwargs)

        # What Flask's as_view sets, which routing and flask-smorest's documentation read.
        view.view_class = cls  # type: ignore[attr-defined]
        view.__name__ = name
        view.__doc__ = cls.__doc__
        view.__module__ = cls.__module__
        view.methods = cls.methods  # type: ignore[attr-defined]
        view.provide_automatic_options = cls.provide_automatic_options  # type: ignore[attr-defined]
        return view


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's Blueprint, parsing ``@blp.arguments`` with ``JsonBodyParser`` and
    answering ``@blp.response`` views without flask-smorest's per-request wrapper."""

    ARGUMENTS_PARSER = JsonBodyParser()

    def arguments(
        self, schema: Any, *, location: str = "json", as_kwargs: bool = False, **options: Any
    ) -> Callable[[Callable], Callable]:
        """``flask_smorest.Blueprint.arguments``: the same document, the same values and
        errors, read by ``_ArgumentReader`` where it covers the case (else by webargs)."""
        schema = resolve_schema_instance(schema)
        document = super().arguments(schema, location=location, as_kwargs=as_kwargs, **options)
        reader = _ArgumentReader.for_case(self.ARGUMENTS_PARSER, schema, location, options)

        def decorator(view: Callable) -> Callable:
            documented = document(view)
            if reader is None:
                return documented

            @wraps(view)
            def parsed(*args: Any, **kwargs: Any) -> Any:
                values = reader.read()
                if as_kwargs:
                    kwargs.update(values)
                else:  # after the other positional arguments, as webargs passes them
                    args = (*args, values)
                return view(*args, **kwargs)

            parsed._apidoc = documented._apidoc  # type: ignore[attr-defined]
            return parsed

        return decorator

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
    response = current.app().json.response(body if dump is None else dump(body))
    status = default_status if status is None else status
    set_status_and_headers_in_response(response, status, headers)
    return response


#: Decorator options ``_ArgumentReader`` knows; any other (``unknown``, ``validate``...)
#: leaves the view to webargs. The documentation-only ones are flask-smorest's.
_READER_OPTIONS = frozenset(
    {"error_status_code", "error_headers", "content_type", "required", "description",
     "example", "examples"}
)  # fmt: skip


class _ArgumentReader:
    """One view's ``webargs`` parse of one location, with its per-request questions settled.

    Covered: a JSON body, and a query string or headers whose unknown keys are excluded
    (``EXCLUDE``, webargs' rule for both), for which marshmallow reads only the declared
    keys, so a dict of those keys loads exactly as webargs' proxy does.
    """

    def __init__(
        self,
        parser: JsonBodyParser,
        schema: ma.Schema,
        location: str,
        options: Mapping[str, Any],
        load_options: dict[str, Any],
    ) -> None:
        self.parser = parser
        self.schema = schema
        self.location = location
        self.error_status_code = options.get("error_status_code")
        self.error_headers = options.get("error_headers")
        self.load_options = load_options
        # (key in the request, whether it takes every repeated value), as MultiDictProxy
        # decides it: a List or Tuple field, or one that says ``is_multiple``.
        self.keys = [
            (field.data_key if field.data_key is not None else name, _takes_repeats(field))
            for name, field in schema.fields.items()
        ]
        # Headers: each one's name in the WSGI environ, as werkzeug's EnvironHeaders
        # spells it on every lookup ("session-id" -> HTTP_SESSION_ID).
        self.environ_keys = (
            [(key, _environ_name(key), many) for key, many in self.keys]
            if location == "headers"
            else []
        )

    @classmethod
    def for_case(
        cls, parser: JsonBodyParser, schema: ma.Schema, location: str, options: Mapping[str, Any]
    ) -> _ArgumentReader | None:
        """A reader for this declaration, or None when webargs should parse it.

        The parser's settings (``unknown``, an ``error_callback``) are read here, when the
        route is declared, where webargs reads them per request: set them before the views
        are imported, as ``JsonBodyParser`` does in its class.
        """
        if not set(options) <= _READER_OPTIONS or parser.error_callback is not None:
            return None
        if type(parser).parse is not Parser.parse or type(parser).pre_load is not Parser.pre_load:
            return None  # a parser that changes these would not be asked
        # webargs' precedence: the parser's own setting, else its default for the location.
        unknown = (
            parser.unknown
            if parser.unknown != _UNKNOWN_DEFAULT_PARAM
            else parser.DEFAULT_UNKNOWN_BY_LOCATION.get(location)
        )
        if location == "json":
            return cls(parser, schema, location, options, {"unknown": unknown} if unknown else {})
        if location in ("query", "querystring", "headers") and unknown == ma.EXCLUDE:
            return cls(parser, schema, location, options, {"unknown": unknown})
        return None

    def read(self) -> Any:
        """The loaded values, or webargs' error answer (422, or 400 for a broken body)."""
        req = current.request()
        if self.location == "json":
            data = self.parser.load_json(req, self.schema)
            if data is ma.missing:
                data = {}
        elif self.location == "headers":
            environ = req.environ
            data = {}
            for key, name, multiple in self.environ_keys:
                if multiple:  # rare: werkzeug's own lookups (getlist's walk has its corners)
                    if req.headers.get(key, ma.missing) is not ma.missing:
                        data[key] = req.headers.getlist(key)
                    continue
                value = environ.get(name)
                if value is not None:
                    data[key] = value
        else:
            values = _plain_query(req)
            if values is None:  # escapes, "+", non-ASCII: werkzeug's parse
                values = req.args.to_dict(flat=False)
            data = {}
            for key, multiple in self.keys:
                if key in values:
                    data[key] = values[key] if multiple else values[key][0]
        try:
            return self.schema.load(data, **self.load_options)
        except ma.ValidationError as error:
            # As webargs' _on_validation_error: the messages under the location's name.
            error.messages = {self.location: error.messages}
            self.parser.handle_error(
                error,
                req,
                self.schema,
                error_status_code=self.error_status_code,
                error_headers=self.error_headers,
            )
            raise


def _environ_name(header: str) -> str:
    """Where WSGI puts request header ``header`` (werkzeug's ``EnvironHeaders`` lookup)."""
    name = header.upper().replace("-", "_")
    return name if name in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{name}"


def _plain_query(req: Request) -> dict[str, list[str]] | None:
    """The query string's values by key, as ``request.args`` would hold them, when it is
    plain (ASCII, no ``%`` escapes, no ``+``); None otherwise, for werkzeug to parse.

    For a plain query werkzeug's parse (``urllib.parse.parse_qsl`` with blank values kept,
    into a ``MultiDict``) comes down to these splits, at a third of the cost (about 20,000
    instructions for ``?limit=10``).
    """
    query = req.environ.get("QUERY_STRING", "")
    if not query.isascii() or "%" in query or "+" in query:
        return None
    values: dict[str, list[str]] = {}
    for pair in query.split("&"):
        if pair:  # parse_qsl skips empty pairs ("a=1&&b=2")
            key, _, value = pair.partition("=")
            values.setdefault(key, []).append(value)
    return values


def _takes_repeats(field: ma.fields.Field) -> bool:
    """Whether a query or header field gets every repeated value (webargs' MultiDictProxy)."""
    flag = getattr(field, "is_multiple", None)
    return flag if flag is not None else isinstance(field, ma.fields.List | ma.fields.Tuple)
