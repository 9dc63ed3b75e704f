"""Operator statistics: GET /api/admin/stats, behind ``Authorization: Bearer $ADMIN_TOKEN``.

Without ADMIN_TOKEN the whole blueprint answers 404, exactly like an unknown URL, so an
unconfigured deployment does not even reveal it. The token is compared in constant time.
"""

from __future__ import annotations

import hmac

from flask import abort, request
from flask.views import MethodView
from flask_smorest import Api

from chatbot_sessions.api.parsing import Blueprint
from chatbot_sessions.api.responses import errors
from chatbot_sessions.exceptions import AdminTokenRequired
from chatbot_sessions.extensions import get_admin, get_settings
from chatbot_sessions.schemas import AdminStatsSchema, ErrorSchema
from chatbot_sessions.sessions.admin import AdminReport

blp = Blueprint("admin", __name__, url_prefix="/api/admin", description="Operator statistics")


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


@blp.route("/stats")
class Stats(MethodView):
    """GET /api/admin/stats: what an operator looks at during an incident."""

    @blp.response(200, AdminStatsSchema)
    @blp.alt_response(401, schema=ErrorSchema, description="missing or wrong admin token")
    @blp.alt_response(404, schema=ErrorSchema, description="the admin API is off (no ADMIN_TOKEN)")
    @errors(blp, 503)
    @blp.doc(security=[{"adminToken": []}])
    def get(self) -> AdminReport:
        """Session count and TTL histogram (one SCAN pass, never KEYS), Redis memory."""
        return get_admin().report()


def init_admin_api(api: Api) -> None:
    """Register the admin blueprint and document its bearer scheme."""
    api.spec.components.security_scheme("adminToken", {"type": "http", "scheme": "bearer"})
    api.register_blueprint(blp)
