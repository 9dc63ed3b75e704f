"""Streamed replies in tests: a generator that writes slowly, and an SSE reader."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from chatbot_sessions.domain import Message, Reply, Source


class SlowStream:
    """A ``ReplyStream``: ``parts`` one by one, ``pause`` seconds apart."""

    def __init__(self, parts: Sequence[str], pause: float, sources: Sequence[Source]) -> None:
        self.parts = list(parts)
        self.pause = pause
        self.sources = tuple(sources)
        self.degraded = False
        self.closed = threading.Event()

    def __iter__(self) -> Iterator[str]:
        for n, part in enumerate(self.parts):
            if self.closed.is_set():
                return
            if n:
                time.sleep(self.pause)
            yield part

    def close(self) -> None:
        self.closed.set()


class SlowGenerator:
    """Answers ``answer to: <question>`` in ``parts`` pieces, ``pause`` seconds apart."""

    def __init__(self, parts: int = 5, pause: float = 0.05) -> None:
        self.parts = parts
        self.pause = pause
        self.calls = 0
        self.streams: list[SlowStream] = []

    def pieces(self, question: str) -> list[str]:
        words = f"answer to: {question} " + " ".join(f"w{n}" for n in range(self.parts))
        split = words.split(" ")
        return [w + (" " if i < len(split) - 1 else "") for i, w in enumerate(split)]

    def generate(self, question: str, history: Sequence[Message]) -> Reply:
        self.calls += 1
        return Reply("".join(self.pieces(question)), (Source("Guide", "guide.md", 1.5),))

    def stream(self, question: str, history: Sequence[Message]) -> SlowStream:
        self.calls += 1
        stream = SlowStream(self.pieces(question), self.pause, (Source("Guide", "guide.md", 1.5),))
        self.streams.append(stream)
        return stream


@dataclass
class Event:
    """One parsed SSE event."""

    id: int
    name: str
    data: dict
    raw: str = field(repr=False, default="")


def parse_events(chunks: Iterable[bytes | str]) -> Iterator[Event | str]:
    """SSE frames from a byte stream as ``Event``s; comment lines come out as strings."""
    buffer = ""
    for chunk in chunks:
        buffer += chunk.decode() if isinstance(chunk, bytes) else chunk
        while "\n\n" in buffer:
            frame, buffer = buffer.split("\n\n", 1)
            if frame.startswith(":"):
                yield frame
                continue
            fields = dict(line.split(": ", 1) for line in frame.splitlines())
            yield Event(int(fields["id"]), fields["event"], json.loads(fields["data"]), frame)
