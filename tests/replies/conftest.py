"""Fixtures shared by the reply-generation tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from chatbot_sessions.replies.factory import build_retriever
from chatbot_sessions.replies.knowledge import load_knowledge_base
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
def embedding_cache(tmp_path_factory) -> Path:
    """One embedding cache folder per test run: the shipped docs are embedded once."""
    return tmp_path_factory.mktemp("embeddings")


@pytest.fixture(scope="session")
def hybrid_corpus_retriever(embedding_cache) -> Retriever:
    """The default configuration (``RETRIEVAL=hybrid``) over the shipped documentation."""
    return build_retriever(None, "hybrid", str(embedding_cache))


@pytest.fixture(scope="session", params=["bm25", "hybrid"])
def corpus_retriever(request) -> Retriever:
    """A retriever over the shipped documentation in each mode, shared because it is read-only."""
    if request.param == "hybrid":
        return request.getfixturevalue("hybrid_corpus_retriever")
    return build_retriever(None, "bm25")


@pytest.fixture
def kb_retriever(make_kb) -> Retriever:
    """A retriever over ``LLM_KB``, the LLM tests' small knowledge base."""
    return Retriever(load_knowledge_base(make_kb(LLM_KB)))
