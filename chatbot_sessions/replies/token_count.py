"""Counting tokens as the model sees them, for the token-budgeted conversation context.

Counts are exact ``o200k_base`` counts (the encoding of gpt-4o and gpt-4o-mini, the default
``LLM_MODEL``) from quicktok, whose tables ship inside its wheel: nothing is downloaded at
run time. On the shipped corpus o200k counts are within 0.5 % of cl100k_base and Llama 3
counts in total; non-Latin text costs those encodings more (docs/performance.md).

Should quicktok fail to load, ``estimate_tokens`` counts instead and a warning is logged
once. The tokenizer loads on first use (about 0.5 s); ``load_counter`` does it up front.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger(__name__)

ENCODING = "o200k_base"

#: Tokens a chat format adds around each message's role and content: <|start|>,
#: the separator after the role and <|end|>, as OpenAI's cookbook counts them for its
#: chat models (``tokens_per_message = 3``).
MESSAGE_OVERHEAD = 3
#: Tokens that prime the model's reply (<|start|>assistant<|message|>), once per request.
REPLY_PRIMING = 3

_lock = threading.Lock()
_counter: Callable[[str], int] | None = None
_counter_name = ""


def count_tokens(text: str) -> int:
    """Tokens in ``text`` (o200k_base; estimated if the tokenizer cannot load). Thread-safe."""
    if not text:
        return 0
    return (_counter or load_counter())(text)


def count_message_tokens(message: Mapping[str, Any]) -> int:
    """Tokens one chat message costs: its content, its role and ``MESSAGE_OVERHEAD``.

    Takes a chat-completions message (``role``) or a stored one (``type``: user or
    assistant). A request's total is the sum over its messages plus ``REPLY_PRIMING``.
    """
    role = message.get("role") or message.get("type") or ""
    return MESSAGE_OVERHEAD + count_tokens(role) + count_tokens(message.get("content") or "")


def most_message_tokens(message: Mapping[str, Any]) -> int:
    """At least ``count_message_tokens(message)``, without tokenising: a token is at least one
    byte of UTF-8, and the fallback estimate gives at most ``ESTIMATE_MARGIN`` tokens a byte
    (each of its pieces at most one token a byte, before the margin; a margin under 1 would
    not bound quicktok's counts, hence ``_PER_BYTE``'s max)."""
    total = MESSAGE_OVERHEAD
    for text in (message.get("role") or message.get("type") or "", message.get("content") or ""):
        size = len(text) if text.isascii() else len(text.encode("utf-8"))
        total += int(size * _PER_BYTE + 0.5)
    return total


def counter_name() -> str:
    """What counts: ``quicktok o200k_base`` or ``estimate`` (the fallback)."""
    load_counter()
    return _counter_name


def load_counter() -> Callable[[str], int]:
    """Load the tokenizer once (every later call returns at once); fall back to the estimate."""
    global _counter, _counter_name
    if _counter is not None:
        return _counter
    with _lock:
        if _counter is None:
            try:
                import quicktok

                counter = quicktok.get_encoding(ENCODING).count
                counter("warm up")
                _counter_name = f"quicktok {ENCODING}"
            except Exception as exc:  # ImportError, or its data missing: any failure to load
                log.warning(
                    "token counter: quicktok %s unavailable (%s); estimating token counts",
                    ENCODING,
                    exc,
                )
                counter, _counter_name = estimate_tokens, "estimate"
            _counter = counter
    return _counter


# --- the fallback estimator -----------------------------------------------------------
# Pieces as o200k's pre-tokeniser cuts them (a word keeps its leading space, numbers go
# by up to three digits, a case change starts a new word), each costing what BPE
# usually makes of it. Its parameters were fitted to o200k counts of the shipped corpus
# (English) and a handful of non-Latin chat turns; ESTIMATE_MARGIN then tips it to
# over-counting, the safe side of a budget. Accuracy: docs/performance.md.
_WIDE = r"\u1100-\u11ff\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef\U00020000-\U0003ffff"
_SYMBOL = r"\u2190-\u2bff\ufe0f\u200d\U0001f000-\U0001faff"
_PIECE = re.compile(
    rf"""(?x)
      (?P<word>\ ?[A-Z]*[a-z]+(?:'[a-z]{{1,2}})?|\ ?[A-Z]+(?![a-z]))
    | (?P<number>\d{{1,3}})
    | (?P<wide>[{_WIDE}]+)
    | (?P<symbol>[{_SYMBOL}]+)
    | (?P<letters>\ ?[^\x00-\x7f\s{_WIDE}{_SYMBOL}]+)
    | (?P<punct>\ ?[^\sA-Za-z0-9\x80-\U0010ffff]+)
    | (?P<space>\s+)
    """
)
#: Characters per token, or tokens per character, by kind of piece.
_WORD_CHARS = 12
_PUNCT_CHARS = 3
_LETTER_CHARS = 4.5  # Cyrillic, Greek, Arabic, Devanagari, accented Latin ...
_WIDE_TOKENS = 0.7  # CJK, kana, hangul: per character
_SYMBOL_TOKENS = 1.0  # emoji and other symbols: per code point
ESTIMATE_MARGIN = 1.1
#: Tokens a byte of text costs at most, under either counter (``most_message_tokens``).
_PER_BYTE = max(1.0, ESTIMATE_MARGIN)


def estimate_tokens(text: str) -> int:
    """An estimate of o200k_base tokens in ``text`` from its pieces, with no tokenizer data."""
    tokens = 0.0
    for match in _PIECE.finditer(text):
        kind, size = match.lastgroup, len(match.group().lstrip(" ") or " ")
        if kind == "word":
            tokens += math.ceil(size / _WORD_CHARS)
        elif kind == "punct":
            tokens += math.ceil(size / _PUNCT_CHARS)
        elif kind == "letters":
            tokens += math.ceil(size / _LETTER_CHARS)
        elif kind == "wide":
            tokens += math.ceil(size * _WIDE_TOKENS)
        elif kind == "symbol":
            tokens += math.ceil(size * _SYMBOL_TOKENS)
        else:  # number, space
            tokens += 1
    return int(tokens * ESTIMATE_MARGIN + 0.5)  # rounded: a margin is no reason to double 1
