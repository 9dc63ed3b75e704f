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

Headers a view sets itself win (``setdefault``), so a page with special needs can say so.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, Response, request

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


def _defaults(policy: str, api: bool, secure: bool) -> tuple[tuple[str, str, str], ...]:
    """The headers one kind of response gets, as (lower-case name, name, value)."""
    headers = {**COMMON_HEADERS, "Content-Security-Policy": policy}
    if api:
        # Histories are private: no shared cache or browser back-button copy keeps them.
        headers["Cache-Control"] = "no-store"
    if secure:
        headers["Strict-Transport-Security"] = "max-age=31536000"
    return tuple((name.lower(), name, value) for name, value in headers.items())


def init_security_headers(app: Flask) -> None:
    """Register the after-request hook that adds the headers."""
    redoc_url = app.config.get("OPENAPI_REDOC_URL")
    docs_policy = docs_csp(redoc_url) if redoc_url else PAGE_CSP
    # Every combination is worked out once here: a request only picks one and fills gaps.
    table = {
        (kind, api, secure): _defaults(policy, api, secure)
        for kind, policy in (("docs", docs_policy), ("page", PAGE_CSP), ("other", RESOURCE_CSP))
        for api in (False, True)
        for secure in (False, True)
    }

    @app.after_request
    def add_security_headers(response: Response) -> Response:
        req = request._get_current_object()  # one context lookup, not one per attribute
        if req.endpoint == DOCS_ENDPOINT:
            kind = "docs"
        elif (response.content_type or "").startswith("text/html"):  # no header parsing
            kind = "page"
        else:
            kind = "other"
        headers = response.headers
        present = {name.lower() for name, _ in headers.items()}
        for lower, name, value in table[kind, req.path.startswith("/api/"), req.is_secure]:
            if lower not in present:
                headers.add(name, value)
        return response
