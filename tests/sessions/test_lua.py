"""LuaScript: EVALSHA straight through the client, the script loaded when a server lacks it."""

from __future__ import annotations

from typing import Any

import pytest

from chatbot_sessions.sessions.lua import LuaScript

# Counts its own runs, so a test sees how many times the body ran on the server.
COUNTING = "return redis.call('INCRBY', KEYS[1], ARGV[1])"


def sent_commands(monkeypatch: pytest.MonkeyPatch, client: Any) -> list[str]:
    """Names of the commands ``client`` sends from now on."""
    names: list[str] = []
    original = client.execute_command

    def recording(*args: Any, **options: Any) -> Any:
        names.append(str(args[0]).upper())
        return original(*args, **options)

    monkeypatch.setattr(client, "execute_command", recording)
    return names


@pytest.mark.redis
def test_a_script_runs_once_by_its_sha(private_redis, monkeypatch):
    script = LuaScript(private_redis, COUNTING)
    private_redis.script_load(COUNTING)
    sent = sent_commands(monkeypatch, private_redis)
    assert script(keys=["runs"], args=[2]) == 2
    assert sent == ["EVALSHA"]  # no SCRIPT LOAD, no EVAL: the text stays on this side
    assert private_redis.get("runs") == "2"


@pytest.mark.redis
def test_a_server_without_the_script_gets_it_loaded_and_runs_it_once(private_redis, monkeypatch):
    script = LuaScript(private_redis, COUNTING)
    private_redis.script_flush()  # as after a restart or a failover to a fresh replica
    sent = sent_commands(monkeypatch, private_redis)
    assert script(keys=["runs"], args=[5]) == 5
    assert sent == ["EVALSHA", "SCRIPT LOAD", "EVALSHA"]
    assert private_redis.get("runs") == "5"  # NOSCRIPT ran nothing: the body ran once
    assert private_redis.script_exists(script.sha) == [True]


@pytest.mark.redis
def test_in_a_pipeline_the_script_is_queued_and_loaded_before_it_runs(private_redis):
    script = LuaScript(private_redis, COUNTING)
    private_redis.script_flush()
    pipe = private_redis.pipeline(transaction=False)
    assert script(keys=["runs"], args=[3], client=pipe) is pipe  # queued, not run yet
    pipe.get("runs")
    assert pipe.execute() == [3, "3"]


@pytest.mark.redis
def test_a_script_error_is_raised_not_retried(private_redis):
    script = LuaScript(private_redis, "return redis.call('INCR', KEYS[1])")
    private_redis.set("text", "not a number")
    with pytest.raises(Exception, match="not an integer"):
        script(keys=["text"])
    assert private_redis.get("text") == "not a number"
