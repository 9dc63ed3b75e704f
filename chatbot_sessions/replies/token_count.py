"""Counting tokens offline, for the context budget (``CONTEXT_TOKENS``).

An estimator until a tokenizer whose data ships in a package is chosen: about four
characters of English per token, which slightly over-counts prose (the safe side for a
budget).
"""

from __future__ import annotations

import math

from chatbot_sessions.domain import Message

#: Tokens a chat format spends around each message (role and separators).
MESSAGE_OVERHEAD = 4


def count_tokens(text: str) -> int:
    """Tokens ``text`` takes (estimated)."""
    return math.ceil(len(text) / 4) if text else 0


def count_message_tokens(message: Message) -> int:
    """Tokens a history message takes: its content plus the per-message overhead."""
    return count_tokens(message["content"]) + MESSAGE_OVERHEAD
