"""Security headers on every response, chosen by what the response is.

- Everything: ``nosniff``, ``Referrer-Policy: no-referrer``, ``X-Frame-Options: DENY``.
- HTML pages (the chat page at ``/``): a CSP with ``script-src 'self'`` and no inline script,
  and ``frame-ancestors 'none'``, so the page cannot be framed for clickjacking.
- The API docs page (``/api/docs``): the same, except that ReDoc's script may come from its
  pinned CDN origin and it may inject its own styles and search worker.
- Everything else (JSON, the widget script): ``default-src 'none'``, which blocks rendering
  of a response opened directly while leaving a ``<script src=.../widget.js>`` on another
  site untouched: a CSP governs the document that receives it, not a script's consumers.
  No ``Cross-Origin-Resource-Policy`` is sent, so the widget stays loadable cross-origin.

Headers a view sets itself win, so a page with special needs can say so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from flask import Flask

COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
RESOURCE_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
DOCS_ENDPOINT = "api-docs.openapi_redoc"

_Defaults = tuple[frozenset[str], list[tuple[str, str]]]


def docs_csp(script_url: str) -> str:
    """CSP of the ReDoc page: its script from the CDN origin only; styles and worker inline."""
    parts = urlsplit(script_url)
    origin = f"{parts.scheme}://{parts.netloc}"
    return (
        f"default-src 'none'; script-src {origin}; style-src 'unsafe-inline'; "
        f"img-src 'self' data: {origin}; font-src 'self' data:; connect-src 'self'; "
        "worker-src blob:; object-src 'none'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )


def _defaults(policy: str, api: bool, secure: bool) -> _Defaults:
    """The headers one kind of response gets: their lower-case names and (name, value) pairs."""
    headers = {**COMMON_HEADERS, "Content-Security-Policy": policy}
    if api:
        # Histories are private: no shared cache or browser back-button copy keeps them.
        headers["Cache-Control"] = "no-store"
    if secure:
        headers["Strict-Transport-Security"] = "max-age=31536000"
    return frozenset(name.lower() for name in headers), list(headers.items())


class SecurityHeaders:
    """WSGI middleware adding the headers as the response starts, for every response.

    At this level a response is a list of header pairs and the request its ``environ``:
    one pass over the few headers a response has, then a list extend. As an ``after_request``
    hook (werkzeug's ``Headers``, the request proxy, one ``add`` per header) it was about
    80,000 instructions per request, an eighth of a cheap one. Streamed responses start
    through here too, and so do the error pages werkzeug and Flask answer themselves.
    """

    def __init__(self, wsgi_app: Any, docs_path: str | None, docs_policy: str) -> None:
        self.wsgi_app = wsgi_app
        self.docs_path = docs_path
        # Every combination is worked out once: a response only picks one and fills gaps.
        self.table = {
            (kind, api, secure): _defaults(policy, api, secure)
            for kind, policy in (
                ("docs", docs_policy),
                ("page", PAGE_CSP),
                ("other", RESOURCE_CSP),
            )
            for api in (False, True)
            for secure in (False, True)
        }

    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> Any:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if status.startswith("304"):
                # Not Modified carries no Content-Type (werkzeug strips it), so it would get
                # the "other" policy; the browser would merge that into the cached page and
                # block its script. The cached response's own headers stand instead.
                return start_response(status, headers, exc_info)
            path = environ.get("PATH_INFO", "")
            kind = "docs" if path == self.docs_path else "other"
            present = set()
            for name, value in headers:
                lower = name.lower()
                present.add(lower)
                if kind == "other" and lower == "content-type" and value.startswith("text/html"):
                    kind = "page"
            # Read now, not when the request came in: ProxyFix (inside this layer) sets the
            # scheme from X-Forwarded-Proto in this same environ before the app runs.
            secure = environ.get("wsgi.url_scheme") == "https"
            names, pairs = self.table[kind, path.startswith("/api/"), secure]
            if present.isdisjoint(names):  # the usual case: the view set none of them
                headers.extend(pairs)
            else:
                headers.extend(pair for pair in pairs if pair[0].lower() not in present)
            return start_response(status, headers, exc_info)

        return self.wsgi_app(environ, start)


def init_security_headers(app: Flask) -> None:
    """Wrap the app in the middleware that adds the headers (after the API's routes exist,
    so the docs page's path is known)."""
    redoc_url = app.config.get("OPENAPI_REDOC_URL")
    docs_policy = docs_csp(redoc_url) if redoc_url else PAGE_CSP
    docs_path = next(
        (rule.rule for rule in app.url_map.iter_rules() if rule.endpoint == DOCS_ENDPOINT), None
    )
    app.wsgi_app = SecurityHeaders(app.wsgi_app, docs_path, docs_policy)  # type: ignore[method-assign]
