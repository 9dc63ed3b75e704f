"""The shapes knowledge flows through: documents as read, chunks as indexed.

Kept apart from the readers and the chunker so the retriever, the answer writers
and the CLI can share these types without importing file-parsing code.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Section:
    """A run of text under one heading; ``heading`` is empty for text before any.

    ``asks`` are questions the section answers, in its readers' words, written by whoever
    keeps the knowledge base (``<!-- ask: ... -->`` lines in Markdown): the retriever
    matches them as well as the text, so a reader who paraphrases finds the section.
    They are never quoted in a reply.
    """

    heading: str
    text: str
    asks: tuple[str, ...] = ()


@dataclass(frozen=True)
class Document:
    """One article: a file, or one record of a ``.jsonl`` file."""

    title: str
    source: str
    sections: tuple[Section, ...]
    published: str | None = None


@dataclass(frozen=True)
class Chunk:
    """A retrieval unit: a piece of one section, small enough to quote."""

    doc_title: str
    heading: str
    source: str
    text: str
    published: str | None = None
    #: Its section's ``asks`` (every chunk of a section shares them).
    asks: tuple[str, ...] = ()

    @property
    def title(self) -> str:
        """Document title and section heading, as shown next to a citation."""
        if self.heading and self.heading != self.doc_title:
            return f"{self.doc_title} › {self.heading}"
        return self.doc_title
