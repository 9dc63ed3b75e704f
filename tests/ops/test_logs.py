"""JSON request logs: one line per request, request ids, no message content by default."""

from __future__ import annotations

import logging
import random
from datetime import UTC, datetime

import pytest

from chatbot_sessions import extensions
from chatbot_sessions.ops import logs
from chatbot_sessions.sessions.ids import new_session_id


def access_lines(records: list[dict]) -> list[dict]:
    return [r for r in records if r.get("logger") == "chatbot_sessions.access"]


def test_one_json_line_per_request_with_template_and_timing(client, json_logs):
    json_logs()
    sid = client.post("/api/session/create").get_json()["sessionId"]
    response = client.get(f"/api/session/{sid}/history")
    records = json_logs()
    lines = access_lines(records)
    assert len(lines) == 2
    line = lines[1]
    assert line["method"] == "GET" and line["status"] == 200
    assert line["path"] == "/api/session/<session_id>/history"
    assert isinstance(line["duration_ms"], float) and 0 <= line["duration_ms"] < 5000
    assert line["request_id"] == response.headers["X-Request-ID"]
    assert line["level"] == "INFO" and line["time"].endswith("+00:00")
    assert all(sid not in str(r) for r in records), "raw paths (session ids) must not be logged"


def test_a_sane_client_request_id_is_kept_and_returned(client, json_logs):
    json_logs()
    response = client.get("/healthz", headers={"X-Request-ID": "edge-42.abc:1"})
    assert response.headers["X-Request-ID"] == "edge-42.abc:1"
    assert access_lines(json_logs())[0]["request_id"] == "edge-42.abc:1"


@pytest.mark.parametrize(
    "bad", ["x" * 129, "has space", 'quote"d', "tab\there", "semi;colon", "{json}", "", "ünï"]
)
def test_an_insane_request_id_is_replaced_by_a_fresh_one(client, bad):
    response = client.get("/healthz", headers={"X-Request-ID": bad})
    returned = response.headers["X-Request-ID"]
    assert returned != bad and len(returned) == 32 and int(returned, 16) >= 0


def test_ids_are_unique_per_request_and_on_error_responses(client):
    ids = {client.get(f"/api/session/{new_session_id()}/history").headers["X-Request-ID"]}
    ids.add(client.get("/nowhere").headers["X-Request-ID"])
    ids.add(client.post("/api/send-message", data="not json").headers["X-Request-ID"])
    assert len(ids) == 3


def test_records_logged_during_a_request_carry_its_id(make_app, redis_down, json_logs):
    client = make_app().test_client()
    json_logs()
    response = client.post("/api/session/create", headers={"X-Request-ID": "trace-me"})
    assert response.status_code == 503
    records = [r for r in json_logs() if r.get("request_id") == "trace-me"]
    loggers = {r["logger"] for r in records}
    assert {"chatbot_sessions.http_errors", "chatbot_sessions.access"} <= loggers


SECRET = "my card number is 4111-1111"


def test_message_content_is_not_logged_by_default(make_app, json_logs):
    client = make_app({"LOG_LEVEL": "DEBUG"}).test_client()
    json_logs()
    logging.getLogger("chatbot_sessions").debug("debug works")  # DEBUG lines do get through
    client.post("/api/send-message", json={"question": SECRET})
    records = json_logs()
    assert any(r["message"] == "debug works" for r in records)
    assert access_lines(records), "the request was logged"
    assert all(SECRET not in str(r) for r in records)


def test_message_content_is_logged_when_enabled(make_app, json_logs):
    client = make_app({"LOG_MESSAGE_CONTENT": "1"}).test_client()
    json_logs()
    client.post("/api/send-message", json={"question": SECRET})
    line = access_lines(json_logs())[0]
    assert line["question"] == SECRET and line["reply"] == f"answer to: {SECRET}"


