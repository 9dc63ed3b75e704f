"""Record every command a redis-py client sends, to prove that some input sends none."""

from __future__ import annotations

from typing import Any

import pytest
import redis


def record_commands(monkeypatch: pytest.MonkeyPatch, client: redis.Redis) -> list[tuple]:
    """Wrap ``client.execute_command`` (which every command and script call goes through)
    and return the list it appends each command's arguments to, as strings."""
    sent: list[tuple] = []
    original = client.execute_command

    def recording(*args: Any, **options: Any) -> Any:
        sent.append(tuple(a.decode() if isinstance(a, bytes) else str(a) for a in args))
        return original(*args, **options)

    monkeypatch.setattr(client, "execute_command", recording)
    return sent


def lose_replies(
    monkeypatch: pytest.MonkeyPatch, client: redis.Redis, count: int = 1, *, ran: bool = True
) -> list[tuple]:
    """Make the next ``count`` script calls fail with a connection error, as when the
    connection breaks: after Redis ran the script (``ran``, the reply is lost) or before it
    arrived (``ran=False``). Returns the list of the calls that failed this way."""
    lost: list[tuple] = []
    original = client.execute_command

    def losing(*args: Any, **options: Any) -> Any:
        if args[0] in ("EVALSHA", "EVAL") and len(lost) < count:
            result = original(*args, **options) if ran else None
            lost.append((args, result))
            raise redis.exceptions.ConnectionError("connection reset (test: reply lost)")
        return original(*args, **options)

    monkeypatch.setattr(client, "execute_command", losing)
    return lost


def fail_commands(
    monkeypatch: pytest.MonkeyPatch,
    client: redis.Redis,
    error: Exception,
    naming: str,
) -> list[tuple]:
    """Make every command that names a key starting with ``naming`` raise ``error`` without
    reaching Redis (the others go through). Returns the list of the commands that failed."""
    failed: list[tuple] = []
    original = client.execute_command

    def failing(*args: Any, **options: Any) -> Any:
        if any(isinstance(a, str) and a.startswith(naming) for a in args):
            failed.append(args)
            raise error
        return original(*args, **options)

    monkeypatch.setattr(client, "execute_command", failing)
    return failed
