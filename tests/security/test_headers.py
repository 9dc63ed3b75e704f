"""Security headers on every response, with the policy each kind of response needs."""

from __future__ import annotations

from flask import Response

from chatbot_sessions.security.headers import PAGE_CSP, RESOURCE_CSP

COMMON = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def directives(policy: str) -> dict[str, list[str]]:
    parsed = {}
    for part in policy.split(";"):
        name, *values = part.split()
        parsed[name] = values
    return parsed


def assert_common(response):
    for name, value in COMMON.items():
        assert response.headers.get(name) == value, (name, response.status_code)
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


def test_api_answers_and_errors_all_carry_the_headers(make_app):
    app = make_app({"MAX_CONTENT_LENGTH": "2048"})
    client = app.test_client()
    responses = [
        client.post("/api/session/create"),
        client.post("/api/send-message", json={"question": "q"}),
        client.get("/api/session/not-a-session/history"),  # 404 envelope
        client.get("/api/send-message"),  # 405
        client.post("/api/send-message", data="x" * 5000, content_type="application/json"),
        client.get("/no/such/page"),
        client.get("/api/openapi.json"),
    ]
    assert [r.status_code for r in responses] == [201, 200, 404, 405, 413, 404, 200]
    for response in responses:
        assert_common(response)
        assert response.headers["Content-Security-Policy"] == RESOURCE_CSP
    for response in responses[:5]:
        assert response.headers["Cache-Control"] == "no-store"  # histories stay out of caches


def test_html_pages_get_a_csp_without_inline_script(make_app):
    app = make_app()
    app.add_url_rule("/", "index", lambda: "<!doctype html><p>chat</p>")
    response = app.test_client().get("/")
    assert response.mimetype == "text/html"
    assert_common(response)
    policy = directives(response.headers["Content-Security-Policy"])
    assert policy["script-src"] == ["'self'"]
    assert policy["default-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"] and policy["base-uri"] == ["'none'"]
    assert "'unsafe-inline'" not in PAGE_CSP and "'unsafe-eval'" not in PAGE_CSP


def test_docs_page_may_load_only_its_pinned_cdn_script(client):
    response = client.get("/api/docs")
    assert response.status_code == 200
    assert_common(response)
    policy = directives(response.headers["Content-Security-Policy"])
    assert policy["script-src"] == ["https://cdn.jsdelivr.net"]  # no inline, no eval
    assert policy["default-src"] == ["'none'"]
    assert policy["connect-src"] == ["'self'"]  # the document it fetches, nothing else


def test_widget_script_stays_loadable_cross_origin(make_app):
    app = make_app()
    app.add_url_rule(
        "/widget.js", "widget", lambda: Response("void 0;", mimetype="text/javascript")
    )
    response = app.test_client().get("/widget.js")
    assert response.headers["X-Content-Type-Options"] == "nosniff"  # served as JS: fine
    assert "Cross-Origin-Resource-Policy" not in response.headers
    assert "Cross-Origin-Embedder-Policy" not in response.headers
    assert "Cache-Control" not in response.headers  # cacheable, unlike API answers


def test_headers_a_view_sets_itself_win(make_app):
    app = make_app()
    app.add_url_rule(
        "/embed",
        "embed",
        lambda: Response(
            "<p>x</p>",
            mimetype="text/html",
            headers={"Content-Security-Policy": "frame-ancestors https://example.org"},
        ),
    )
    response = app.test_client().get("/embed")
    assert response.headers["Content-Security-Policy"] == "frame-ancestors https://example.org"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_hsts_only_when_the_request_arrived_over_tls(make_app):
    behind_tls = make_app({"TRUSTED_PROXIES": "1"}).test_client()
    secure = behind_tls.post("/api/session/create", headers={"X-Forwarded-Proto": "https"})
    assert secure.headers["Strict-Transport-Security"].startswith("max-age=")
    plain = (
        make_app().test_client().post("/api/session/create", headers={"X-Forwarded-Proto": "https"})
    )
    assert "Strict-Transport-Security" not in plain.headers  # untrusted header ignored


def test_even_a_crash_leaves_with_the_headers(make_app, generator):
    def boom(question, history):
        raise RuntimeError("internal")

    generator.generate = boom
    response = make_app().test_client().post("/api/send-message", json={"question": "q"})
    assert response.status_code == 500
    assert_common(response)


def test_streamed_responses_start_with_the_headers_once(make_app):
    app = make_app()

    def stream():
        yield "data: one\n\n"
        yield "data: two\n\n"

    app.add_url_rule(
        "/api/stream", "stream", lambda: Response(stream(), mimetype="text/event-stream")
    )
    response = app.test_client().get("/api/stream", buffered=False)
    assert_common(response)
    assert response.headers["Cache-Control"] == "no-store"
    names = [name.lower() for name, _ in response.headers]
    assert len(names) == len(set(names))  # each header once, none added twice
    assert b"".join(response.response) == b"data: one\n\ndata: two\n\n"


def test_not_modified_keeps_the_cached_pages_policy(make_app):
    # A reload revalidates the chat page: the 304 has no Content-Type, and a CSP on it would
    # replace the page's own in the browser's cache (default-src 'none': the chat stops).
    client = make_app().test_client()
    page = client.get("/")
    assert page.status_code == 200 and page.headers["Content-Security-Policy"] == PAGE_CSP
    again = client.get("/", headers={"If-None-Match": page.headers["ETag"]})
    assert again.status_code == 304
    assert "Content-Security-Policy" not in again.headers
