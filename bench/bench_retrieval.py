"""Retrieval benchmark: index build time and per-query latency on a synthetic corpus.

Run from the repository root:

    python -m bench.bench_retrieval                # 10,000 chunks, 300 queries
    python -m bench.bench_retrieval --chunks 2000 --queries 100 --json

The corpus is generated from a fixed seed (Zipf-distributed pseudo-words, 60-180
words a chunk), so runs on the same machine are comparable. Queries are a few words
drawn from a random chunk plus a common word or two, the shape of a real question.
Latency covers what a request pays: query terms, BM25 scoring, top-k selection, and
separately the whole extractive reply. Runtime is bounded by the sizes given.

The dense row is the embedding side alone (question embedded, cosine to every chunk, top-k);
the hybrid row (RETRIEVAL=hybrid) is what a request pays with both sides fused. Embedding
10,000 chunks takes tens of minutes on a small machine, so the bench embeds
``--embed-sample`` chunks for real and extrapolates the build time; the 10,000-chunk
index itself holds random unit vectors, which cost the same per query (a matrix-vector
product and the top-k) as real ones. Each query is embedded for real. A restart reads
real indexes from the disk cache instead (dense.py).

The "hybrid + asks" row gives every chunk ``--asks`` questions (words of its text, as an
operator's ``<!-- ask: ... -->`` lines would be), indexed by BM25 and as extra vectors:
what a knowledge base that ships asks pays per query.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from chatbot_sessions.replies.dense import DenseIndex, DenseStats, embedded_text
from chatbot_sessions.replies.documents import Chunk
from chatbot_sessions.replies.embeddings import DIMENSION, shared_encoder
from chatbot_sessions.replies.extractive import ExtractiveGenerator
from chatbot_sessions.replies.knowledge import KnowledgeBase
from chatbot_sessions.replies.retriever import CONTEXT_WEIGHTS, Retriever

SYLLABLES = [
    "ka",
    "re",
    "mi",
    "to",
    "su",
    "na",
    "lo",
    "pe",
    "di",
    "ra",
    "vo",
    "ne",
    "shi",
    "tu",
    "ba",
    "ge",
    "zo",
    "fi",
    "ma",
    "ku",
]


def vocabulary(rng: random.Random, size: int) -> list[str]:
    """``size`` distinct pronounceable pseudo-words."""
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def synthetic_corpus(n_chunks: int, seed: int) -> KnowledgeBase:
    """``n_chunks`` chunks in 10-chunk documents, with Zipf-distributed word frequencies."""
    rng = random.Random(seed)
    words = vocabulary(rng, 20_000)
    cumulative = list(itertools.accumulate(1 / rank for rank in range(1, len(words) + 1)))
    chunks = []
    for i in range(n_chunks):
        body = rng.choices(words, cum_weights=cumulative, k=rng.randint(60, 180))
        sentences = [" ".join(body[j : j + 12]).capitalize() + "." for j in range(0, len(body), 12)]
        chunks.append(
            Chunk(
                doc_title=f"Document {i // 10}",
                heading=" ".join(rng.choices(words, cum_weights=cumulative, k=3)).title(),
                source=f"doc-{i // 10:05d}.md",
                text=" ".join(sentences),
            )
        )
    return KnowledgeBase(directory="<synthetic>", chunks=chunks, documents=(n_chunks + 9) // 10)


def with_asks(kb: KnowledgeBase, per_chunk: int, seed: int) -> KnowledgeBase:
    """``kb`` with ``per_chunk`` questions made of each chunk's words as its asks."""
    rng = random.Random(seed + 2)
    chunks = []
    for chunk in kb.chunks:
        words = chunk.text.replace(".", "").lower().split()
        asks = tuple(
            f"how can I {' '.join(rng.sample(words, k=min(len(words), 6)))}?"
            for _ in range(per_chunk)
        )
        chunks.append(replace(chunk, asks=asks))
    return replace(kb, chunks=chunks)


def queries(kb: KnowledgeBase, n: int, seed: int) -> list[str]:
    """Questions made of words from one chunk (so they have an answer)."""
    rng = random.Random(seed + 1)
    out = []
    for _ in range(n):
        words = rng.choice(kb.chunks).text.replace(".", "").lower().split()
        picked = rng.sample(words, k=min(len(words), rng.randint(3, 6)))
        out.append("how does " + " ".join(picked) + " work?")
    return out


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), nearest-rank method."""
    ordered = sorted(values)
    rank = max(1, round(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def timed(fn: Callable[[str], object], items: Sequence[str]) -> list[float]:
    """Milliseconds taken by each call of ``fn`` over ``items``."""
    out = []
    for item in items:
        started = time.perf_counter()
        fn(item)
        out.append((time.perf_counter() - started) * 1000)
    return out


def rss_mb() -> float:
    """This process's resident memory now, in MB (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def synthetic_dense(kb: KnowledgeBase, sample: int, seed: int) -> tuple[DenseIndex, float]:
    """A dense index for ``kb`` and the extrapolated seconds to embed all of it for real."""
    encoder = shared_encoder()
    texts = [embedded_text(c) for c in kb.chunks[: max(1, min(sample, len(kb.chunks)))]]
    started = time.perf_counter()
    encoder.encode(texts)
    per_chunk = (time.perf_counter() - started) / len(texts)
    rng = np.random.default_rng(seed)

    def unit_vectors(rows: int) -> np.ndarray:
        vectors = rng.standard_normal((rows, DIMENSION))
        return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)

    asks_of, rows = [], 0
    for chunk in kb.chunks:
        asks_of.append(list(range(rows, rows + len(chunk.asks))))
        rows += len(chunk.asks)
    embed_s = per_chunk * (len(kb.chunks) + rows)  # an ask is shorter: an upper bound
    stats = DenseStats(encoder.identity, None, False, embed_s)
    ask_vectors = unit_vectors(rows) if rows else None
    return DenseIndex(encoder, unit_vectors(len(kb.chunks)), stats, ask_vectors, asks_of), embed_s


