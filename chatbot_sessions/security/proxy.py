"""Which address is the client: the socket peer, or what trusted proxies say it was."""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from chatbot_sessions.config import Settings


def init_proxy_fix(app: Flask, settings: Settings) -> None:
    """Trust the last ``TRUSTED_PROXIES`` hops of ``X-Forwarded-For``/``-Proto``, or none.

    With 0 (the default) the headers are ignored, so a client cannot pick its own address
    and dodge the per-IP limits. Behind one nginx, set 1: werkzeug then takes the address
    nginx appended (the right-most entry), never one the client wrote further left.
    """
    hops = settings.trusted_proxies
    if hops > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
