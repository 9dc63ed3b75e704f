"""Reply generation: the generator protocol, its implementations and their factory.

``build_generator(...)`` is the entry point for the app factory. Every generator it
returns has a ``retriever`` attribute (a ``Retriever``: ``.stats``, ``.search()``)
through which ``flask kb`` inspects the knowledge base.
"""

from chatbot_sessions.domain import Message, Reply, Source
from chatbot_sessions.replies.base import ReplyGenerator
from chatbot_sessions.replies.factory import build_generator

__all__ = ["Message", "Reply", "ReplyGenerator", "Source", "build_generator"]
