"""The dense side of hybrid retrieval: one embedding per chunk, cached on disk by corpus hash.

Embedding the shipped docs takes seconds, so the vectors are saved under
``EMBEDDING_CACHE_DIR`` in a file named by a sha256 over the model identity and every
chunk's embedded text: a restart, or the other gunicorn workers starting at the same time,
read them back instead of re-embedding. Writes go to a temporary file renamed into place,
so a reader never sees half a file; a file that cannot be read is logged and rebuilt.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from chatbot_sessions.replies.disk_cache import read_or_build, write_atomically
from chatbot_sessions.replies.documents import Chunk
from chatbot_sessions.replies.embeddings import DIMENSION, Encoder
from chatbot_sessions.replies.int8_cosine import Int8Cosines

log = logging.getLogger(__name__)


def embedded_text(chunk: Chunk) -> str:
    """What is embedded for a chunk: its heading, then its text (the heading gives the topic).

    Measured against heading + page title and text alone (docs/performance.md): the page
    title, shared by every section of a page, blurred sections into each other.
    """
    return f"{chunk.heading}\n{chunk.text}"


def corpus_key(identity: str, texts: Sequence[str]) -> str:
    """sha256 over the model identity and every text, length-prefixed (no ambiguous joins)."""
    digest = hashlib.sha256()
    for part in (identity, *texts):
        data = part.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


@dataclass(frozen=True)
class DenseStats:
    """How the dense index was obtained, for ``flask kb stats``."""

    model: str
    cache_file: str | None
    cache_hit: bool
    seconds: float


def _load(path: Path, rows: int) -> np.ndarray | None:
    try:
        vectors = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, EOFError) as exc:
        log.warning("embedding cache %s is unreadable (%s); embedding again", path, exc)
        return None
    if (
        vectors.shape != (rows, DIMENSION)
        or vectors.dtype != np.float32
        or not np.isfinite(vectors).all()
    ):
        log.warning("embedding cache %s has unexpected contents; embedding again", path)
        return None
    return vectors


def _save(path: Path, vectors: np.ndarray) -> None:
    try:
        write_atomically(path, lambda out: np.save(out, vectors, allow_pickle=False))
    except OSError as exc:  # a read-only or full disk costs a re-embed next start, no more
        log.warning("could not write the embedding cache %s: %s", path, exc)


#: How much a chunk's best-matching ask counts in its cosine: (1 - share) x the chunk's
#: own cosine + share x the better of the two. Measured on the blind question sets
#: (docs/performance.md): asks lift paraphrases, and keeping part of the chunk's own
#: cosine stops one loosely written ask from outranking the text that answers.
ASK_SHARE = 0.5


class DenseIndex:
    """Unit vectors of the chunks and of their asks; ``similarities(vector)`` is cosine to
    every chunk (blended with its best ask's, ``ASK_SHARE``)."""

    def __init__(
        self,
        encoder: Encoder,
        vectors: np.ndarray,
        stats: DenseStats,
        ask_vectors: np.ndarray | None = None,
        asks_of: Sequence[Sequence[int]] = (),
    ) -> None:
        """``asks_of[i]`` lists the rows of ``ask_vectors`` that are chunk ``i``'s asks."""
        self.encoder = encoder
        self.vectors = vectors
        self.stats = stats
        # The ask vectors of every chunk that has asks, chunk by chunk (an ask shared by
        # several chunks once per chunk), as int8 (int8_cosine.py): a query's cosines to
        # them come out in one run per chunk, for one reduceat; where each run starts;
        # which chunks those are.
        owners = [i for i, rows in enumerate(asks_of) if rows]
        rows = [r for i in owners for r in asks_of[i]]
        self._ask_chunks = np.array(owners, dtype=np.int64)
        self._ask_starts = np.cumsum([0] + [len(asks_of[i]) for i in owners[:-1]], dtype=np.int64)
        self._asks = None
        if ask_vectors is not None and rows:
            self._asks = Int8Cosines(ask_vectors[np.array(rows, dtype=np.int64)])
        #: How many distinct asks were embedded (the rows of ``ask_vectors``).
        self.ask_count = 0 if ask_vectors is None else len(ask_vectors)
        # Each question is embedded once per process: a follow-up's earlier turns were
        # usually asked here before. lru_cache is thread-safe.
        self._embed = lru_cache(maxsize=2048)(self._embed_uncached)

    @classmethod
    def build(cls, chunks: Sequence[Chunk], encoder: Encoder, cache_dir: str | None) -> DenseIndex:
        """Embed ``chunks`` and their asks, or read the vectors from ``cache_dir`` (None: no
        disk cache). An ask shared by several chunks (a long section's) is embedded once."""
        started = time.perf_counter()
        asks = list(dict.fromkeys(ask for c in chunks for ask in c.asks))
        row_of = {ask: i for i, ask in enumerate(asks)}
        texts = [embedded_text(c) for c in chunks] + asks
        path = None
        if cache_dir and texts:
            path = Path(cache_dir) / f"dense-{corpus_key(encoder.identity, texts)[:32]}.npy"

        def embed() -> np.ndarray:
            vectors = encoder.encode(texts)
            if path is not None:
                _save(path, vectors)
            return vectors

        vectors, hit = read_or_build(path, lambda found: _load(found, len(texts)), embed)
        seconds = time.perf_counter() - started
        stats = DenseStats(encoder.identity, str(path) if path else None, hit, seconds)
        log.info(
            "dense index: %d chunks and %d asks %s in %.3fs",
            len(chunks),
            len(asks),
            "read from cache" if hit else "embedded",
            seconds,
        )
        # A copy: a view would keep the float32 asks alive beside their int8 copy.
        chunk_vectors, ask_vectors = vectors[: len(chunks)].copy(), vectors[len(chunks) :]
        asks_of = [[row_of[ask] for ask in c.asks] for c in chunks]
        return cls(encoder, chunk_vectors, stats, ask_vectors if asks else None, asks_of)

    def clear_query_cache(self) -> None:
        """Forget the embedded questions (benchmarks time uncached queries)."""
        self._embed.cache_clear()

    def _embed_uncached(self, text: str) -> np.ndarray:
        vector = self.encoder.encode([text])[0]
        vector.setflags(write=False)
        return vector

    def query_vector(self, question: str, context: Sequence[str], weights: Sequence[float]):
        """The question's vector plus ``weights``-scaled earlier turns (newest first), unit length.

        A follow-up ("and the timeout?") leans on the topic of the turns before it, as
        the BM25 query does with its weighted terms.
        """
        vector = self._embed(question).copy()
        for text, weight in zip(context, weights, strict=False):
            vector += np.float32(weight) * self._embed(text)
        return vector / max(float(np.linalg.norm(vector)), 1e-12)

    def similarities(self, vector: np.ndarray) -> np.ndarray:
        """Cosine similarity of ``vector`` (unit length) to every chunk, asks blended in."""
        cosine = self.vectors @ vector
        if self._asks is None:
            return cosine
        best = np.maximum.reduceat(self._asks(vector), self._ask_starts)
        own = cosine[self._ask_chunks]
        cosine[self._ask_chunks] = (1 - ASK_SHARE) * own + ASK_SHARE * np.maximum(own, best)
        return cosine
