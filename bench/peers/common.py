"""What both peers share with the service, so only session handling differs: the same
extractive replies over the same shipped documentation, and the same JSON answer shapes."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime

from chatbot_sessions.replies.extractive import ExtractiveGenerator
from chatbot_sessions.replies.knowledge import load_knowledge_base, shipped_corpus_dir
from chatbot_sessions.replies.retriever import Retriever

REDIS_URL = os.environ["REDIS_URL"]
TTL = int(os.environ.get("SESSION_TTL", "86400"))
GENERATOR = ExtractiveGenerator(Retriever(load_knowledge_base(shipped_corpus_dir())))


def now() -> str:
    """An ISO timestamp, as the service writes them."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_id() -> str:
    return str(uuid.uuid4())


def reply_to(question: str, history: list[dict]) -> tuple[str, list[dict]]:
    """The service's default reply (text, sources) for ``question`` after ``history``."""
    reply = GENERATOR.generate(question, history)
    sources = [{"title": s.title, "source": s.source, "score": s.score} for s in reply.sources]
    return reply.text, sources
