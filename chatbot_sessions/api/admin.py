"""The admin API, behind ``Authorization: Bearer $ADMIN_TOKEN``: statistics and the knowledge base.

- ``GET /api/admin/stats``: sessions, TTLs and Redis memory (``flask sessions stats``);
- ``GET /api/admin/kb``: the knowledge version workers should serve and what each live
  worker serves (``flask kb stats``'s worker table);
- ``POST /api/admin/kb/reload[?wait=<s>]``: ask every worker to rebuild from KNOWLEDGE_DIR
  (``flask kb reload [--wait]``), through the same ``ReloadControl``.

Without ADMIN_TOKEN the whole blueprint answers 404, exactly like an unknown URL, so an
unconfigured deployment does not even reveal it. The token is compared in constant time.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

from flask import abort, request
from flask_smorest import Api

from chatbot_sessions.api.blueprint import Blueprint, MethodView
from chatbot_sessions.api.responses import errors
from chatbot_sessions.exceptions import AdminTokenRequired
from chatbot_sessions.extensions import get_admin, get_reload_control, get_settings
from chatbot_sessions.replies.reload_control import ReloadState
from chatbot_sessions.schemas import (
    AdminStatsSchema,
    ErrorSchema,
    KnowledgeReloadSchema,
    KnowledgeStateSchema,
    ReloadQuerySchema,
)
from chatbot_sessions.sessions.admin import AdminReport

blp = Blueprint(
    "admin", __name__, url_prefix="/api/admin", description="Operator statistics and reloads"
)


@blp.before_request
def _require_admin_token() -> None:
    """404 while ADMIN_TOKEN is unset; 401 unless the request carries it as a bearer token."""
    expected = get_settings().admin_token
    if not expected:
        abort(404)
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), expected.encode()
    ):
        raise AdminTokenRequired


_ADMIN_ERRORS = {
    401: "missing or wrong admin token",
    404: "the admin API is off (no ADMIN_TOKEN)",
}


def _admin(view: Callable) -> Callable:
    """Document what every admin view shares: the bearer token, its 401, the 404 without
    ADMIN_TOKEN, and the 503 of an unreachable Redis."""
    for status, description in _ADMIN_ERRORS.items():
        view = blp.alt_response(status, schema=ErrorSchema, description=description)(view)
    return blp.doc(security=[{"adminToken": []}])(errors(blp, 503)(view))


@blp.route("/stats")
class Stats(MethodView):
    """GET /api/admin/stats: what an operator looks at during an incident."""

    @blp.response(200, AdminStatsSchema)
    @_admin
    def get(self) -> AdminReport:
        """Session count and TTL histogram (one SCAN pass, never KEYS), Redis memory."""
        return get_admin().report()


@blp.route("/kb")
class Knowledge(MethodView):
    """GET /api/admin/kb: which knowledge version each worker serves."""

    @blp.response(200, KnowledgeStateSchema)
    @_admin
    def get(self) -> ReloadState:
        """The version in Redis and every live worker's last report (dead ones drop out)."""
        return get_reload_control().state()


@blp.route("/kb/reload")
class KnowledgeReload(MethodView):
    """POST /api/admin/kb/reload: serve the changed KNOWLEDGE_DIR without a restart.

    202 answers at once (the workers rebuild within a few poll intervals). With ``?wait``
    the request holds its thread until every live worker serves the new version: 200 with
    their state; 409 ``reload_failed`` as soon as a worker reports it cannot build it (the
    folder is gone: retrying cannot help until it is fixed); 504 ``reload_timeout`` when the
    workers it waited on did not get there in time, since the request itself was fine and
    the reload stays requested (a 4xx would tell the client to change its request).
    """

    @blp.arguments(ReloadQuerySchema(), location="query", as_kwargs=True)
    @blp.response(202, KnowledgeReloadSchema, description="the reload is requested")
    @blp.alt_response(
        200, schema=KnowledgeReloadSchema, description="?wait: every live worker serves it"
    )
    @blp.alt_response(
        409,
        schema=ErrorSchema,
        description="`reload_failed`: a worker cannot build the new version (?wait); "
        "`details` has the version and every worker's state",
    )
    @blp.alt_response(
        504,
        schema=ErrorSchema,
        description="`reload_timeout`: not every worker served the new version within ?wait "
        "seconds (it stays requested); `details` has the version and every worker's state",
    )
    @_admin
    def post(self, wait: float | None = None) -> tuple[Any, int]:
        """Bump the knowledge version; with ``?wait``, wait for every live worker to serve it."""
        control = get_reload_control()
        version = control.request()
        if not wait:
            return {"version": version}, 202
        return control.wait_for(version, wait), 200


def init_admin_api(api: Api) -> None:
    """Register the admin blueprint and document its bearer scheme."""
    api.spec.components.security_scheme("adminToken", {"type": "http", "scheme": "bearer"})
    api.register_blueprint(blp)
