"""Retrieval quality on a blind question set over the shipped documentation.

Run from the repository root:

    python bench/retrieval_quality.py
    python bench/retrieval_quality.py --set tests/replies/questions/blind-v1.jsonl --quiet

Each entry of the set (see tests/replies/questions/README.md) names the pages a user
would want to read. For every retrieval mode the script prints one row per question
(top-1 page, hit@1, hit@3) and the totals: top-1 % is the share of questions whose first
result is an acceptable page, top-3 % the share with one among the first three results.
Follow-up cases are searched with their earlier user turns, as the service does.

A mode is a function ``(question, history) -> ranked source pages``; ``history`` is the
earlier user turns, oldest first. Add dense or hybrid retrieval as another entry of the
dict ``build_modes`` returns, and it gets its own table and totals row. The dense and
hybrid modes read the chunk embeddings from EMBEDDING_CACHE_DIR's default folder (they are
computed there on the first run, a few seconds).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from chatbot_sessions.domain import Message  # noqa: E402
from chatbot_sessions.replies.factory import build_retriever  # noqa: E402
from chatbot_sessions.replies.retriever import Query, Retriever  # noqa: E402

DEFAULT_SET = ROOT / "tests" / "replies" / "questions" / "blind-v1.jsonl"
TOP_K = 3

#: (question, earlier user turns oldest first) -> source pages, best first
SearchFn = Callable[[str, Sequence[str]], list[str]]


@dataclass(frozen=True)
class Case:
    id: str
    question: str
    pages: frozenset[str]
    kind: str
    history: tuple[str, ...] = ()


@dataclass(frozen=True)
class Outcome:
    case: Case
    ranked: tuple[str, ...]

    @property
    def top1(self) -> str | None:
        return self.ranked[0] if self.ranked else None

    @property
    def hit1(self) -> bool:
        return self.top1 in self.case.pages

    @property
    def hit3(self) -> bool:
        return any(page in self.case.pages for page in self.ranked[:TOP_K])


def load_cases(path: Path) -> list[Case]:
    cases = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        cases.append(
            Case(
                id=row["id"],
                question=row["question"],
                pages=frozenset(row["pages"]),
                kind=row["kind"],
                history=tuple(row.get("history", ())),
            )
        )
    return cases


def as_history(user_turns: Sequence[str]) -> list[Message]:
    """A session history from earlier user turns, each answered by a placeholder reply."""
    history: list[Message] = []
    for text in user_turns:
        for kind, content in (("user", text), ("assistant", "…")):
            stamp = f"2026-01-01T00:00:{len(history):02d}Z"
            history.append(Message(type=kind, content=content, timestamp=stamp))  # type: ignore[typeddict-item]
    return history


def retriever_mode(retriever: Retriever) -> SearchFn:
    """What the service does with ``retriever``: its search over the question plus the
    previous user turns (BM25, or hybrid when it has a dense index)."""

    def search(question: str, user_turns: Sequence[str]) -> list[str]:
        query = Query.for_conversation(question, as_history(user_turns))
        return [p.chunk.source for p in retriever.search_query(query, top_k=TOP_K)]

    return search


def dense_mode(retriever: Retriever) -> SearchFn:
    """Dense alone, for comparison: chunks by cosine to the (history-weighted) query vector,
    with the same "no known word, no answer" rule; not a service setting."""

    def search(question: str, user_turns: Sequence[str]) -> list[str]:
        query = Query.for_conversation(question, as_history(user_turns))
        if query.question_terms and not any(retriever.knows(t) for t in query.question_terms):
            return []
        cosine, _ = retriever.dense_similarities(query)
        best = sorted(range(len(cosine)), key=lambda i: (-cosine[i], i))[:TOP_K]
        return [retriever.chunks[i].source for i in best]

    return search


def build_modes(cache_dir: str | None = None) -> dict[str, SearchFn]:
    """Retrieval modes to compare, by name: "hybrid" is the default configuration."""
    hybrid = build_retriever(None, "hybrid", cache_dir)
    return {
        "bm25": retriever_mode(build_retriever(None, "bm25")),
        "dense": dense_mode(hybrid),
        "hybrid": retriever_mode(hybrid),
    }


def run(cases: Sequence[Case], search: SearchFn) -> list[Outcome]:
    return [Outcome(case, tuple(search(case.question, case.history))) for case in cases]


def percent(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole else 0.0


def print_table(mode: str, outcomes: Sequence[Outcome]) -> None:
    print(f"== {mode} ==")
    print(f"{'id':<5} {'kind':<11} {'top-1 page':<20} {'hit@1':<6} {'hit@3':<6} expected")
    for o in outcomes:
        print(
            f"{o.case.id:<5} {o.case.kind:<11} {o.top1 or '-':<20} "
            f"{'yes' if o.hit1 else 'no':<6} {'yes' if o.hit3 else 'no':<6} "
            f"{','.join(sorted(o.case.pages))}"
        )
    print()


def summary_row(mode: str, outcomes: Sequence[Outcome]) -> str:
    n = len(outcomes)
    h1 = sum(o.hit1 for o in outcomes)
    h3 = sum(o.hit3 for o in outcomes)
    misses1 = [o.case.id for o in outcomes if not o.hit1]
    misses3 = [o.case.id for o in outcomes if not o.hit3]
    return (
        f"{mode:<8} n={n:<4} top-1 {percent(h1, n):5.1f}% ({h1}/{n})  "
        f"top-3 {percent(h3, n):5.1f}% ({h3}/{n})\n"
        f"         missed@1: {' '.join(misses1) or '-'}\n"
        f"         missed@3: {' '.join(misses3) or '-'}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", type=Path, default=DEFAULT_SET, help="question set (.jsonl)")
    parser.add_argument("--quiet", action="store_true", help="totals only, no per-question table")
    args = parser.parse_args(argv)

    cases = load_cases(args.set)
    results = {mode: run(cases, search) for mode, search in build_modes().items()}
    if not args.quiet:
        for mode, outcomes in results.items():
            print_table(mode, outcomes)
    print(f"set: {args.set.name}, {len(cases)} cases, hit@3 over the top {TOP_K} chunks")
    for mode, outcomes in results.items():
        print(summary_row(mode, outcomes))
        questions = [o for o in outcomes if o.case.kind != "follow-up"]
        follow_ups = [o for o in outcomes if o.case.kind == "follow-up"]
        for label, part in (("questions", questions), ("follow-ups", follow_ups)):
            n = len(part)
            print(
                f"         {label}: top-1 {percent(sum(o.hit1 for o in part), n):5.1f}%  "
                f"top-3 {percent(sum(o.hit3 for o in part), n):5.1f}%  (n={n})"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
