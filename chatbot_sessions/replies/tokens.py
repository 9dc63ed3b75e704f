"""Turning text into the terms that BM25 indexes and queries are compared on.

Indexing and querying must use exactly the same rules, otherwise a question can
never match the passage that answers it; that is why both go through ``terms``.
"""

from __future__ import annotations

import re
import string
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
#: Every byte no word contains, to a space (see ``words``): bytes.translate is a table
#: lookup a byte, str.translate a dict lookup a character.
_NOT_IN_WORDS = bytes(
    b if chr(b) in string.ascii_lowercase + string.digits + "_-" else ord(" ") for b in range(256)
)
#: Words a text's words are filtered of: the stop words, and single letters (left-overs of
#: "what's" or "don't", not topics; single digits stay).
_DROPPED = STOPWORDS | frozenset(string.ascii_lowercase)

_local = threading.local()
#: Stems by word, shared by all threads (a word's stem never changes): a dict lookup costs
#: a fraction of PyStemmer's call per word. Bounded, as PyStemmer's own cache is: words
#: met once it is full are stemmed every time. Only words up to ``_STEM_WORD_MAX``
#: characters are kept (English words are shorter): a client's question is one 4,000-
#: character "word" if it likes, and 100,000 of those would hold a gigabyte.
_stems: dict[str, str] = {}
_STEMS_KEPT = 100_000
_STEM_WORD_MAX = 32


def _stemmer() -> Stemmer.Stemmer:
    # PyStemmer objects are not thread-safe, so each thread gets its own.
    stemmer = getattr(_local, "stemmer", None)
    if stemmer is None:
        stemmer = _local.stemmer = Stemmer.Stemmer("english")
    return stemmer


def words(text: str) -> list[str]:
    """Lower-cased words of ``text`` without stop words, compound identifiers also split."""
    lowered = text.lower()
    # The regex's matches, found faster in ASCII text (nearly every question): split at the
    # characters no word contains, and each piece is a match unless it holds "_" or "-",
    # which the regex then sorts out ("--x_" is the word "x"). Other text: the regex alone.
    if lowered.isascii():
        pieces = lowered.encode("ascii").translate(_NOT_IN_WORDS).decode("ascii").split()
    else:
        pieces = _WORD.findall(lowered)
    if "_" not in lowered and "-" not in lowered:  # no compound identifiers: every piece a word
        return [word for word in pieces if word not in _DROPPED]
    out: list[str] = []
    for piece in pieces:
        if "_" not in piece and "-" not in piece:
            if piece not in _DROPPED:
                out.append(piece)
            continue
        for word in _WORD.findall(piece):
            if "_" in word or "-" in word:
                parts = [p for p in re.split(r"[_-]", word) if p and p not in STOPWORDS]
                out.append(word)
                out.extend(parts)
            elif word not in _DROPPED:
                out.append(word)
    return out


def terms(text: str) -> list[str]:
    """The stemmed index terms of ``text`` (order kept, duplicates kept)."""
    found = words(text)
    if not found:
        return []
    stems = [_stems.get(word) for word in found]
    if None not in stems:
        return stems  # type: ignore[return-value]
    stemmed = _stemmer().stemWords(found)
    if len(_stems) < _STEMS_KEPT:
        _stems.update(
            (word, stem)
            for word, stem in zip(found, stemmed, strict=True)
            if len(word) <= _STEM_WORD_MAX
        )
    return stemmed
