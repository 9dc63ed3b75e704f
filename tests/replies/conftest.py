"""Fixtures shared by the reply-generation tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from chatbot_sessions.replies.knowledge import load_knowledge_base, shipped_corpus_dir
from chatbot_sessions.replies.retriever import Retriever
from tests.replies.helpers import LLM_KB


@pytest.fixture
def make_kb(tmp_path: Path) -> Callable[[dict[str, str | bytes]], Path]:
    """Write ``{relative path: content}`` into a fresh knowledge folder and return it."""

    def make(files: dict[str, str | bytes]) -> Path:
        root = tmp_path / "kb"
        root.mkdir(exist_ok=True)
        for name, content in files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
        return root

    return make


@pytest.fixture(scope="session")
def corpus_retriever() -> Retriever:
    """One retriever over the shipped documentation, shared because it is read-only."""
    return Retriever(load_knowledge_base(shipped_corpus_dir()))


@pytest.fixture
def kb_retriever(make_kb) -> Retriever:
    """A retriever over ``LLM_KB``, the LLM tests' small knowledge base."""
    return Retriever(load_knowledge_base(make_kb(LLM_KB)))
