"""Reloading the knowledge base without a restart: version bump, swap, failures, the CLI.

The app is the real one (``create_app``, the real generator over a temporary
KNOWLEDGE_DIR) on fakeredis; polls are driven by hand (``reloader.check()``) so every
step is deterministic, except in the one test of the polling thread itself.
"""

from __future__ import annotations

import json
import shutil
import time

import pytest

from chatbot_sessions import create_app
from chatbot_sessions.extensions import close_app, resources
from chatbot_sessions.replies.reloading import stale_after
from chatbot_sessions.sessions.keys import KNOWLEDGE_VERSION_KEY, KNOWLEDGE_WORKERS_KEY

OLD = {"ferries.md": "# Ferries\n\n## Timetable\n\nThe ferry to the island leaves at seven.\n"}
NEW = {"volcano.md": "# Volcano\n\n## Eruptions\n\nThe volcano erupts every spring.\n"}
# Any Redis URL makes the app "not embedded"; the client used is the injected fakeredis.
WITH_REDIS = {"REDIS_URL": "redis://127.0.0.1:1/0", "RATE_LIMIT_ENABLED": "0"}


@pytest.fixture
def kb_dir(make_kb):
    return make_kb(OLD)


@pytest.fixture
def kb_app(kb_dir, fake_redis):
    app = create_app({**WITH_REDIS, "KNOWLEDGE_DIR": str(kb_dir)}, redis_client=fake_redis)
    yield app
    close_app(app)


def replace_files(root, files: dict[str, str]) -> None:
    for path in root.iterdir():
        path.unlink()
    for name, text in files.items():
        (root / name).write_text(text)


def cited(app, question: str) -> list[str]:
    reply = app.test_client().post("/api/send-message", json={"question": question})
    assert reply.status_code == 200, reply.get_json()
    return [source["source"] for source in reply.get_json()["sources"]]


def test_a_version_bump_makes_the_next_poll_serve_the_changed_folder(kb_app, kb_dir, fake_redis):
    reloader = resources(kb_app).reloader
    assert cited(kb_app, "When does the ferry leave?") == ["ferries.md"]
    reloader.check()  # nothing reloaded yet: nothing rebuilt
    assert reloader.served.version == 0

    replace_files(kb_dir, NEW)
    assert cited(kb_app, "When does the volcano erupt?") == []  # no poll yet: the old index
    result = kb_app.test_cli_runner().invoke(args=["kb", "reload"])
    assert result.exit_code == 0, result.output
    assert "Knowledge base version 1 requested." in result.output
    assert fake_redis.get(KNOWLEDGE_VERSION_KEY) == "1"

    reloader.check()
    assert cited(kb_app, "When does the volcano erupt?") == ["volcano.md"]
    assert cited(kb_app, "When does the ferry leave?") == []
    assert (reloader.served.version, reloader.served.documents) == (1, 1)
    report = json.loads(fake_redis.hget(KNOWLEDGE_WORKERS_KEY, reloader.worker))
    assert report["version"] == 1 and report["error"] is None
    assert 0 < fake_redis.ttl(KNOWLEDGE_WORKERS_KEY) <= stale_after(reloader.interval)


def test_a_failed_rebuild_keeps_the_old_index_reports_the_error_and_waits_for_a_new_version(
    kb_app, kb_dir
):
    reloader = resources(kb_app).reloader
    runner = kb_app.test_cli_runner()
    moved = kb_dir.with_name("elsewhere")
    shutil.move(kb_dir, moved)
    runner.invoke(args=["kb", "reload"])
    builds = []
    rebuild = reloader.generator.rebuild
    reloader.generator.rebuild = lambda: builds.append(1) or rebuild()

    reloader.check()
    assert cited(kb_app, "When does the ferry leave?") == ["ferries.md"]
    assert reloader.served.version == 0 and reloader.served.failed_version == 1
    assert "KNOWLEDGE_DIR" in reloader.served.error
    reloader.check()
    assert len(builds) == 1  # the same version is not rebuilt every second
    stats = runner.invoke(args=["kb", "stats"])
    assert stats.exit_code == 0, stats.output
    assert "version 1 failed:" in stats.output and "KNOWLEDGE_DIR" in stats.output

    shutil.move(moved, kb_dir)  # the operator fixes the folder and reloads again
    replace_files(kb_dir, NEW)
    runner.invoke(args=["kb", "reload"])
    reloader.check()
    assert cited(kb_app, "When does the volcano erupt?") == ["volcano.md"]
    assert reloader.served.version == 2 and reloader.served.error is None


