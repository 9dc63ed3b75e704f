"""Stored entries read back in the API's wire shape, key order included (it is the JSON's)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from hypothesis import example, given, settings
from hypothesis import strategies as st

from chatbot_sessions.domain import NewMessage, Source
from chatbot_sessions.sessions.codec import _base36, decode_message, encode_message
from chatbot_sessions.timestamps import iso_from_ms

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Up to the year 9999, as JavaScript's toISOString writes with four digits.
MS = st.integers(min_value=0, max_value=253_402_300_799_999)
sources = st.builds(
    Source,
    title=st.text(max_size=20),
    source=st.text(max_size=20),
    score=st.floats(min_value=-1e6, max_value=1e6, allow_nan=False).map(lambda x: round(x, 4)),
)
messages = st.builds(
    NewMessage,
    type=st.sampled_from(["user", "assistant"]),
    content=st.text(max_size=60),  # "|", newlines and the marks "~!" included
    at_ms=MS,
    sources=st.lists(sources, max_size=3).map(tuple),
    stopped=st.booleans(),
    degraded=st.booleans(),
)
feedback = st.none() | st.fixed_dictionaries(
    {"rating": st.sampled_from(["up", "down"]), "comment": st.none() | st.text(max_size=10)}
)


def iso_by_datetime(ms: int) -> str:
    """The same stamp worked out by datetime alone, as toISOString would print it."""
    return (EPOCH + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds")[:-6] + "Z"


@given(MS)
def test_timestamps_read_as_javascripts_to_iso_string(ms):
    assert iso_from_ms(ms) == iso_by_datetime(ms)
    assert iso_from_ms(str(ms)) == iso_from_ms(ms)


@given(messages, st.integers(min_value=0, max_value=10**9), feedback)
def test_every_entry_reads_back_as_it_was_written(message, position, rating):
    decoded = decode_message(encode_message(message), position, rating)
    expected = {"id": position, "type": message.type}
    if message.sources:
        expected["sources"] = [
            {"title": s.title, "source": s.source, "score": s.score} for s in message.sources
        ]
    expected["content"] = message.content
    expected["timestamp"] = iso_by_datetime(message.at_ms)
    if message.stopped:
        expected["stopped"] = True
    if message.degraded:
        expected["degraded"] = True
    if rating is not None:
        expected["feedback"] = rating
    assert decoded == expected
    assert list(decoded) == list(expected)  # the order the JSON answer shows


@settings(max_examples=300, deadline=None)
@example([("Config", "configuration.md", float("nan")), ("x", "y", float("-inf"))])
@example([("lone \udc80 surrogate", "a.md", 0.12345)])
@example([("Caf\u00e9 \U0001f600", "\u2028.md", 1e16), ("-0", "z", -0.0)])
@given(
    st.lists(
        st.tuples(
            st.text(st.characters(exclude_categories=())),  # lone surrogates too
            st.text(),
            st.floats() | st.integers(-(2**63), 2**63 - 1),  # NaN and infinities too
        ),
        max_size=5,
    )
)
def test_sources_are_stored_as_the_standard_library_would_write_them(rows) -> None:
    # Entries written before orjson wrote them must compare equal to new ones (exports,
    # replays): the same text for the same sources, lone surrogates included.
    sources = [Source(title=t, source=s, score=score) for t, s, score in rows]
    entry = encode_message(NewMessage("assistant", "answer", 1_700_000_000_000, tuple(sources)))
    expected = json.dumps(
        [[s.title, s.source, round(s.score, 4)] for s in sources],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    if sources:
        assert entry.split("|", 1)[1] == f"{expected}\nanswer"
    decoded = decode_message(entry, 0)
    assert decoded["content"] == "answer"
    # (compared as repr: NaN is not equal to itself)
    assert repr([tuple(s.values()) for s in decoded.get("sources", [])]) == repr(
        [(s.title, s.source, round(s.score, 4)) for s in sources]
    )


@given(st.integers(min_value=0, max_value=10**18))
def test_base36_stamps_read_back_and_have_no_leading_zero(number) -> None:
    text = _base36(number)
    assert int(text, 36) == number
    assert text == "0" or not text.startswith("0")
    assert text == text.lower() and text.isalnum()
