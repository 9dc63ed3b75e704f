"""GET /api/admin/kb and POST /api/admin/kb/reload, on a real Redis of our own.

The app is the real one (``create_app``, the real generator over a temporary KNOWLEDGE_DIR,
its reloader); polls are driven by hand (``reloader.check()``) unless a test starts the
polling thread, as each gunicorn worker does. The fuzzer (tests/contract) cannot get past the
admin token, so the answers it never sees are checked against the document here.
"""

from __future__ import annotations

import shutil
import time

import pytest
import schemathesis

from chatbot_sessions import create_app
from chatbot_sessions.config import load_settings
from chatbot_sessions.extensions import close_app, resources
from chatbot_sessions.sessions.connection import connect
from chatbot_sessions.sessions.keys import KNOWLEDGE_VERSION_KEY
from chatbot_sessions.timestamps import ms_from_iso
from tests.ops.conftest import ADMIN_TOKEN
from tests.support.metrics import samples, value
from tests.support.processes import free_port

pytestmark = pytest.mark.redis

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
OLD = {"ferries.md": "# Ferries\n\n## Timetable\n\nThe ferry to the island leaves at seven.\n"}
NEW = {"volcano.md": "# Volcano\n\n## Eruptions\n\nThe volcano erupts every spring.\n"}
RELOAD = "/api/admin/kb/reload"


@pytest.fixture
def kb_dir(tmp_path):
    root = tmp_path / "kb"
    root.mkdir()
    write(root, OLD)
    return root


def write(root, files: dict[str, str]) -> None:
    for path in root.iterdir():
        path.unlink()
    for name, text in files.items():
        (root / name).write_text(text)


@pytest.fixture
def make_kb_app(kb_dir, private_redis_server, private_redis):
    """Factory: the service over ``kb_dir`` and our own Redis (flushed by ``private_redis``)."""
    apps = []

    def make(admin_token: str | None = ADMIN_TOKEN, **overrides: str):
        config = {
            "REDIS_URL": private_redis_server.url,
            "KNOWLEDGE_DIR": str(kb_dir),
            "RATE_LIMIT_ENABLED": "0",
            **({} if admin_token is None else {"ADMIN_TOKEN": admin_token}),
            **overrides,
        }
        app = create_app(config, redis_client=private_redis)
        apps.append(app)
        return app

    yield make
    for app in apps:
        close_app(app)


@pytest.fixture
def document_of():
    """The app's own OpenAPI document, to hold answers the fuzzer cannot reach to it."""
    return lambda app: schemathesis.openapi.from_wsgi("/api/openapi.json", app)


def cited(client, question: str) -> list[str]:
    reply = client.post("/api/send-message", json={"question": question})
    assert reply.status_code == 200, reply.get_json()
    return [source["source"] for source in reply.get_json()["sources"]]


@pytest.mark.parametrize("token", [None, ""])
def test_without_admin_token_both_routes_are_unknown_and_nothing_is_bumped(
    make_kb_app, private_redis, token
):
    client = make_kb_app(admin_token=token).test_client()
    unknown = client.get("/api/admin/nothing-here").get_json()
    for response in (
        client.get("/api/admin/kb", headers=AUTH),
        client.post(RELOAD, headers=AUTH),
        client.post(f"{RELOAD}?wait=1", headers=AUTH),
    ):
        assert response.status_code == 404
        assert response.get_json() == unknown
    assert private_redis.get(KNOWLEDGE_VERSION_KEY) is None


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {ADMIN_TOKEN}"}],
)
def test_a_wrong_token_is_401_and_bumps_nothing(make_kb_app, private_redis, headers):
    client = make_kb_app().test_client()
    for response in (
        client.get("/api/admin/kb", headers=headers),
        client.post(RELOAD, headers=headers),
        client.post(f"{RELOAD}?wait=nonsense", headers=headers),  # the token comes first
    ):
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert response.get_json()["error"] == "unauthorized"
    assert private_redis.get(KNOWLEDGE_VERSION_KEY) is None


