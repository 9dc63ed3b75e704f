"""Reply generation: the generator protocol, its implementations and their factory.

``init_app`` builds the configured generator once (or takes one given), registers it, its
closing (the LLM client's connection pool), its reloader (``reloading.py``: a thread each
serving process starts, which swaps in a rebuilt index after ``flask kb reload``), the
reload control those requests go through (``reload_control.py``) and the ``flask kb`` CLI.
Every generator
``build_generator`` returns has a ``retriever`` attribute (a ``Retriever``: ``.stats``,
``.search()``) through which ``flask kb`` inspects the knowledge base, and a ``stream()``
(``StreamingReplyGenerator``) for replies sent to the browser as they are written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chatbot_sessions import extensions
from chatbot_sessions.config import Settings
from chatbot_sessions.exceptions import StoreUnavailable
from chatbot_sessions.replies.base import (
    ReplyGenerator,
    ReplyStream,
    StreamingReplyGenerator,
    TextStream,
    collect,
)
from chatbot_sessions.replies.cli import kb_cli
from chatbot_sessions.replies.factory import build_generator, build_retriever
from chatbot_sessions.replies.reload_control import ReloadControl
from chatbot_sessions.replies.reloading import KnowledgeReloader
from chatbot_sessions.replies.summary import Summariser

if TYPE_CHECKING:
    from flask import Flask

__all__ = [
    "ReplyGenerator",
    "ReplyStream",
    "StreamingReplyGenerator",
    "TextStream",
    "build_generator",
    "build_retriever",
    "collect",
    "init_app",
]


def init_app(
    app: Flask, settings: Settings, generator: ReplyGenerator | None = None
) -> ReplyGenerator:
    """Register the reply generator: retrieval over KNOWLEDGE_DIR (or the shipped docs),
    through the LLM when configured, unless ``generator`` is given."""
    resources = extensions.resources(app)
    versions = extensions.get_required(resources.knowledge_versions, "knowledge versions")
    # Whatever the generator: `flask kb reload` and the admin API may ask other processes.
    resources.reload_control = ReloadControl(versions, settings.knowledge_poll_interval)
    if generator is None:
        try:  # read before the folder: the index then holds at least this version's files
            version: int | None = versions.current()
        except StoreUnavailable:
            version = None  # the first poll that reaches Redis decides
        generator = build_generator(
            knowledge_dir=settings.knowledge_dir,
            retrieval=settings.retrieval,
            embedding_cache_dir=settings.embedding_cache_dir,
            llm_base_url=settings.llm_base_url,
            llm_api_key=settings.llm_api_key,
            llm_model=settings.llm_model,
            llm_timeout=settings.llm_timeout,
            llm_max_tokens=settings.llm_max_tokens,
            context_messages=settings.context_messages,
        )
        close = getattr(generator, "close", None)
        if close is not None:
            resources.on_close(close)
        client = getattr(generator, "client", None)
        if client is not None:  # the LLM that answers also keeps long conversations' summary
            resources.summariser = Summariser(client)
        resources.reloader = reloader = KnowledgeReloader(
            generator, versions, interval=settings.knowledge_poll_interval, version=version
        )
        resources.on_start(reloader.start)
        resources.on_close(reloader.stop)
    resources.generator = generator
    app.cli.add_command(kb_cli)
    return generator
