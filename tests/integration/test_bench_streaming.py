"""The streaming benchmark stays runnable: tiny sizes, both arms, every figure, no error."""

from __future__ import annotations

import json

import pytest

from bench.bench_streaming import main, report
from tests.conftest import require
from tests.support.processes import RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.gunicorn, pytest.mark.slow]


def test_main_measures_both_arms_and_prints_the_table(capsys) -> None:
    require(RedisServer.binary is not None, "redis-server is not installed")
    # 4 chunks 50 ms apart: the first at 50 ms, the whole reply at 200 ms.
    flags = "--conversations 2 --turns 2 --chunks 4 --gap 0.05 --workers 1 --rounds 1 --json"
    assert main(flags.split()) == 0
    result = json.loads(capsys.readouterr().out)
    streamed, unstreamed = result["streamed"], result["unstreamed"]
    assert result["errors"] == 0 and streamed["requests"] == unstreamed["requests"] == 4
    assert streamed["start"]["p50"] <= streamed["first_delta"]["p50"] < streamed["done"]["p50"]
    # Both arms wait for the whole generation; only the streamed one shows text before it.
    assert streamed["done"]["p50"] >= 200 and unstreamed["answer"]["p50"] >= 200
    assert streamed["first_delta"]["p50"] < 200
    assert 0 < result["first_delta_over_answer"]["p50"] < 1

    report(result)
    table = capsys.readouterr().out
    assert "first_delta" in table and "first delta / JSON answer: p50" in table