def test_reload_answers_202_with_each_new_version_and_the_state_follows(
    make_kb_app, private_redis, document_of
):
    app = make_kb_app()
    client, document = app.test_client(), document_of(app)
    first = client.post(RELOAD, headers=AUTH)
    assert first.status_code == 202
    assert first.get_json() == {"success": True, "version": 1}
    document[RELOAD]["POST"].validate_response(first)
    second = client.post(f"{RELOAD}?wait=0", headers=AUTH)  # 0: do not wait
    assert (second.status_code, second.get_json()["version"]) == (202, 2)
    assert private_redis.get(KNOWLEDGE_VERSION_KEY) == "2"

    state = client.get("/api/admin/kb", headers=AUTH)
    assert state.status_code == 200
    assert state.get_json() == {"success": True, "version": 2, "workers": []}  # no poll yet
    document["/api/admin/kb"]["GET"].validate_response(state)


def test_state_lists_what_each_live_worker_serves_as_flask_kb_stats_does(make_kb_app, document_of):
    app = make_kb_app()
    reloader = resources(app).reloader
    before = time.time()
    reloader.check()
    response = app.test_client().get("/api/admin/kb", headers=AUTH)
    document_of(app)["/api/admin/kb"]["GET"].validate_response(response)
    body = response.get_json()
    assert body["version"] == 0
    (worker,) = body["workers"]
    assert worker["worker"] == reloader.worker
    assert (worker["version"], worker["documents"], worker["chunks"]) == (0, 1, 1)
    assert worker["error"] is None and worker["failedVersion"] is None
    assert ms_from_iso(worker["checkedAt"]) >= int(before * 1000) - 1
    assert ms_from_iso(worker["builtAt"]) <= ms_from_iso(worker["checkedAt"])

    cli = app.test_cli_runner().invoke(args=["kb", "stats"])
    row = next(line.split() for line in cli.output.splitlines() if reloader.worker in line)
    assert row[1:4] == ["0", "1", "1"]  # the same numbers as the CLI's worker table


def test_wait_answers_200_once_the_polling_worker_serves_the_new_folder(
    make_kb_app, kb_dir, document_of
):
    app = make_kb_app(KNOWLEDGE_POLL_INTERVAL="0.1")
    client = app.test_client()
    resources(app).start()  # what each gunicorn worker does once it has the app
    write(kb_dir, NEW)
    response = client.post(f"{RELOAD}?wait=10", headers=AUTH)
    assert response.status_code == 200, response.get_json()
    document_of(app)[RELOAD]["POST"].validate_response(response)
    body = response.get_json()
    assert body["version"] == 1
    (worker,) = body["workers"]
    assert (worker["worker"], worker["version"]) == (resources(app).reloader.worker, 1)
    assert cited(client, "When does the volcano erupt?") == ["volcano.md"]


def test_wait_answers_504_with_every_worker_state_when_a_worker_does_not_get_there(
    make_kb_app, private_redis, document_of
):
    app = make_kb_app()
    reloader = resources(app).reloader
    reloader.check()  # reported, but no thread polls afterwards
    started = time.monotonic()
    response = app.test_client().post(f"{RELOAD}?wait=0.5", headers=AUTH)
    assert 0.5 <= time.monotonic() - started < 3
    assert response.status_code == 504
    document_of(app)[RELOAD]["POST"].validate_response(response)
    body = response.get_json()
    assert body["error"] == "reload_timeout"
    assert f"not every worker serves version 1 after 0.5s: {reloader.worker}" in body["message"]
    assert body["details"]["version"] == 1
    assert [(w["worker"], w["version"]) for w in body["details"]["workers"]] == [
        (reloader.worker, 0)
    ]
    assert private_redis.get(KNOWLEDGE_VERSION_KEY) == "1"  # the reload stays requested
    reloader.check()
    assert reloader.served.version == 1


def test_wait_answers_409_as_soon_as_a_worker_cannot_rebuild(make_kb_app, kb_dir, document_of):
    app = make_kb_app(KNOWLEDGE_POLL_INTERVAL="0.1")
    client = app.test_client()
    resources(app).start()
    shutil.rmtree(kb_dir)
    started = time.monotonic()
    response = client.post(f"{RELOAD}?wait=20", headers=AUTH)
    assert time.monotonic() - started < 10  # not the whole wait
    assert response.status_code == 409
    document_of(app)[RELOAD]["POST"].validate_response(response)
    body = response.get_json()
    assert body["error"] == "reload_failed" and "KNOWLEDGE_DIR" in body["message"]
    (worker,) = body["details"]["workers"]
    assert (worker["version"], worker["failedVersion"]) == (0, 1)
    assert "KNOWLEDGE_DIR" in worker["error"]
    assert cited(client, "When does the ferry leave?") == ["ferries.md"]  # the old index serves


