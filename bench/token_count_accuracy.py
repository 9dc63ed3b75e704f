"""How close the token counter is to a real tokenizer, and how fast it counts.

Run from the repository root:

    python bench/token_count_accuracy.py          # the tables
    python bench/token_count_accuracy.py --json   # the same figures, machine-readable

The reference is ``tests/replies/token_reference.json``: corpus chunks, user questions,
assistant answers and hand-written chat turns (code, URLs, non-Latin scripts, emoji),
each with its o200k_base and cl100k_base count from OpenAI's tiktoken. For each counter
(``count_tokens``, which is quicktok unless it failed to load; the fallback
``estimate_tokens``; and characters / 4 for scale) the table gives, per kind of text, the
share of exact counts, the mean absolute error, the largest over- and under-count, and
the total against the reference: over-counting is the safe side of a budget.

Regenerating the reference (only when the corpus or the question set changes) needs
tiktoken, which downloads its tables; its tables ship in bpe-openai instead, which this
script reads, checked against the SHA-256 that tiktoken itself expects. In a throwaway
virtualenv with the project's requirements:

    pip install tiktoken==0.14.0 bpe-openai==0.1.4
    python bench/token_count_accuracy.py --write-reference
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from chatbot_sessions.replies import token_count  # noqa: E402

REFERENCE = ROOT / "tests" / "replies" / "token_reference.json"
QUESTIONS = ROOT / "tests" / "replies" / "questions" / "blind-v1.jsonl"
KINDS = ("chunk", "question", "answer", "chat")
ANSWERS = 30  # assistant turns kept in the reference: enough, and they quote the corpus


@dataclass(frozen=True)
class Accuracy:
    """One counter against the reference on one kind of text."""

    texts: int
    exact_pct: float
    mean_abs_err_pct: float
    max_over_pct: float
    max_under_pct: float
    total_err_pct: float


def accuracy(counts: Sequence[int], reference: Sequence[int]) -> Accuracy:
    """Errors of ``counts`` relative to ``reference`` (texts with a reference of 0 skipped)."""
    pairs = [(c, r) for c, r in zip(counts, reference, strict=True) if r]
    errors = [(c - r) / r * 100 for c, r in pairs]
    return Accuracy(
        texts=len(pairs),
        exact_pct=100 * sum(c == r for c, r in pairs) / len(pairs),
        mean_abs_err_pct=statistics.fmean(abs(e) for e in errors),
        max_over_pct=max(0.0, *errors),
        max_under_pct=min(0.0, *errors),
        total_err_pct=(sum(c for c, _ in pairs) / sum(r for _, r in pairs) - 1) * 100,
    )


def us_per_1000_chars(count: Callable[[str], int], texts: Sequence[str], rounds: int = 5) -> float:
    """Best-of-``rounds`` time to count ``texts``, per 1,000 characters."""
    chars = sum(map(len, texts))
    best = math.inf
    for _ in range(rounds):
        start = time.perf_counter()
        for text in texts:
            count(text)
        best = min(best, time.perf_counter() - start)
    return best / chars * 1e9


def chars_over_4(text: str) -> int:
    return math.ceil(len(text) / 4)


def load_reference(path: Path = REFERENCE) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def measure(reference: dict, encoding: str = token_count.ENCODING) -> dict:
    """Accuracy per counter and kind, speed per counter, and which counter is in use."""
    started = time.perf_counter()
    in_use = token_count.counter_name()
    load_s = time.perf_counter() - started
    counters: dict[str, Callable[[str], int]] = {
        f"count_tokens ({in_use})": token_count.count_tokens,
        "estimate_tokens": token_count.estimate_tokens,
        "chars / 4": chars_over_4,
    }
    texts = reference["texts"]
    result: dict = {"encoding": encoding, "counter": in_use, "load_s": load_s, "counters": {}}
    for name, count in counters.items():
        rows = {}
        for kind in (*KINDS, "all"):
            chosen = [t for t in texts if kind in (t["kind"], "all")]
            counts = [count(t["text"]) for t in chosen]
            rows[kind] = accuracy(counts, [t[encoding] for t in chosen]).__dict__
        speed = us_per_1000_chars(count, [t["text"] for t in texts])
        result["counters"][name] = {"accuracy": rows, "us_per_1000_chars": speed}
    return result


def print_tables(result: dict) -> None:
    print(f"reference: {result['encoding']}; count_tokens uses {result['counter']}")
    print(f"load (import + tables + first count): {result['load_s']:.2f} s\n")
    head = "| counter | texts | exact | mean abs err | max over | max under | total |"
    print(head)
    print("|---|---|---|---|---|---|---|")
    for name, figures in result["counters"].items():
        for kind, a in figures["accuracy"].items():
            print(
                f"| {name} · {kind} | {a['texts']} | {a['exact_pct']:.0f} % "
                f"| {a['mean_abs_err_pct']:.1f} % | {a['max_over_pct']:+.0f} % "
                f"| {a['max_under_pct']:+.0f} % | {a['total_err_pct']:+.1f} % |"
            )
    print("\n| counter | µs per 1,000 chars |\n|---|---|")
    for name, figures in result["counters"].items():
        print(f"| {name} | {figures['us_per_1000_chars']:.1f} |")


def write_reference(path: Path = REFERENCE) -> None:
    """Recount every reference text with tiktoken (tables from bpe-openai, hash-checked)."""
    import gzip
    import hashlib
    from importlib import metadata, resources

    import tiktoken
    import tiktoken.load

    def read_shipped(blobpath: str, expected_hash: str | None = None) -> bytes:
        stem = blobpath.rsplit("/", 1)[-1].removesuffix(".tiktoken")
        raw = gzip.decompress(
            (resources.files("bpe_openai.data") / f"{stem}.tiktoken.gz").read_bytes()
        )
        if expected_hash and hashlib.sha256(raw).hexdigest() != expected_hash:
            raise SystemExit(f"{stem}: bpe-openai's table is not the one tiktoken expects")
        return raw

    tiktoken.load.read_file_cached = read_shipped  # never the network
    encodings = {name: tiktoken.get_encoding(name) for name in ("o200k_base", "cl100k_base")}

    from chatbot_sessions.replies.extractive import ExtractiveGenerator
    from chatbot_sessions.replies.knowledge import load_knowledge_base, shipped_corpus_dir
    from chatbot_sessions.replies.retriever import Retriever

    kb = load_knowledge_base(shipped_corpus_dir())
    questions = [json.loads(line)["question"] for line in QUESTIONS.read_text().splitlines()]
    answerer = ExtractiveGenerator(Retriever(kb))
    old = load_reference(path) if path.exists() else {"texts": []}
    rows = (
        [{"kind": "chunk", "source": c.source, "text": c.text} for c in kb.chunks]
        + [{"kind": "question", "text": q} for q in questions]
        + [{"kind": "answer", "text": answerer.generate(q, []).text} for q in questions[:ANSWERS]]
        + [{"kind": "chat", "text": t["text"]} for t in old["texts"] if t["kind"] == "chat"]
    )
    for row in rows:
        for name, encoding in encodings.items():
            row[name] = len(encoding.encode_ordinary(row["text"]))
    versions = ", ".join(f"{p} {metadata.version(p)}" for p in ("tiktoken", "bpe-openai"))
    reference = {
        "about": (
            "Token counts by OpenAI's tiktoken for the token counter's tests and "
            "bench/token_count_accuracy.py. chunk: the shipped corpus as indexed; question: "
            "the blind question set (user turns); answer: extractive answers to the first "
            f"{ANSWERS} questions (assistant turns); chat: hand-written turns with code, "
            "URLs, non-Latin scripts and emoji. Regenerate with "
            "bench/token_count_accuracy.py --write-reference."
        ),
        "reference": f"{versions} (tables checked against tiktoken's SHA-256)",
        "texts": rows,
    }
    # One text a line: a recount shows in a diff as the lines whose counts changed.
    lines = ",\n".join(json.dumps(row, ensure_ascii=False) for row in rows)
    head = json.dumps({k: v for k, v in reference.items() if k != "texts"}, ensure_ascii=False)
    path.write_text(f'{head[:-1]}, "texts": [\n{lines}\n]}}\n', encoding="utf-8")
    print(f"wrote {len(rows)} texts to {path.relative_to(ROOT)}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--write-reference", action="store_true", help="recount with tiktoken")
    args = parser.parse_args(argv)
    if args.write_reference:
        write_reference()
        return
    result = measure(load_reference())
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print_tables(result)


if __name__ == "__main__":
    main()
