"""Loading a knowledge directory into chunks, skipping what cannot be used.

An operator's folder will contain the odd stray binary, an empty draft or a JSONL
export with a truncated line. None of that should stop the service starting, but
each must be visible, so every skip is logged with the file (and line) and counted
for ``flask kb stats``.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from chatbot_sessions.replies.chunking import chunk_document
from chatbot_sessions.replies.documents import Chunk, Document
from chatbot_sessions.replies.readers import READERS, read_jsonl_records

log = logging.getLogger(__name__)

SUFFIXES = frozenset(READERS) | {".jsonl"}
# Bytes inspected for NUL to tell binary files from text (as git and grep do).
_SNIFF_BYTES = 8192


class KnowledgeDirError(ValueError):
    """The configured knowledge directory does not exist or is not a directory."""


@dataclass(frozen=True)
class SkippedFile:
    """A file left out of the knowledge base, with the reason shown to operators."""

    path: str
    reason: str


@dataclass
class KnowledgeBase:
    """Everything loaded from one directory: chunks in a stable order plus load statistics."""

    directory: str
    chunks: list[Chunk] = field(default_factory=list)
    documents: int = 0
    skipped: list[SkippedFile] = field(default_factory=list)
    skipped_lines: int = 0
    load_seconds: float = 0.0


def shipped_corpus_dir() -> Path:
    """The documentation corpus shipped inside the package (used when no KNOWLEDGE_DIR)."""
    return Path(str(resources.files("chatbot_sessions.replies") / "corpus"))


def _knowledge_files(root: Path) -> list[Path]:
    # os.walk without following links cannot loop on a symlinked parent directory;
    # sorting makes chunk order, and so tie-breaking between equal scores, stable.
    found: list[Path] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            if Path(name).suffix.lower() in SUFFIXES:
                found.append(Path(folder) / name)
    return found


def _decode(raw: bytes) -> str:
    """UTF-8 text of ``raw``; raises ``ValueError`` with an operator-readable reason."""
    if b"\x00" in raw[:_SNIFF_BYTES]:
        raise ValueError("binary file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text (byte {exc.start})") from exc
    if not text.strip():
        raise ValueError("empty file")
    return text


def _read_documents(path: Path, rel: str, kb: KnowledgeBase) -> list[Document]:
    """Documents of one file; raises ``ValueError``/``OSError`` when it must be skipped."""
    text = _decode(path.read_bytes())
    suffix = path.suffix.lower()
    if suffix != ".jsonl":
        return READERS[suffix](text, rel)
    documents: list[Document] = []
    for number, item in read_jsonl_records(text, rel):
        if isinstance(item, str):
            kb.skipped_lines += 1
            log.warning("knowledge base: skipped %s line %d: %s", rel, number, item)
        else:
            documents.append(item)
    if not documents:
        raise ValueError("no usable JSONL records")
    return documents


def load_knowledge_base(directory: str | os.PathLike[str]) -> KnowledgeBase:
    """Read and chunk every supported file under ``directory`` (recursively)."""
    root = Path(directory)
    if not root.is_dir():
        raise KnowledgeDirError(f"KNOWLEDGE_DIR {str(root)!r} is not a readable directory")
    started = time.perf_counter()
    kb = KnowledgeBase(directory=str(root))
    for path in _knowledge_files(root):
        rel = path.relative_to(root).as_posix()
        try:
            documents = _read_documents(path, rel, kb)
            chunks = [chunk for doc in documents for chunk in chunk_document(doc)]
            if not chunks:
                raise ValueError("no text found")
        except OSError as exc:
            reason = f"unreadable ({exc.strerror or exc.__class__.__name__})"
        except (ValueError, RecursionError) as exc:
            reason = str(exc)
        else:
            kb.documents += len(documents)
            kb.chunks.extend(chunks)
            continue
        kb.skipped.append(SkippedFile(rel, reason))
        log.warning("knowledge base: skipped %s: %s", rel, reason)
    kb.load_seconds = time.perf_counter() - started
    if not kb.chunks:
        log.warning("knowledge base %s is empty: every answer will say so", root)
    return kb
