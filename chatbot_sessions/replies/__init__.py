"""Reply generation: the generator protocol and its implementations."""

from chatbot_sessions.replies.base import Message, Reply, ReplyGenerator, Source

__all__ = ["Message", "Reply", "ReplyGenerator", "Source"]
