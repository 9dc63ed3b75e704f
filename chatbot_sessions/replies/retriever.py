"""BM25 (optionally fused with dense embeddings) over knowledge chunks, follow-ups resolved
from history.

The index is built once, when the retriever is constructed, and only read afterwards,
so one retriever serves every request thread. Scoring is bm25s's (eager sparse BM25):
we only decide what text is indexed for a chunk and how a query is weighted. Given a
``DenseIndex`` (``RETRIEVAL=hybrid``), the BM25 scores are mixed with cosine similarity to
the question's embedding, so a paraphrase finds the passage that words alone miss.
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
from chatbot_sessions.replies.dense import DenseIndex, DenseStats
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

# Hybrid scoring, measured on tests/replies/questions/blind-v1.jsonl (docs/performance.md).
#: Share of the (per-query max-normalised) BM25 score in the mix; the rest is cosine.
BM25_SHARE = 0.3
#: Cosine a chunk must reach with the question alone to be a candidate without sharing a
#: word with it: paraphrases clear it, passages that are merely about the same product don't.
DENSE_FLOOR = 0.3
#: A chunk gains this share of its page's best other candidates' scores: the page that
#: answers a question usually matches in several sections, a stray mention in one.
PAGE_SUPPORT = 0.15
PAGE_SUPPORT_CHUNKS = 2
#: Results keep one chunk per page; this many times ``top_k`` best chunks are looked at
#: first, and the whole candidate list only when they hold fewer pages than asked for.
PAGE_SHORTLIST = 4


@dataclass(frozen=True)
class Query:
    """Weighted query terms: the question's at 1.0, earlier user turns' lower."""

    weights: Mapping[str, float]
    question_terms: frozenset[str] = field(default_factory=frozenset)
    #: The texts themselves, for the dense side: the question and earlier turns, newest first.
    question: str = ""
    context: tuple[str, ...] = ()

    @classmethod
    def build(cls, question: str, context: Sequence[str] = ()) -> Query:
        """Combine ``question`` with ``context`` (earlier user turns, newest first)."""
        weights: dict[str, float] = {}
        for text, weight in zip(context, CONTEXT_WEIGHTS, strict=False):
            for term in terms(text):
                if weights.get(term, 0.0) < weight:  # its highest weight (max() costs more)
                    weights[term] = weight
        own = terms(question)
        for term in own:
            weights[term] = 1.0
        turns = tuple(context[: len(CONTEXT_WEIGHTS)])
        return cls(weights, frozenset(own), question, turns)

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
    """A retrieved chunk and its score for the query (BM25, or the hybrid mix)."""

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
    retrieval: str = "bm25"
    dense: DenseStats | None = None
    #: Distinct asks (questions a section answers, written by the knowledge base's keeper).
    asks: int = 0

    @property
    def files_skipped(self) -> int:
        """How many files were left out (each was logged with its reason)."""
        return len(self.skipped)


def _index_text(chunk: Chunk) -> str:
    # The heading is repeated so a chunk whose section is *about* the query term
    # outranks one that merely mentions it in passing. Its section's asks bring the words
    # readers use for what the text says in its own.
    asks = "\n".join(chunk.asks)
    return f"{chunk.doc_title}\n{chunk.heading}\n{chunk.heading}\n{chunk.text}\n{asks}"


def _idf(chunks: int, df: int) -> float:
    # BM25's idf of a term found in ``df`` of ``chunks`` chunks.
    return math.log(1 + (chunks - df + 0.5) / (df + 0.5))


def _postings(bm25: bm25s.BM25) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each indexed term's chunks and its BM25 score in each, as views of bm25s's index."""
    scores = bm25.scores
    indptr, indices, data = scores["indptr"].tolist(), scores["indices"], scores["data"]
    return {
        # "" is bm25s's placeholder token, not a word, and has no postings of its own.
        term: (indices[indptr[row] : indptr[row + 1]], data[indptr[row] : indptr[row + 1]])
        for term, row in bm25.vocab_dict.items()
        if term and row < len(indptr) - 1
    }