def measure(retriever: Retriever, questions: Sequence[str], top_k: int) -> dict[str, float]:
    """Search and extractive-reply latency percentiles over ``questions``, in ms."""
    retriever.search(questions[0], top_k)  # warm-up: first-call allocations
    if retriever.dense is not None:  # every question embedded afresh, as a new one would be
        retriever.dense.clear_query_cache()
    search_ms = timed(lambda q: retriever.search(q, top_k), questions)
    if retriever.dense is not None:  # each reply embeds its question again, as a new one would
        retriever.dense.clear_query_cache()
    generator = ExtractiveGenerator(retriever, top_k=top_k)
    reply_ms = timed(lambda q: generator.generate(q, []), questions)
    return {
        "search_p50_ms": round(statistics.median(search_ms), 3),
        "search_p99_ms": round(percentile(search_ms, 99), 3),
        "search_mean_ms": round(statistics.fmean(search_ms), 3),
        "reply_p50_ms": round(statistics.median(reply_ms), 3),
        "reply_p99_ms": round(percentile(reply_ms, 99), 3),
    }


def measure_dense(dense: DenseIndex, questions: Sequence[str], top_k: int) -> dict[str, float]:
    """Latency of dense retrieval alone: embed the question, cosine to every chunk, top-k."""
    dense.clear_query_cache()

    def search(question: str) -> None:
        sims = dense.similarities(dense.query_vector(question, (), CONTEXT_WEIGHTS))
        np.argpartition(-sims, top_k)[:top_k]

    search_ms = timed(search, questions)
    return {
        "search_p50_ms": round(statistics.median(search_ms), 3),
        "search_p99_ms": round(percentile(search_ms, 99), 3),
        "search_mean_ms": round(statistics.fmean(search_ms), 3),
    }


def main() -> None:
    """Build the corpus and index, run the queries, print the figures."""
    parser = argparse.ArgumentParser(description="Retrieval benchmark (synthetic corpus).")
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--seed", type=int, default=20260101)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--no-hybrid", action="store_true", help="BM25 rows only")
    parser.add_argument(
        "--embed-sample", type=int, default=32, help="chunks embedded to time the dense build"
    )
    parser.add_argument(
        "--asks", type=int, default=4, help="asks per chunk in the 'hybrid + asks' row (0: none)"
    )
    args = parser.parse_args()

    kb = synthetic_corpus(args.chunks, args.seed)
    rss_before = rss_mb()
    started = time.perf_counter()
    retriever = Retriever(kb)
    build_s = time.perf_counter() - started
    questions = queries(kb, args.queries, args.seed)
    result: dict = {
        "chunks": args.chunks,
        "queries": args.queries,
        "index_build_s": round(build_s, 3),
        **measure(retriever, questions, args.top_k),
        "rss_mb": round(rss_mb() - rss_before, 1),
    }
    if not args.no_hybrid:
        rss_before = rss_mb()
        dense, embed_s = synthetic_dense(kb, args.embed_sample, args.seed)
        hybrid = Retriever(kb, dense)
        result["dense"] = measure_dense(dense, questions, args.top_k)
        result["hybrid"] = {
            "embed_all_s_extrapolated": round(embed_s, 1),
            "embed_sample": min(args.embed_sample, args.chunks),
            **measure(hybrid, questions, args.top_k),
            "rss_mb": round(rss_mb() - rss_before, 1),
        }
        if args.asks > 0:
            asked = with_asks(kb, args.asks, args.seed)
            rss_before = rss_mb()
            dense, embed_s = synthetic_dense(asked, args.embed_sample, args.seed)
            result["hybrid_asks"] = {
                "asks_per_chunk": args.asks,
                "embed_all_s_extrapolated": round(embed_s, 1),
                **measure(Retriever(asked, dense), questions, args.top_k),
                "rss_mb": round(rss_mb() - rss_before, 1),
            }
    if args.json:
        print(json.dumps(result))
        return
    print(f"corpus: {args.chunks} chunks, {args.queries} queries, top_k={args.top_k}")
    rows = [("bm25", result, f"{result['index_build_s']:.3f} s")]
    if "hybrid" in result:
        h = result["hybrid"]
        rows.append(("hybrid", h, f"~{h['embed_all_s_extrapolated']:.0f} s embed (extrapolated)"))
    if "hybrid_asks" in result:
        a = result["hybrid_asks"]
        build = f"~{a['embed_all_s_extrapolated']:.0f} s embed (extrapolated)"
        rows.append((f"hybrid + {a['asks_per_chunk']} asks per chunk", a, build))
    if "dense" in result:
        d = result["dense"]
        print(
            f"dense alone: search p50 {d['search_p50_ms']:.2f} ms, "
            f"p99 {d['search_p99_ms']:.2f} ms (index and RSS: the hybrid row's)"
        )
    for mode, row, build in rows:
        print(f"{mode}: build {build}, +RSS {row['rss_mb']:.0f} MB")
        print(
            f"  search latency:           p50 {row['search_p50_ms']:.2f} ms, "
            f"p99 {row['search_p99_ms']:.2f} ms, mean {row['search_mean_ms']:.2f} ms"
        )
        print(
            f"  extractive reply latency: p50 {row['reply_p50_ms']:.2f} ms, "
            f"p99 {row['reply_p99_ms']:.2f} ms"
        )


if __name__ == "__main__":
    main()
