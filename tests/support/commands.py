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
