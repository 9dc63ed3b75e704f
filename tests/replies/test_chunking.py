"""Chunking: bounded sizes, no chunk across headings, code blocks kept whole."""

from __future__ import annotations

from chatbot_sessions.replies.chunking import (
    MAX_WORDS,
    chunk_document,
    paragraphs,
    sentences,
)
from chatbot_sessions.replies.documents import Document, Section


def test_chunks_never_cross_sections_and_stay_under_the_limit() -> None:
    long_paragraph = " ".join(f"Sentence number {i} talks about Redis." for i in range(120))
    doc = Document(
        "Doc",
        "doc.md",
        (
            Section("Short", "One line."),
            Section("Long", long_paragraph + "\n\nTail paragraph."),
        ),
    )
    chunks = chunk_document(doc)
    assert chunks[0].heading == "Short" and chunks[0].text == "One line."
    long_chunks = [c for c in chunks if c.heading == "Long"]
    assert len(long_chunks) >= 3
    assert all(len(c.text.split()) <= MAX_WORDS for c in chunks)
    # cut between sentences, and nothing lost or duplicated
    assert all(c.text.rstrip().endswith(".") for c in long_chunks)
    joined = " ".join(c.text.replace("\n\n", " ") for c in long_chunks)
    assert joined.split() == (long_paragraph + " Tail paragraph.").split()


def test_small_paragraphs_are_packed_together() -> None:
    body = "\n\n".join(f"Para {i} is short." for i in range(5))
    [chunk] = chunk_document(Document("D", "d.md", (Section("S", body),)))
    assert chunk.text.count("\n\n") == 4
    assert chunk.title == "D › S"


def test_code_fence_with_blank_lines_is_one_block() -> None:
    text = "Intro.\n\n```\nline 1\n\nline 2\n```\n\nAfter."
    assert paragraphs(text) == ["Intro.", "```\nline 1\n\nline 2\n```", "After."]


def test_sentence_split_protects_abbreviations() -> None:
    text = "Use a proxy, e.g. nginx. Then restart. Done!"
    assert sentences(text) == ["Use a proxy, e.g. nginx.", "Then restart.", "Done!"]
