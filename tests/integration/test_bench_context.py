"""The context benchmark stays runnable: tiny sizes, both sessions, every figure."""

from __future__ import annotations

import pytest

from bench.bench_context import run
from tests.conftest import require
from tests.support.processes import RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def test_both_sessions_are_measured_and_each_turn_asks_the_model_once():
    require(RedisServer.binary is not None, "redis-server is not installed")
    results = run(turns=3, long=40)
    assert list(results) == ["10 messages", "40 messages, summary on"]
    for row in results.values():
        assert 0 < row["p50_ms"] <= row["p99_ms"]
        assert row["chat_calls_per_turn"] == 1.0 and row["summary_calls_per_turn"] <= 1.0
