"""Turning text into the terms that BM25 indexes and queries are compared on.

Indexing and querying must use exactly the same rules, otherwise a question can
never match the passage that answers it; that is why both go through ``terms``.
"""

from __future__ import annotations

import re
import threading

import Stemmer

# Question words and glue that carry no topic. Kept deliberately short: words such
# as "down", "off" or "up" are stop words in bigger lists but matter here
# ("Redis is down").
STOPWORDS = frozenset(
    """
    a an and are as at be been but by can could did do does doing for from had has
    have how i if in into is it its me my no of on or our should so such than that
    the their them then there these they this those to us was we were what when
    where which who whom why will with would you your about also any just please
    """.split()  # noqa: SIM905 - a word list reads better as text
)

# Identifiers such as SESSION_TTL or chat_session:{id} are kept whole *and* split,
# so "session ttl" and "SESSION_TTL" both find the same passage.
_WORD = re.compile(r"[a-z0-9]+(?:[_-][a-z0-9]+)*")

_local = threading.local()


def _stemmer() -> Stemmer.Stemmer:
    # PyStemmer objects are not thread-safe, so each thread gets its own.
    stemmer = getattr(_local, "stemmer", None)
    if stemmer is None:
        stemmer = _local.stemmer = Stemmer.Stemmer("english")
    return stemmer


def words(text: str) -> list[str]:
    """Lower-cased words of ``text`` without stop words, compound identifiers also split."""
    out: list[str] = []
    # findall: one scan in C, where finditer paid a call and a match object per word.
    for word in _WORD.findall(text.lower()):
        if "_" in word or "-" in word:
            parts = [p for p in re.split(r"[_-]", word) if p and p not in STOPWORDS]
            out.append(word)
            out.extend(parts)
        elif word not in STOPWORDS and (len(word) > 1 or word.isdigit()):
            # Single letters are left-overs of "what's" or "don't", not topics.
            out.append(word)
    return out


def terms(text: str) -> list[str]:
    """The stemmed index terms of ``text`` (order kept, duplicates kept)."""
    found = words(text)
    if not found:
        return []
    return _stemmer().stemWords(found)