def test_a_redis_outage_leaves_the_index_serving_and_the_next_poll_catches_up(
    kb_app, kb_dir, fake_redis
):
    reloader = resources(kb_app).reloader
    kb_app.test_cli_runner().invoke(args=["kb", "reload"])
    server = fake_redis.connection_pool.connection_kwargs["server"]
    server.connected = False
    replace_files(kb_dir, NEW)
    reloader.check()  # does not raise
    assert reloader.served.version == 0
    server.connected = True
    reloader.check()
    assert reloader.served.version == 1
    assert cited(kb_app, "When does the volcano erupt?") == ["volcano.md"]


def test_start_up_without_redis_decides_on_the_first_poll(kb_dir, fake_redis):
    fake_redis.set(KNOWLEDGE_VERSION_KEY, 3)
    server = fake_redis.connection_pool.connection_kwargs["server"]
    server.connected = False
    app = create_app({**WITH_REDIS, "KNOWLEDGE_DIR": str(kb_dir)}, redis_client=fake_redis)
    try:
        reloader = resources(app).reloader
        assert reloader.served.version is None  # built without knowing which version
        server.connected = True
        reloader.check()  # version 3 was asked for before: rebuild, to be sure
        assert reloader.served.version == 3 and reloader.served.built_at > 0
    finally:
        close_app(app)


def test_stats_lists_every_live_worker_and_drops_dead_ones(kb_app, fake_redis):
    reloader = resources(kb_app).reloader
    reloader.check()
    gone = json.dumps({"version": 0, "reported_at": time.time() - 3600})
    fake_redis.hset(KNOWLEDGE_WORKERS_KEY, "otherhost:99", gone)

    result = kb_app.test_cli_runner().invoke(args=["kb", "stats"])
    assert result.exit_code == 0, result.output
    assert "Documents:           1" in result.output  # the local stats, as before
    assert "Reload version:      0" in result.output
    assert "Workers:             1 live" in result.output
    rows = [line.split() for line in result.output.splitlines() if line.startswith("  ")]
    assert rows[0][:4] == ["WORKER", "VERSION", "DOCUMENTS", "CHUNKS"]
    assert rows[1][:4] == [reloader.worker, "0", "1", "1"] and rows[1][-1] == "-"
    assert not fake_redis.hexists(KNOWLEDGE_WORKERS_KEY, "otherhost:99")


def test_the_polling_thread_swaps_and_reload_wait_sees_it(kb_dir, fake_redis):
    config = {**WITH_REDIS, "KNOWLEDGE_DIR": str(kb_dir), "KNOWLEDGE_POLL_INTERVAL": "0.1"}
    app = create_app(config, redis_client=fake_redis)
    reloader = resources(app).reloader
    try:
        resources(app).start()  # what each gunicorn worker does once it has the app
        replace_files(kb_dir, NEW)
        result = app.test_cli_runner().invoke(args=["kb", "reload", "--wait", "10"])
        assert result.exit_code == 0, result.output
        assert "All 1 live workers serve version 1." in result.output
        assert cited(app, "When does the volcano erupt?") == ["volcano.md"]
    finally:
        close_app(app)
    assert not fake_redis.hexists(KNOWLEDGE_WORKERS_KEY, reloader.worker)  # withdrawn on exit


def test_reload_wait_names_a_worker_that_cannot_rebuild(kb_dir, fake_redis):
    config = {**WITH_REDIS, "KNOWLEDGE_DIR": str(kb_dir), "KNOWLEDGE_POLL_INTERVAL": "0.1"}
    app = create_app(config, redis_client=fake_redis)
    try:
        resources(app).start()
        shutil.rmtree(kb_dir)
        result = app.test_cli_runner().invoke(args=["kb", "reload", "--wait", "10"])
        assert result.exit_code == 1, result.output
        assert "rebuild failed on" in result.output and "KNOWLEDGE_DIR" in result.output
        assert cited(app, "When does the ferry leave?") == ["ferries.md"]
    finally:
        close_app(app)


def test_reload_wait_times_out_when_a_worker_does_not_poll(kb_app):
    resources(kb_app).reloader.check()  # reported, but no thread polls afterwards
    result = kb_app.test_cli_runner().invoke(args=["kb", "reload", "--wait", "0.3"])
    assert result.exit_code == 1
    assert "not every worker serves version 1 after 0.3s" in result.output


def test_reload_is_refused_with_the_embedded_store(kb_dir):
    app = create_app({"KNOWLEDGE_DIR": str(kb_dir), "RATE_LIMIT_ENABLED": "0"})
    try:
        result = app.test_cli_runner().invoke(args=["kb", "reload"])
        assert result.exit_code == 1 and "restart the server" in result.output
        stats = app.test_cli_runner().invoke(args=["kb", "stats"])
        assert stats.exit_code == 0 and "not tracked (embedded store" in stats.output
    finally:
        close_app(app)
