"""Cutting documents into retrieval-sized chunks.

BM25 favours passages of similar, modest length: a whole page dilutes the terms that
matter, a single line loses its context. So a chunk never crosses a section boundary,
packs whole paragraphs up to about ``target_words`` and never exceeds ``max_words``
(an oversized paragraph is cut between sentences).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from chatbot_sessions.replies.documents import Chunk, Document

TARGET_WORDS = 120
MAX_WORDS = 220
MIN_WORDS = 30

_BLANK_LINES = re.compile(r"\n\s*\n")
# A sentence ends at . ! or ? followed by space and a capital, quote, backtick or
# bracket; common abbreviations are protected first.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9`\"'(\[*])")
_ABBREVIATIONS = re.compile(r"\b(e\.g|i\.e|etc|vs|cf)\.\s", re.IGNORECASE)


def paragraphs(text: str) -> list[str]:
    """Blank-line separated blocks; a fenced code block stays one block."""
    blocks: list[str] = []
    fence: list[str] | None = None
    for part in _BLANK_LINES.split(text):
        if fence is not None:
            fence.append(part)
            if part.count("```") % 2 == 1:
                blocks.append("\n\n".join(fence))
                fence = None
            continue
        if part.count("```") % 2 == 1:
            fence = [part]
            continue
        if part.strip():
            blocks.append(part.strip())
    if fence:
        blocks.append("\n\n".join(fence))
    return blocks


def sentences(text: str) -> list[str]:
    """Sentences of a prose paragraph (a heuristic split, good enough for English docs)."""
    protected = _ABBREVIATIONS.sub(lambda m: m.group().replace(". ", ".\x00"), text)
    return [s.replace("\x00", " ").strip() for s in _SENTENCE_END.split(protected) if s.strip()]


def _word_count(text: str) -> int:
    return len(text.split())


def _pieces(block: str, max_words: int) -> Iterator[str]:
    """The block itself, or sentence-aligned pieces of it when it is too long."""
    if _word_count(block) <= max_words or block.lstrip().startswith("```"):
        yield block
        return
    piece: list[str] = []
    size = 0
    for sentence in sentences(" ".join(block.split())):
        n = _word_count(sentence)
        if piece and size + n > max_words:
            yield " ".join(piece)
            piece, size = [], 0
        if n > max_words:  # a run-on "sentence": cut it by words
            words = sentence.split()
            for start in range(0, len(words), max_words):
                yield " ".join(words[start : start + max_words])
            continue
        piece.append(sentence)
        size += n
    if piece:
        yield " ".join(piece)


def _pack(text: str, target_words: int, max_words: int) -> list[str]:
    """Greedily group paragraphs (or pieces of long ones) into chunk texts."""
    packed: list[str] = []
    current: list[str] = []
    size = 0
    for block in paragraphs(text):
        for piece in _pieces(block, max_words):
            n = _word_count(piece)
            if current and (size + n > max_words or size >= target_words):
                packed.append("\n\n".join(current))
                current, size = [], 0
            current.append(piece)
            size += n
    if current:
        tail = "\n\n".join(current)
        # A short leftover reads better, and ranks better, attached to what precedes it.
        if packed and size < MIN_WORDS and _word_count(packed[-1]) + size <= max_words:
            packed[-1] = f"{packed[-1]}\n\n{tail}"
        else:
            packed.append(tail)
    return packed


def chunk_document(
    document: Document, *, target_words: int = TARGET_WORDS, max_words: int = MAX_WORDS
) -> list[Chunk]:
    """All chunks of ``document``, in reading order."""
    return [
        Chunk(
            doc_title=document.title,
            heading=section.heading,
            source=document.source,
            text=text,
            published=document.published,
            asks=section.asks,
        )
        for section in document.sections
        for text in _pack(section.text, target_words, max_words)
    ]
