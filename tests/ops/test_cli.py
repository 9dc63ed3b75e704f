"""``flask sessions ...``: every command, its exit codes, and what it leaves in Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from chatbot_sessions.domain import Reply
from chatbot_sessions.extensions import resources
from chatbot_sessions.sessions.ids import new_session_id
from chatbot_sessions.sessions.keys import session_keys
from tests.support.processes import REPO_ROOT

COMMANDS = [
    "count",
    "ttl-histogram",
    "stats",
    "memory",
    "show",
    "export",
    "import",
    "warm",
    "persist",
    "expire",
    "feedback",
    "purge",
]


@pytest.fixture
def cli(make_app, private_redis):
    """Invoke ``flask sessions ...`` in-process on an app over our own Redis."""
    app = make_app({"SESSION_TTL": "1000"}, client=private_redis)

    def run(*args: str, **kwargs):
        return app.test_cli_runner().invoke(args=["sessions", *args], **kwargs)

    run.app = app
    run.http = app.test_client()
    return run


def create(cli, turns: int = 0) -> str:
    sid = cli.http.post("/api/session/create").get_json()["sessionId"]
    for n in range(turns):
        cli.http.post("/api/send-message", json={"question": f"q{n}"}, headers={"session-id": sid})
    return sid


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(runner, command):
    result = runner.invoke(args=["sessions", command, "--help"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Usage: ") and "sessions " + command in result.stdout


def test_group_help_lists_every_command(runner):
    result = runner.invoke(args=["sessions", "--help"])
    assert result.exit_code == 0
    assert all(f"  {command} " in result.stdout for command in COMMANDS)


@pytest.mark.redis
def test_count_histogram_and_memory(cli, private_redis):
    sids = [create(cli) for _ in range(3)]
    private_redis.persist(session_keys(sids[0])[0])
    private_redis.set("not-a-session", "1")

    count = cli("count")
    assert count.exit_code == 0 and count.stdout == "3\n"

    table = cli("ttl-histogram")
    assert table.exit_code == 0
    assert "<= 1h  2" in table.stdout and "no expiry  1" in table.stdout
    data = json.loads(cli("ttl-histogram", "--json").stdout)
    assert data["sessions"] == 3 and data["persistent"] == 1

    memory = json.loads(cli("memory", "--json").stdout)
    assert memory["usedMemory"] > 0 and len(memory["nodes"]) == 1
    assert "used_memory_human" in cli("memory").stdout


@pytest.mark.redis
def test_long_scans_report_progress_on_stderr(cli, private_redis):
    pipe = private_redis.pipeline(transaction=False)
    for _ in range(2100):
        pipe.hset(session_keys(new_session_id())[0], mapping={"createdAt": 1, "seq": 0})
    pipe.execute()
    result = cli("count")
    assert result.stdout == "2100\n"
    assert "sessions scanned: 1000" in result.stderr and "sessions scanned: 2000" in result.stderr
    purge = cli("purge", "--yes")
    assert "keys deleted:" in purge.stderr and purge.stdout == "deleted 2100 key(s)\n"


@pytest.mark.redis
def test_show_prints_the_session_without_touching_its_ttl(cli, private_redis):
    sid = create(cli, turns=2)
    private_redis.expire(session_keys(sid)[0], 50)
    result = cli("show", sid)
    assert result.exit_code == 0
    shown = json.loads(result.stdout)
    assert (
        shown["sessionId"] == sid
        and [m["type"] for m in shown["messages"]]
        == [
            "user",
            "assistant",
        ]
        * 2
    )
    assert private_redis.ttl(session_keys(sid)[0]) <= 50

    missing = cli("show", new_session_id())
    assert missing.exit_code == 1 and "no such session" in missing.stderr


@pytest.mark.redis
def test_export_then_import_round_trips_exactly(cli, private_redis, tmp_path):
    sid = create(cli, turns=3)
    meta, messages, *_ = session_keys(sid)
    before = (private_redis.hgetall(meta), private_redis.lrange(messages, 0, -1))
    path = tmp_path / "session.json"
    assert cli("export", sid, "-o", str(path)).exit_code == 0

    private_redis.delete(meta, messages)
    result = cli("import", str(path))
    assert result.exit_code == 0 and f"imported {sid} (6 messages)" in result.stdout
    assert (private_redis.hgetall(meta), private_redis.lrange(messages, 0, -1)) == before
    exported = json.loads(path.read_text())
    assert abs(private_redis.pttl(meta) - exported["ttlMs"]) < 2000

    again = json.loads(cli("export", sid).stdout)  # stdout by default
    assert {**again, "ttlMs": 0} == {**exported, "ttlMs": 0}


@pytest.mark.redis
def test_import_refuses_to_overwrite_without_replace(cli, private_redis, tmp_path):
    sid = create(cli, turns=1)
    path = tmp_path / "s.json"
    cli("export", sid, "-o", str(path))
    create_more = cli.http.post(
        "/api/send-message", json={"question": "later"}, headers={"session-id": sid}
    )
    assert create_more.status_code == 200

    refused = cli("import", str(path))
    assert refused.exit_code == 1 and "--replace" in refused.stderr
    assert private_redis.llen(session_keys(sid)[1]) == 4
    replaced = cli("import", str(path), "--replace")
    assert replaced.exit_code == 0 and private_redis.llen(session_keys(sid)[1]) == 2


@pytest.mark.redis
@pytest.mark.parametrize(
    "content, complaint",
    [
        ("{not json", "is not JSON"),
        ('{"format": "other"}', "is not a session export"),
        (
            '{"format": "chatbot-sessions/session-v1", "sessionId": "../../etc", '
            '"createdAt": "2024-01-01T00:00:00Z", "lastActivity": "2024-01-01T00:00:00Z", '
            '"messages": []}',
            "canonical UUID",
        ),
        (
            json.dumps(
                {
                    "format": "chatbot-sessions/session-v1",
                    "sessionId": new_session_id(),
                    "createdAt": "yesterday",
                    "lastActivity": "2024-01-01T00:00:00Z",
                    "messages": [{"type": "robot", "content": "x", "timestamp": "x"}],
                }
            ),
            "ISO 8601",
        ),
        (
            json.dumps(
                {
                    "format": "chatbot-sessions/session-v1",
                    "sessionId": new_session_id(),
                    "createdAt": "2024-01-01T00:00:00Z",
                    "lastActivity": "2024-01-01T00:00:00Z",
                    "seq": 0,
                    "messages": [
                        {"type": "user", "content": "x", "timestamp": "2024-01-01T00:00:00Z"}
                    ],
                }
            ),
            "at least the number of messages",
        ),
    ],
)
def test_import_rejects_bad_files_and_writes_nothing(
    cli, private_redis, tmp_path, content, complaint
):
    path = tmp_path / "bad.json"
    path.write_text(content)
    result = cli("import", str(path))
    assert result.exit_code == 1 and complaint in result.stderr
    assert "Traceback" not in result.output
    assert private_redis.dbsize() == 0


@pytest.mark.redis
def test_warm_persist_and_expire_act_on_every_key(cli, private_redis):
    sid, other = create(cli, turns=1), create(cli, turns=1)
    resources(cli.app).store.rate(sid, 1, "up")  # so the session has all four keys
    keys = session_keys(sid)

    assert cli("expire", sid, "30").exit_code == 0
    assert all(0 < private_redis.ttl(k) <= 30 for k in keys)

    persisted = cli("persist", sid)
    assert persisted.exit_code == 0 and persisted.stdout == "persisted 1 session(s)\n"
    assert [private_redis.ttl(k) for k in keys] == [-1, -1, -1, -1]

    missing = new_session_id()
    warmed = cli("warm", sid, other, missing)
    assert warmed.exit_code == 1 and f"no such session: {missing}" in warmed.stderr
    assert warmed.stdout == "warmed 2 session(s)\n"
    assert all(990 < private_redis.ttl(k) <= 1000 for k in keys)

    assert cli("expire", sid, "0").exit_code == 2  # SECONDS must be >= 1
    assert cli("warm").exit_code == 2  # at least one id


@pytest.mark.redis
def test_purge_needs_yes_and_spares_other_keys(cli, private_redis):
    for _ in range(3):
        create(cli, turns=1)
    private_redis.set("chat_sessions_are_not_mine", "1")
    private_redis.set("other", "2")

    refused = cli("purge")
    assert refused.exit_code == 2 and "--yes" in refused.stderr
    assert cli("count").stdout == "3\n"

    done = cli("purge", "--yes")
    assert done.exit_code == 0 and done.stdout == "deleted 9 key(s)\n"
    assert sorted(private_redis.scan_iter()) == ["chat_sessions_are_not_mine", "other"]


def test_redis_down_is_a_one_line_error(make_app, redis_down):
    result = make_app().test_cli_runner().invoke(args=["sessions", "count"])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: Redis is unavailable") and "Traceback" not in (
        result.output
    )


@pytest.mark.redis
def test_the_flask_command_finds_the_group(redis_server):
    """What an operator types: ``flask --app wsgi sessions ...`` from the project root."""
    env = {**os.environ, "REDIS_URL": redis_server}
    flask = [sys.executable, "-m", "flask", "--app", "wsgi", "sessions"]
    helped = subprocess.run(
        [*flask, "--help"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert helped.returncode == 0, helped.stderr
    assert "ttl-histogram" in helped.stdout
    shown = subprocess.run(
        [*flask, "show", new_session_id()],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert shown.returncode == 1 and "no such session" in shown.stderr and shown.stdout == ""


@pytest.mark.redis
def test_feedback_exports_rated_answers_as_json_lines(cli, generator, monkeypatch, tmp_path):
    good, bad, unrated = create(cli, turns=1), create(cli, turns=0), create(cli, turns=1)
    monkeypatch.setattr(generator, "generate", lambda q, h: Reply("no idea", degraded=True))
    cli.http.post(
        "/api/send-message", json={"question": "How do I X?"}, headers={"session-id": bad}
    )

    def rate(sid: str, message_id: int, **body: str) -> None:
        path = f"/api/session/{sid}/messages/{message_id}/feedback"
        assert cli.http.post(path, json=body).status_code == 200

    rate(good, 1, rating="up")
    rate(bad, 1, rating="down", comment="nothing about X")

    every = cli("feedback")
    assert every.exit_code == 0 and "exported 2 rated answer(s)" in every.stderr
    lines = [json.loads(line) for line in every.stdout.splitlines()]
    assert sorted(r["rating"] for r in lines) == ["down", "up"]
    assert unrated not in {r["sessionId"] for r in lines}
    assert all(
        set(r) == {"sessionId", "messageId", "rating", "comment", "question", "answer",
                   "sources", "degraded", "at"}
        for r in lines
    )  # fmt: skip

    path = tmp_path / "down.jsonl"
    down = cli("feedback", "--rating", "down", "-o", str(path))
    assert down.exit_code == 0 and down.stdout == ""
    (record,) = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert record == {
        "sessionId": bad, "messageId": 1, "rating": "down", "comment": "nothing about X",
        "question": "How do I X?", "answer": "no idea", "sources": [], "degraded": True,
        "at": record["at"],
    }  # fmt: skip
    assert cli("feedback", "--rating", "meh").exit_code == 2
