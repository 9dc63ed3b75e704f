"""The app, request and ``g`` being served: the objects themselves, not Flask's proxies.

``flask.current_app``, ``request`` and ``g`` are werkzeug ``LocalProxy`` objects: each
attribute read through one looks the current object up again and builds the proxied
method on the way, about 8,700 instructions under callgrind, where the object's own
attribute is 1,200 once the object is in hand. Code on the request path takes the object
once through these (``_get_current_object`` is the proxy's documented way to it) and reads
its attributes directly: ``current.request().headers`` for ``request.headers``. Outside a
request or app context they raise Flask's usual ``RuntimeError``, as the proxies do.
"""

from __future__ import annotations

from flask import Flask, Request
from flask import current_app as _app_proxy
from flask import g as _g_proxy
from flask import request as _request_proxy
from flask.ctx import _AppCtxGlobals


def app() -> Flask:
    """The app handling the current request or CLI command (``flask.current_app``)."""
    return _app_proxy._get_current_object()  # type: ignore[attr-defined]


def request() -> Request:
    """The request being handled (``flask.request``)."""
    return _request_proxy._get_current_object()  # type: ignore[attr-defined]


def g() -> _AppCtxGlobals:
    """The current app context's ``flask.g``, where a request keeps what its later steps read."""
    return _g_proxy._get_current_object()  # type: ignore[attr-defined]
