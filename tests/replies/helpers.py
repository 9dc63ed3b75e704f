"""Small builders shared by the reply tests (fixtures live in conftest.py)."""

from __future__ import annotations

from typing import Any

from chatbot_sessions.domain import Message
from chatbot_sessions.replies.llm import ChatCompletionsClient, LLMGenerator
from chatbot_sessions.replies.retriever import Retriever
from tests.support.fake_llm import FakeLLM

#: The knowledge base of the LLM tests (``kb_retriever``): one page answers QUESTION.
LLM_KB = {
    "redis.md": (
        "# Redis guide\n\n## Persistence\n\n"
        "The append-only file logs every write for better durability. "
        "Snapshots are written to disk every few minutes.\n"
    ),
    "fish.md": "# Fish\n\n## Tanks\n\nA fish tank needs a filter and clean water.\n",
}
QUESTION = "How does the append-only file help durability?"
#: The extractive answer to QUESTION: what a degraded reply says.
ANSWER = "The append-only file logs every write for better durability."


def turns(*pairs: tuple[str, str]) -> list[Message]:
    """History messages from ``(type, content)`` pairs, oldest first."""
    return [
        Message(type=kind, content=content, timestamp=f"2026-01-01T00:00:{i:02d}Z")  # type: ignore[typeddict-item]
        for i, (kind, content) in enumerate(pairs)
    ]


def llm_generator(
    retriever: Retriever,
    server: FakeLLM,
    *,
    timeout: float = 2.0,
    context_messages: int = 10,
    **client_kw: Any,
) -> LLMGenerator:
    """An ``LLMGenerator`` asking the fake server, with recognisable settings."""
    client = ChatCompletionsClient(
        server.base_url,
        model="test-model",
        api_key="sk-test",
        timeout=timeout,
        max_tokens=123,
        **client_kw,
    )
    return LLMGenerator(retriever, client, context_messages=context_messages)
