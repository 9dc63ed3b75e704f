"""Stored entries read back in the API's wire shape, key order included (it is the JSON's)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from chatbot_sessions.domain import NewMessage, Source
from chatbot_sessions.sessions.codec import decode_message, encode_message
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
