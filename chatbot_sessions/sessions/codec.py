"""How messages and replies are written into Redis values, and read back: one encoder for
the store, the idempotency records, and export/import.

A message entry is ``<t><ms base 36>|<content>``: about 10 bytes of overhead, where a JSON
object per message spent about 60 on key names and an ISO date. ``t`` is ``u``/``a``, or
``U``/``A`` when a line of JSON sources sits between the ``|`` and the content (JSON never
holds a raw newline, so the first newline ends it). A ``~`` after the stamp marks an answer
the user stopped mid-way, a ``!`` one the generator fell back to (degraded). The API still
shows the wire shape ``{id, type, content, timestamp[, sources]}``, where ``id`` is the
message's absolute position (the n-th message ever appended to the session, from 0): not
stored in the entry, since the list's position and the session's ``seq`` give it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import orjson

from chatbot_sessions.domain import Message, MessageFeedback, NewMessage, Reply, Source
from chatbot_sessions.timestamps import MILLIS_SUFFIX, iso_second, ms_from_iso

_TYPE_CODES = {"user": "u", "assistant": "a"}
_TYPE_NAMES = {code: name for name, code in _TYPE_CODES.items()}
#: The first letter of an assistant entry, with and without sources (for the scripts).
ANSWER_CODES = "aA"
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
#: Marks after the stamp: ``~`` stopped, ``!`` degraded (never base-36 digits).
_DEGRADED = "!"
_FLAGS = "~" + _DEGRADED


#: Every two-digit base-36 string, by its value: a millisecond stamp takes four steps, not eight.
_PAIRS = [high + low for high in _DIGITS for low in _DIGITS]


def _base36(number: int) -> str:
    out = ""
    while number >= 1296:
        number, rest = divmod(number, 1296)
        out = _PAIRS[rest] + out
    return (_PAIRS[number].lstrip("0") or "0") + out


def encode_message(message: NewMessage) -> str:
    """The compact stored entry of ``message`` (scores rounded to 4 places)."""
    code = _TYPE_CODES[message.type]
    flags = ("~" if message.stopped else "") + (_DEGRADED if message.degraded else "")
    stamp = _base36(message.at_ms) + flags
    if not message.sources:
        return f"{code}{stamp}|{message.content}"
    sources = _dumps([[s.title, s.source, round(s.score, 4)] for s in message.sources])
    return f"{code.upper()}{stamp}|{sources}\n{message.content}"


def _dumps(rows: list[list[Any]]) -> str:
    # orjson in C, as compact as the standard library's with these separators and
    # ensure_ascii off (the same text for the same rows: tested). Two cases take the
    # standard library: a title with a lone surrogate, which orjson refuses, and a score
    # that is not finite, which orjson would write as null rather than NaN.
    if all(math.isfinite(row[2]) for row in rows):
        try:
            return orjson.dumps(rows).decode()
        except TypeError:
            pass
    return json.dumps(rows, ensure_ascii=False, separators=(",", ":"))


def _loads(text: str) -> Any:
    # orjson parses in C (every history page decodes every answer's sources); it refuses
    # what the standard library accepts in a few corners, such as a lone surrogate escape.
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


#: An entry's first letter: its type, and whether a line of sources follows the ``|``.
_KINDS = {code: (name, False) for code, name in _TYPE_NAMES.items()} | {
    code.upper(): (name, True) for code, name in _TYPE_NAMES.items()
}


def decode_message(raw: str, position: int, feedback: MessageFeedback | None = None) -> Message:
    """Turn the stored entry at absolute ``position`` back into the wire shape
    ``{id, type, content, timestamp[, sources][, feedback]}``.

    This runs for every message of every history page, so the usual entry (no marks) takes
    the fewest steps; the keys come out in the same order on every path.
    """
    head, _, rest = raw.partition("|")
    kind, has_sources = _KINDS[head[0]]
    stamp = head[1:]
    flags = ""
    if not stamp[-1].isalnum():  # marks follow the base-36 digits
        digits = stamp.rstrip(_FLAGS)
        stamp, flags = digits, stamp[len(digits) :]
    seconds, millis = divmod(int(stamp, 36), 1000)
    timestamp = iso_second(seconds) + MILLIS_SUFFIX[millis]
    message: dict[str, Any]
    if has_sources:
        sources, _, rest = rest.partition("\n")
        message = {
            "id": position,
            "type": kind,
            "sources": [
                {"title": title, "source": source, "score": score}
                for title, source, score in _loads(sources)
            ],
            "content": rest,
            "timestamp": timestamp,
        }
    else:
        message = {"id": position, "type": kind, "content": rest, "timestamp": timestamp}
    if flags:
        if "~" in flags:
            message["stopped"] = True
        if _DEGRADED in flags:
            message["degraded"] = True
    if feedback is not None:
        message["feedback"] = feedback
    return message  # type: ignore[return-value]


def is_degraded(head: str) -> bool:
    """Whether an entry, or its head (type, stamp and marks: what precedes the ``|``), is
    marked degraded."""
    return _DEGRADED in head.partition("|")[0]


def encode_feedback(rating: str, comment: str | None, at_ms: int) -> str:
    """A rating as the session's feedback hash stores it: ``[rating, comment, at_ms]``."""
    return json.dumps([rating, comment, at_ms], ensure_ascii=False, separators=(",", ":"))


def decode_feedback(raw: str) -> tuple[MessageFeedback, int]:
    """Inverse of ``encode_feedback``: the rating as history shows it, and when it was given."""
    rating, comment, at_ms = json.loads(raw)
    return {"rating": rating, "comment": comment}, int(at_ms)


def message_from_wire(message: Mapping[str, Any]) -> NewMessage:
    """A wire-shape message (an imported document's) as a message to store."""
    sources = tuple(
        Source(title=s["title"], source=s["source"], score=s["score"])
        for s in message.get("sources") or ()
    )
    return NewMessage(
        message["type"],
        message["content"],
        ms_from_iso(message["timestamp"]),
        sources,
        stopped=bool(message.get("stopped")),
        degraded=bool(message.get("degraded")),
    )


def encode_reply(reply: Reply) -> str:
    """Serialise a reply for an idempotency record, floats and all, so a replay is identical
    (a stopped reply replays as stopped)."""
    sources = [[s.title, s.source, s.score] for s in reply.sources]
    return json.dumps([reply.text, sources, reply.degraded, reply.stopped], separators=(",", ":"))


def decode_reply(raw: str) -> Reply:
    """Inverse of ``encode_reply``; a record written before replies kept ``stopped`` (three
    items) reads as not stopped."""
    text, sources, degraded, *stopped = json.loads(raw)
    return Reply(
        text, tuple(Source(*s) for s in sources), bool(degraded), bool(stopped and stopped[0])
    )