def test_log_level_setting_filters(make_app, json_logs):
    make_app({"LOG_LEVEL": "WARNING"}).test_client().get("/healthz")
    assert access_lines(json_logs()) == []


def test_a_line_orjson_cannot_write_is_still_one_json_line():
    # A lone surrogate (JSON may spell one) and an arbitrary object in ``extra``.
    import json

    from chatbot_sessions.ops.logs import json_formatter

    record = logging.makeLogRecord({"msg": "odd", "echo": "a\ud800b", "thing": object()})
    line = json_formatter().format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["echo"] == "a\ud800b" and parsed["thing"].startswith("<object object")


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_the_direct_line_is_the_line_logging_would_write(client, json_logs, monkeypatch):
    # The service's own set-up writes access lines without a LogRecord (ops/logs.py);
    # a filter on the access logger forces the ordinary path, which must give the same line.
    access, root = logging.getLogger("chatbot_sessions.access"), logging.getLogger()
    # pytest's own capture handlers sit on the root logger during a test: set them aside.
    ours = [h for h in root.handlers if h.get_name() == "chatbot_sessions.json"]
    monkeypatch.setattr(root, "handlers", ours)
    handled: list[logging.LogRecord] = []
    monkeypatch.setattr(access, "handle", handled.append)
    json_logs()
    client.get("/healthz", headers={"X-Request-ID": "direct"})
    assert handled == [], "the service's own set-up writes the line without a LogRecord"
    monkeypatch.delattr(access, "handle")
    seen: list[str] = []
    access.addFilter(lambda record: seen.append(record.getMessage()) or True)
    try:
        client.get("/healthz", headers={"X-Request-ID": "through-logging"})
    finally:
        access.filters.clear()
    direct, ordinary = access_lines(json_logs())
    assert seen == ["GET /healthz 200"], "the second line went through logging"
    assert list(direct) == list(ordinary)  # same fields, same order
    varying = {"request_id", "duration_ms", "time"}
    assert {k: v for k, v in direct.items() if k not in varying} == {
        k: v for k, v in ordinary.items() if k not in varying
    }
    assert direct["message"] == "GET /healthz 200" and direct["time"].endswith("+00:00")


def test_an_extra_handler_still_gets_every_access_record(client, json_logs):
    # An operator's (or a test's) own handler beside ours: records go through logging again.
    extra = _Collect()
    logging.getLogger().addHandler(extra)
    try:
        json_logs()
        client.get("/healthz")
    finally:
        logging.getLogger().removeHandler(extra)
    assert [r.getMessage() for r in extra.records if r.name.endswith("access")] == [
        "GET /healthz 200"
    ]
    assert len(access_lines(json_logs())) == 1, "and our handler wrote the line once"


def test_line_times_are_the_utc_iso_datetime_would_write():
    rng = random.Random(7)
    stamps = [rng.uniform(0, 4e9) for _ in range(2000)] + [1_700_000_000.0, 1_700_000_000.9999996]
    for at in sorted(stamps) + stamps:  # in order (the per-second memo reused) and not
        expected = datetime.fromtimestamp(at, UTC).isoformat()
        if "." not in expected:  # a whole second: datetime leaves the fraction out
            expected = expected.replace("+00:00", ".000000+00:00")
        assert logs.utc_timestamp(at) == expected, at


def test_a_failure_to_record_never_stops_the_answer(make_app, json_logs, monkeypatch):
    app = make_app()
    metrics = extensions.resources(app).metrics

    def broken(*_args):
        raise RuntimeError("metrics bug")

    monkeypatch.setattr(metrics, "observe_request", broken)
    json_logs()
    response = app.test_client().post("/api/session/create")
    assert response.status_code == 201 and response.get_json()["success"] is True
    assert len(response.headers["X-Request-ID"]) == 32
    errors = [r for r in json_logs() if r.get("message") == "could not record the request"]
    assert len(errors) == 1 and "metrics bug" in errors[0]["exc_info"]
