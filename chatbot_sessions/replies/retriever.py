"""BM25 retrieval over knowledge chunks, with follow-up questions resolved from history.

The index is built once, when the retriever is constructed, and only read afterwards,
so one retriever serves every request thread. Scoring is bm25s's (eager sparse BM25):
we only decide what text is indexed for a chunk and how a query is weighted.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import bm25s
import numpy as np

from chatbot_sessions.domain import Message, Source
from chatbot_sessions.replies.documents import Chunk
from chatbot_sessions.replies.knowledge import KnowledgeBase, SkippedFile
from chatbot_sessions.replies.tokens import terms

log = logging.getLogger(__name__)

#: How much each earlier user turn counts relative to the question, newest first.
#: Enough for "and what about the second one?" to inherit its topic, small enough
#: that a fresh, self-contained question is not dragged back to the old one.
CONTEXT_WEIGHTS = (0.35, 0.2)
#: The most history a query can use: the earlier user turns above with their answers (a
#: turn is stored as question + answer), plus a trailing copy of the question itself.
HISTORY_MESSAGES = 2 * len(CONTEXT_WEIGHTS) + 1


@dataclass(frozen=True)
class Query:
    """Weighted query terms: the question's at 1.0, earlier user turns' lower."""

    weights: Mapping[str, float]
    question_terms: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def build(cls, question: str, context: Sequence[str] = ()) -> Query:
        """Combine ``question`` with ``context`` (earlier user turns, newest first)."""
        weights: dict[str, float] = {}
        for text, weight in zip(context, CONTEXT_WEIGHTS, strict=False):
            for term in terms(text):
                weights[term] = max(weights.get(term, 0.0), weight)
        own = terms(question)
        for term in own:
            weights[term] = 1.0
        return cls(weights, frozenset(own))

    @classmethod
    def for_conversation(cls, question: str, history: Sequence[Message]) -> Query:
        """The query for ``question`` asked after ``history`` (oldest first)."""
        return cls.build(question, previous_user_turns(prior_history(question, history)))


def prior_history(question: str, history: Sequence[Message]) -> Sequence[Message]:
    """``history`` without a trailing copy of ``question`` itself.

    Callers may store the question before asking for the reply; it must then not
    count as its own "previous turn", nor reach an LLM twice.
    """
    if history and history[-1].get("type") == "user" and history[-1].get("content") == question:
        return history[:-1]
    return history


def previous_user_turns(history: Sequence[Message], limit: int = len(CONTEXT_WEIGHTS)) -> list[str]:
    """Contents of the last ``limit`` user messages of ``history``, newest first."""
    turns = [m["content"] for m in reversed(history) if m.get("type") == "user"]
    return turns[:limit]


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk and its BM25 score for the query."""

    chunk: Chunk
    score: float

    def as_source(self) -> Source:
        """How a reply citing this passage names it (the score rounded for the wire)."""
        return Source(title=self.chunk.title, source=self.chunk.source, score=round(self.score, 3))


@dataclass(frozen=True)
class IndexStats:
    """What ``flask kb stats`` reports about the loaded knowledge base and its index."""

    directory: str
    documents: int
    chunks: int
    skipped: tuple[SkippedFile, ...]
    skipped_lines: int
    load_seconds: float
    index_seconds: float

    @property
    def files_skipped(self) -> int:
        """How many files were left out (each was logged with its reason)."""
        return len(self.skipped)


def _index_text(chunk: Chunk) -> str:
    # The heading is repeated so a chunk whose section is *about* the query term
    # outranks one that merely mentions it in passing.
    return f"{chunk.doc_title}\n{chunk.heading}\n{chunk.heading}\n{chunk.text}"


class Retriever:
    """Ranks the chunks of a knowledge base against a question. Thread-safe after construction."""

    def __init__(self, knowledge: KnowledgeBase) -> None:
        self.knowledge = knowledge
        self.chunks: tuple[Chunk, ...] = tuple(knowledge.chunks)
        started = time.perf_counter()
        self._bm25: bm25s.BM25 | None = None
        corpus_terms = [terms(_index_text(c)) for c in self.chunks]
        # Document frequencies, for weighting sentences when answers are extracted.
        self._df: Counter[str] = Counter(t for chunk in corpus_terms for t in set(chunk))
        if self.chunks:
            self._bm25 = bm25s.BM25()
            self._bm25.index(corpus_terms, show_progress=False)
        index_seconds = time.perf_counter() - started
        self.stats = IndexStats(
            directory=knowledge.directory,
            documents=knowledge.documents,
            chunks=len(self.chunks),
            skipped=tuple(knowledge.skipped),
            skipped_lines=knowledge.skipped_lines,
            load_seconds=knowledge.load_seconds,
            index_seconds=index_seconds,
        )
        log.info(
            "knowledge base: %d documents, %d chunks, %d files skipped, indexed in %.3fs",
            self.stats.documents,
            self.stats.chunks,
            self.stats.files_skipped,
            index_seconds,
        )

    def idf(self, term: str) -> float:
        """How rare ``term`` is in the corpus (BM25's idf; 0 for unknown terms)."""
        df = self._df.get(term, 0)
        if not df:
            return 0.0
        n = len(self.chunks)
        return math.log(1 + (n - df + 0.5) / (df + 0.5))

    def knows(self, term: str) -> bool:
        """Whether ``term`` occurs anywhere in the knowledge base."""
        return term in self._df

    def scores(self, query: Query) -> np.ndarray:
        """BM25 score of every chunk for ``query`` (zeros where nothing matches).

        Earlier turns only re-rank chunks that contain a word of the question itself:
        they say which "timeout" the user means, but must not pull in passages about
        the previous topic that do not address the new question at all.
        """
        total = np.zeros(len(self.chunks), dtype=np.float32)
        if self._bm25 is None:
            return total
        vocab = self._bm25.vocab_dict
        by_weight: dict[float, list[str]] = {}
        for term, weight in query.weights.items():
            if term and term in vocab:  # "" is bm25s's placeholder token, not a word
                by_weight.setdefault(weight, []).append(term)
        own = [t for t in query.question_terms if t in vocab]
        for weight, group in by_weight.items():
            total += np.float32(weight) * self._bm25.get_scores(group)
        if own and len(by_weight) > 1:
            total[self._bm25.get_scores(own) == 0] = 0
        return total

    def search(
        self, question: str, top_k: int = 5, *, context: Sequence[str] = ()
    ) -> list[Passage]:
        """The ``top_k`` best chunks for ``question`` (and earlier ``context`` turns), best first.

        Chunks that share no term with the query are never returned, so an empty list
        means "nothing in the knowledge base is about this". So does a question none
        of whose own words the knowledge base knows ("thanks!", "weather in Paris?"):
        earlier turns then must not make it look answerable.
        """
        return self.search_query(Query.build(question, context), top_k)

    def search_query(self, query: Query, top_k: int = 5) -> list[Passage]:
        """Like ``search`` for an already built ``Query``."""
        if top_k <= 0 or not self.chunks:
            return []
        if query.question_terms and not any(self.knows(t) for t in query.question_terms):
            return []
        scores = self.scores(query)
        candidates = np.flatnonzero(scores > 0)
        if candidates.size > top_k:
            # Partial selection first: sorting all of a large corpus per query is waste.
            keep = np.argpartition(-scores[candidates], top_k - 1)[:top_k]
            candidates = candidates[keep]
        # Ties are broken by corpus order, so results are deterministic.
        order = np.lexsort((candidates, -scores[candidates]))
        return [Passage(self.chunks[i], float(scores[i])) for i in candidates[order]]