class Retriever:
    """Ranks the chunks of a knowledge base against a question. Thread-safe after construction."""

    def __init__(self, knowledge: KnowledgeBase, dense: DenseIndex | None = None) -> None:
        self.knowledge = knowledge
        self.chunks: tuple[Chunk, ...] = tuple(knowledge.chunks)
        if dense is not None and len(dense.vectors) != len(self.chunks):
            raise ValueError("the dense index was built for other chunks")
        self.dense = dense
        sources = [c.source for c in self.chunks]
        page_of = {source: i for i, source in enumerate(dict.fromkeys(sources))}
        self._page = np.array([page_of[s] for s in sources], dtype=np.int64)
        # The same as a list: picking one chunk per page indexes it an int at a time.
        self._pages: list[int] = self._page.tolist()
        started = time.perf_counter()
        self._bm25: bm25s.BM25 | None = None
        corpus_terms = [terms(_index_text(c)) for c in self.chunks]
        # Document frequencies, for weighting sentences when answers are extracted.
        df = Counter(t for chunk in corpus_terms for t in set(chunk))
        #: BM25's idf of every term of the corpus (``idf`` looks one up, ``knows`` asks
        #: whether a term has one).
        self.idfs: Mapping[str, float] = {term: _idf(len(self.chunks), n) for term, n in df.items()}
        self._postings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        if self.chunks:
            self._bm25 = bm25s.BM25()
            self._bm25.index(corpus_terms, show_progress=False)
            self._postings = _postings(self._bm25)
        index_seconds = time.perf_counter() - started
        self.stats = IndexStats(
            directory=knowledge.directory,
            documents=knowledge.documents,
            chunks=len(self.chunks),
            skipped=tuple(knowledge.skipped),
            skipped_lines=knowledge.skipped_lines,
            load_seconds=knowledge.load_seconds,
            index_seconds=index_seconds,
            retrieval="bm25" if dense is None else "hybrid",
            dense=None if dense is None else dense.stats,
            asks=len({ask for chunk in self.chunks for ask in chunk.asks}),
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
        return self.idfs.get(term, 0.0)

    def knows(self, term: str) -> bool:
        """Whether ``term`` occurs anywhere in the knowledge base."""
        return term in self.idfs

    def scores(self, query: Query) -> np.ndarray:
        """Score of every chunk for ``query`` (zeros for chunks not worth returning).

        BM25 alone, or with a dense index the hybrid mix (``hybrid_scores``).
        """
        bm25 = self.bm25_scores(query)
        if self.dense is None:
            return bm25
        return self.hybrid_scores(query, bm25)

    def bm25_scores(self, query: Query) -> np.ndarray:
        """BM25 score of every chunk for ``query`` (zeros where nothing matches).

        Earlier turns only re-rank chunks that contain a word of the question itself:
        they say which "timeout" the user means, but must not pull in passages about
        the previous topic that do not address the new question at all.
        """
        postings = self._postings
        by_weight: dict[float, list[str]] = {}
        for term, weight in query.weights.items():
            if term in postings:
                by_weight.setdefault(weight, []).append(term)
        own = [t for t in query.question_terms if t in postings]
        total = None
        for weight, group in by_weight.items():
            part = self._summed(group)
            if weight != 1.0:  # (times 1 is the same float32; the question's terms weigh 1)
                part *= np.float32(weight)
            # Scores are never negative, so 0 + part is part: the first group needs no sum.
            total = part if total is None else total + part
        if total is None:
            return np.zeros(len(self.chunks), dtype=np.float32)
        if own and len(by_weight) > 1:
            total[self._summed(own) == 0] = 0
        return total

    def _summed(self, group: list[str]) -> np.ndarray:
        # bm25s's get_scores for ``group``, in one ``np.add.at`` over all its terms' postings
        # instead of one per term: ``at`` adds in the order given, so every chunk's float32
        # sum still takes its terms in query order, and comes out the same to the last bit.
        # (Its method, lucene, gives no score where a term is absent: nothing else to add.)
        postings = [self._postings[t] for t in group]
        total = np.zeros(len(self.chunks), dtype=np.float32)
        where = np.concatenate([chunk_ids for chunk_ids, _ in postings])
        np.add.at(total, where, np.concatenate([scores for _, scores in postings]))
        return total

    def dense_similarities(self, query: Query) -> tuple[np.ndarray, np.ndarray]:
        """Cosine of every chunk to the query's vector (question plus weighted earlier
        turns), and to the question's own vector; needs a dense index."""
        if self.dense is None:
            raise RuntimeError("this retriever has no dense index (RETRIEVAL=bm25)")
        mixed = self.dense.similarities(
            self.dense.query_vector(query.question, query.context, CONTEXT_WEIGHTS)
        )
        if not query.context:
            return mixed, mixed
        return mixed, self.dense.similarities(self.dense.query_vector(query.question, (), ()))

    def hybrid_scores(self, query: Query, bm25: np.ndarray) -> np.ndarray:
        """BM25 (max-normalised) mixed with cosine, plus page support; zeros for non-candidates.

        A candidate shares a word with the question or is close to the question's own
        vector (``DENSE_FLOOR``): as with BM25, earlier turns re-rank but add nothing.
        """
        cosine, own = self.dense_similarities(query)
        candidate = bm25 > 0
        if query.question_terms:  # "and them?" has no topic of its own to be close to
            candidate |= own >= DENSE_FLOOR
        top = float(bm25.max()) if bm25.size else 0.0
        mixed = BM25_SHARE * (bm25 / top if top > 0 else bm25) + (1 - BM25_SHARE) * np.maximum(
            cosine, 0
        )
        total = np.zeros(len(self.chunks), dtype=np.float32)
        index = np.flatnonzero(candidate & (mixed > 0))
        if index.size:
            total[index] = mixed[index] + PAGE_SUPPORT * self._page_support(index, mixed[index])
        return total

    def _page_support(self, index: np.ndarray, scores: np.ndarray) -> np.ndarray:
        # For each chunk: the sum of the best PAGE_SUPPORT_CHUNKS scores of *other*
        # candidates on its page. Sorted by (page, -score), a chunk's rank in its page says
        # which of the page's top scores are its own.
        n = PAGE_SUPPORT_CHUNKS
        pages = self._page[index]
        order = np.lexsort((-scores, pages))
        sorted_pages, sorted_scores = pages[order], scores[order]
        starts = np.flatnonzero(np.r_[True, sorted_pages[1:] != sorted_pages[:-1]])
        group = np.cumsum(np.r_[True, sorted_pages[1:] != sorted_pages[:-1]]) - 1
        rank = np.arange(len(order)) - starts[group]
        best = np.zeros((len(starts), n + 1), dtype=np.float64)
        keep = rank <= n
        best[group[keep], rank[keep]] = sorted_scores[keep]
        # Best n+1 of the page, minus the chunk itself when it is among them, else the (n+1)th.
        support_sorted = best.sum(axis=1)[group] - np.where(
            rank <= n, sorted_scores, best[group, n]
        )
        support = np.empty_like(support_sorted)
        support[order] = support_sorted
        return support

    def search(
        self, question: str, top_k: int = 5, *, context: Sequence[str] = ()
    ) -> list[Passage]:
        """The ``top_k`` best chunks for ``question`` (and earlier ``context`` turns), best first,
        one per page (its best).

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
        candidates = (scores > 0).nonzero()[0]
        # Partial selection first (sorting all of a large corpus per query is waste): a few
        # times top_k is nearly always enough to find top_k different pages.
        best = self._one_per_page(candidates, scores, top_k * PAGE_SHORTLIST, top_k)
        if len(best) < top_k and candidates.size > top_k * PAGE_SHORTLIST:
            best = self._one_per_page(candidates, scores, candidates.size, top_k)
        return [Passage(self.chunks[i], score) for i, score in best]

    def _one_per_page(
        self, candidates: np.ndarray, scores: np.ndarray, shortlist: int, pages_wanted: int
    ) -> list[tuple[int, float]]:
        """Of the best ``shortlist`` candidates, each page's best chunk as (chunk, score), best
        first, for the first ``pages_wanted`` pages.

        A reply cites the pages of its passages: two passages of one page would spend a
        source on a page already cited, where the next page may be the one the reader
        needed (on the blind question sets, the right page among the first three results
        went from 115 to 122 of 125 questions on blind-v3, 81 to 86 of 94 on v2).
        """
        if candidates.size > shortlist:
            # (The method, not np.argpartition: the same call without its Python wrappers.)
            keep = (-scores[candidates]).argpartition(shortlist - 1)[:shortlist]
            candidates = candidates[keep]
        # Ties are broken by corpus order, so results are deterministic. A shortlist is a few
        # dozen chunks: sorting them as Python pairs costs less than numpy's calls would.
        ranked = sorted(zip((-scores[candidates]).tolist(), candidates.tolist(), strict=True))
        pages, seen, best = self._pages, set(), []
        for minus_score, i in ranked:
            if pages[i] not in seen:
                seen.add(pages[i])
                best.append((i, -minus_score))
                if len(best) == pages_wanted:
                    break
        return best
