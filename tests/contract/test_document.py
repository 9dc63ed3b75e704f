"""The OpenAPI document itself: served, complete, and matching the errors we actually send."""

from __future__ import annotations

import uuid

import pytest
import schemathesis

from chatbot_sessions.config import load_settings
from chatbot_sessions.sessions.connection import connect
from tests.contract.operations import FEEDBACK, OPERATIONS


@pytest.fixture
def document(client):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    return response.get_json()


def resolve(document, item):
    ref = item.get("$ref")
    if ref is None:
        return item
    section, name = ref.split("/")[-2:]
    return document["components"][section][name]


def test_every_operation_lists_exactly_its_statuses(document):
    found = {
        (method, path): set(operation["responses"])
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method != "parameters"
    }
    assert found == OPERATIONS  # no catch-all "default": an unlisted status is a failure


def test_every_error_response_is_the_envelope(document):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    schema = resolve(document, response)["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, status)
    error = document["components"]["schemas"]["Error"]
    assert set(error["required"]) == {"success", "error", "message", "details"}
    assert error["properties"]["success"]["enum"] == [False]


def test_headers_and_limits_are_documented(document, make_app):
    send = document["paths"]["/api/send-message"]["post"]
    header = next(p for p in send["parameters"] if p["name"] == "session-id")
    assert header["in"] == "header" and "nullable" not in header["schema"]
    assert "session-id" in send["responses"]["200"]["headers"]
    key = next(p for p in send["parameters"] if p["name"] == "Idempotency-Key")
    assert key["in"] == "header" and "nullable" not in key["schema"]
    assert (key["schema"]["minLength"], key["schema"]["maxLength"]) == (16, 255)
    assert "Idempotent-Replayed" in send["responses"]["200"]["headers"]
    assert "Retry-After" in send["responses"]["409"]["headers"]
    assert "Retry-After" in send["responses"]["429"]["headers"]
    assert "Retry-After" in send["responses"]["503"]["headers"]
    question = document["components"]["schemas"]["SendMessage"]["properties"]["question"]
    assert question["maxLength"] == 4000
    history = document["paths"]["/api/session/{session_id}/history"]["get"]
    assert {p["name"] for p in history["parameters"]} == {"limit", "before"}
    message = document["components"]["schemas"]["Message"]
    assert "id" in message["required"] and message["properties"]["id"]["minimum"] == 0
    assert "feedback" in message["properties"] and "degraded" in message["properties"]
    feedback = document["paths"][FEEDBACK]
    message_id = next(p for p in feedback["parameters"] if p["name"] == "message_id")
    assert message_id["schema"]["type"] == "integer" and message_id["schema"]["minimum"] == 0
    assert "not_an_answer" in feedback["post"]["responses"]["422"]["description"]
    assert "message_not_found" in feedback["post"]["responses"]["404"]["description"]
    comment = document["components"]["schemas"]["Feedback"]["properties"]["comment"]
    assert comment["maxLength"] == 4000  # MAX_QUESTION_CHARS, like a question

    small = make_app({"MAX_QUESTION_CHARS": "50"}).test_client().get("/api/openapi.json")
    schemas = small.get_json()["components"]["schemas"]
    assert schemas["SendMessage"]["properties"]["question"]["maxLength"] == 50
    assert schemas["Feedback"]["properties"]["comment"]["maxLength"] == 50


def test_docs_page_renders_redoc_on_the_document(client):
    response = client.get("/api/docs")
    assert response.status_code == 200 and response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert '<redoc spec-url="/api/openapi.json"' in page
    assert '<script src="https://cdn.jsdelivr.net/npm/redoc@' in page
    assert "<script>" not in page  # no inline script: the page's CSP forbids it


def test_error_answers_the_fuzzer_cannot_reach_still_conform(make_app):
    """413, 429 and 503 need a big body, tight limits or a dead Redis: made here on purpose."""
    from tests.support.processes import free_port

    app = make_app({"RATE_LIMIT_ENABLED": "1", "RATE_LIMIT_CREATE": "1/minute"})
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    client = app.test_client()

    client.post("/api/session/create")
    limited = client.post("/api/session/create")
    assert limited.status_code == 429
    schema["/api/session/create"]["POST"].validate_response(limited)

    too_big = client.post(
        "/api/send-message", data="x" * (70 * 1024), content_type="application/json"
    )
    assert too_big.status_code == 413
    schema["/api/send-message"]["POST"].validate_response(too_big)

    nobody = f"redis://127.0.0.1:{free_port()}/0"  # built as in production: fast failure
    down = make_app({"REDIS_URL": nobody}, client=connect(load_settings({"REDIS_URL": nobody})))
    down = down.test_client()
    for path, method, response in [
        ("/api/session/create", "POST", down.post("/api/session/create")),
        ("/api/send-message", "POST", down.post("/api/send-message", json={"question": "q"})),
        (
            "/api/session/{session_id}/validate",
            "GET",
            down.get(f"/api/session/{uuid.uuid4()}/validate"),
        ),
    ]:
        assert response.status_code == 503, path
        schema[path][method].validate_response(response)
