"""The retrieval benchmark stays runnable and deterministic (tiny sizes here)."""

from __future__ import annotations

import json

from bench.bench_retrieval import main, percentile, queries, synthetic_corpus


def test_corpus_and_queries_are_deterministic() -> None:
    first, again = synthetic_corpus(50, seed=7), synthetic_corpus(50, seed=7)
    assert first.chunks == again.chunks and len(first.chunks) == 50
    assert queries(first, 5, seed=7) == queries(again, 5, seed=7)
    assert synthetic_corpus(50, seed=8).chunks != first.chunks


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 99), percentile([3.0], 99)) == (
        50.0,
        99.0,
        3.0,
    )


def test_main_prints_the_figures(monkeypatch, capsys) -> None:
    monkeypatch.setattr(
        "sys.argv", ["bench_retrieval", "--chunks", "300", "--queries", "20", "--json"]
    )
    main()
    result = json.loads(capsys.readouterr().out)
    assert result["chunks"] == 300 and result["queries"] == 20
    assert result["index_build_s"] > 0
    assert 0 < result["search_p50_ms"] <= result["search_p99_ms"]
    hybrid = result["hybrid"]
    assert hybrid["embed_all_s_extrapolated"] > 0 and hybrid["embed_sample"] == 32
    assert 0 < hybrid["search_p50_ms"] <= hybrid["search_p99_ms"]
    asked = result["hybrid_asks"]
    assert asked["asks_per_chunk"] == 4 and asked["embed_all_s_extrapolated"] > 0
    assert 0 < asked["search_p50_ms"] <= asked["search_p99_ms"]