@pytest.mark.parametrize("wait", ["-1", "30.5", "abc", "nan", "inf", ""])
def test_a_bad_wait_is_the_standard_422_and_bumps_nothing(make_kb_app, private_redis, wait):
    client = make_kb_app().test_client()
    response = client.post(f"{RELOAD}?wait={wait}", headers=AUTH)
    assert response.status_code == 422
    body = response.get_json()
    assert body["success"] is False and body["error"] == "validation_error"
    assert "wait" in body["details"]["fields"]
    assert private_redis.get(KNOWLEDGE_VERSION_KEY) is None


def test_the_gauge_shows_the_version_served_after_a_reload(make_kb_app):
    app = make_kb_app()
    client = app.test_client()
    reloader = resources(app).reloader
    assert ("chatbot_knowledge_version", frozenset()) not in samples(client)  # not serving yet
    resources(app).start()  # a serving process shows the version it serves from the start
    resources(app).reloader.stop()  # polls by hand from here on
    assert value(samples(client), "chatbot_knowledge_version") == 0

    assert client.post(RELOAD, headers=AUTH).status_code == 202
    assert value(samples(client), "chatbot_knowledge_version") == 0  # not swapped yet
    reloader.check()
    assert value(samples(client), "chatbot_knowledge_version") == 1


def test_a_failed_rebuild_leaves_the_gauge_at_the_version_still_served(make_kb_app, kb_dir):
    app = make_kb_app()
    client = app.test_client()
    reloader = resources(app).reloader
    client.post(RELOAD, headers=AUTH)
    reloader.check()
    shutil.rmtree(kb_dir)
    client.post(RELOAD, headers=AUTH)
    reloader.check()
    assert reloader.served.failed_version == 2
    assert value(samples(client), "chatbot_knowledge_version") == 1


def test_redis_down_is_the_standard_503(document_of):
    nobody = f"redis://127.0.0.1:{free_port()}/0"  # built as in production: fast failure
    app = create_app(
        {"REDIS_URL": nobody, "ADMIN_TOKEN": ADMIN_TOKEN, "RATE_LIMIT_ENABLED": "0"},
        redis_client=connect(load_settings({"REDIS_URL": nobody})),
    )
    try:
        client, document = app.test_client(), document_of(app)
        for path, method, response in [
            ("/api/admin/kb", "GET", client.get("/api/admin/kb", headers=AUTH)),
            (RELOAD, "POST", client.post(RELOAD, headers=AUTH)),
            (RELOAD, "POST", client.post(f"{RELOAD}?wait=5", headers=AUTH)),
        ]:
            assert response.status_code == 503, path
            assert response.get_json()["error"] == "store_unavailable"
            assert response.headers["Retry-After"] == "1"
            document[path][method].validate_response(response)
    finally:
        close_app(app)


def test_the_endpoint_reaches_the_embedded_store_which_the_cli_cannot(kb_dir):
    """Without Redis the version lives in the server process: the request is in there."""
    config = {
        "KNOWLEDGE_DIR": str(kb_dir),
        "KNOWLEDGE_POLL_INTERVAL": "0.1",
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "RATE_LIMIT_ENABLED": "0",
    }
    app = create_app(config)
    try:
        resources(app).start()
        write(kb_dir, NEW)
        refused = app.test_cli_runner().invoke(args=["kb", "reload"])
        assert refused.exit_code == 1 and "POST /api/admin/kb/reload" in refused.output
        response = app.test_client().post(f"{RELOAD}?wait=10", headers=AUTH)
        assert response.status_code == 200, response.get_json()
        assert cited(app.test_client(), "When does the volcano erupt?") == ["volcano.md"]
    finally:
        close_app(app)
