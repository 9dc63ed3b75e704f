"""Every failure leaves in the JSON envelope: Flask's own errors, Redis outages, crashes."""

from __future__ import annotations

import re
import time

from chatbot_sessions import create_app


def assert_envelope(response, status, error):
    body = response.get_json()
    assert response.status_code == status
    assert response.mimetype == "application/json"
    assert body["success"] is False and body["error"] == error
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["details"], dict)


def test_unknown_route_is_json_404(client):
    assert_envelope(client.get("/no/such/route"), 404, "not_found")


def test_wrong_method_is_json_405_with_allow(client):
    response = client.get("/api/send-message")
    assert_envelope(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


def test_the_create_route_and_session_routes_do_not_shadow_each_other(client):
    """``create`` is the create route's at the end of the path and a session id deeper in."""
    options = client.options("/api/session/create")
    assert set(options.headers["Allow"].split(", ")) == {"POST", "OPTIONS"}
    assert_envelope(client.delete("/api/session/create"), 405, "method_not_allowed")
    assert_envelope(client.get("/api/session/create/history"), 404, "session_not_found")
    assert client.get("/api/session/create/validate").get_json()["valid"] is False
    sid = client.post("/api/session/create").get_json()["sessionId"]
    assert client.get(f"/api/session/{sid}/history").status_code == 200
    assert_envelope(client.get(f"/api/session/{sid}/x/history"), 404, "not_found")
    assert client.delete(f"/api/session/{sid}").status_code == 200


def test_unexpected_exception_is_json_500_without_trace(make_app, generator):
    def boom(question, history):
        raise RuntimeError("secret internals")

    generator.generate = boom
    response = make_app().test_client().post("/api/send-message", json={"question": "q"})
    assert_envelope(response, 500, "internal_error")
    assert b"secret internals" not in response.data and b"Traceback" not in response.data


def test_redis_down_is_fast_503_with_retry_after(generator):
    from tests.support.processes import free_port

    nobody = f"redis://127.0.0.1:{free_port()}/0"  # the client is built as in production
    app = create_app({"REDIS_URL": nobody, "RATE_LIMIT_ENABLED": "0"}, reply_generator=generator)
    client = app.test_client()
    for call in (
        lambda: client.post("/api/session/create"),
        lambda: client.get("/api/session/7c3e1bd4-8d2b-4f7e-9a51-2f0e6f6a1c11/history"),
        lambda: client.post("/api/send-message", json={"question": "q"}),
    ):
        started = time.monotonic()
        response = call()
        assert time.monotonic() - started < 2
        assert_envelope(response, 503, "store_unavailable")
        assert response.headers["Retry-After"] == "1"


def test_no_url_under_api_redirects_or_answers_html(app, client):
    """However a client doubles or adds slashes, werkzeug sends no (HTML) redirect."""
    sid = "7c3e1bd4-8d2b-4f7e-9a51-2f0e6f6a1c11"
    rules = [r for r in app.url_map.iter_rules() if r.rule.startswith("/api/")]
    assert rules
    for rule in rules:
        path = re.sub(r"<(?:lone_)?session:session_id>", sid, rule.rule)
        variants = {path + "/", path.rstrip("/"), "/" + path}
        variants |= {path[:i] + "/" + path[i:] for i, char in enumerate(path) if char == "/"}
        for variant in variants - {path}:
            for method in rule.methods:
                response = client.open(variant, method=method)
                assert response.status_code == 404, (method, variant, response.status_code)
                assert response.mimetype == "application/json", (method, variant)
