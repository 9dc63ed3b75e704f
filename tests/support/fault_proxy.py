"""A fault-injecting TCP proxy in front of a real redis-server, for exactly-once tests.

A client connected to the proxy talks to Redis as usual, but the proxy reads enough of the
protocol (RESP requests; RESP2 and RESP3 replies, nested, pipelined) to pair every reply
with the command it answers, per connection. That lets a test lose precisely the reply of
a command that *ran*, which no timeout or killed server can do deterministically: the
client sees a connection error although the write happened, the case a retry turns into a
duplicate.

Faults are armed from the test thread and fire on the proxy's threads:

- ``swallow_next_reply``: the command reaches Redis and runs; its reply is read and
  discarded, and the client connection is reset (RST). Bytes the client sent after that
  command are never forwarded, so exactly one command ran without an answer. An error
  reply (such as ``NOSCRIPT``, where nothing ran) is passed on by default and the fault
  stays armed for the next match, so the fault lands on the call that did run.
- ``lose_replies``: the same, for a seeded random 1 in N of the matching commands.
- ``close_mid_command``: only the first half of the command reaches Redis, then both
  connections close; Redis discards the fragment, so the command does not run.
- ``delay``: replies are held for a while before they are passed on (a stall).

Everything listens on and connects to 127.0.0.1. The proxy assumes one reply per command,
which holds for everything but pub/sub, MONITOR and ``CLIENT REPLY OFF``.
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from tests.support.processes import free_port

#: The commands that run a server-side script or function: what the exactly-once faults
#: usually target.
SCRIPT_CALLS = frozenset({"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO"})

_CHUNK = 65536
_POLL = 0.05  # how often blocked proxy threads look whether they should stop

# RESP reply types by first byte. Aggregates name how many values follow per counted item.
_SIMPLE = frozenset(b"+-:_,#(")
_BLOB = frozenset(b"$!=")
_AGGREGATE = {ord("*"): 1, ord("~"): 1, ord(">"): 1, ord("%"): 2, ord("|"): 2}
_ERRORS = frozenset(b"-!")


class ProtocolError(Exception):
    """Bytes that are not RESP: the proxy closes that connection rather than guess."""


class _Incomplete(Exception):
    """The buffer ends inside a value; wait for more bytes."""


def _line_end(buf: bytearray, pos: int) -> int:
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise _Incomplete
    return end


def _int_at(buf: bytearray, start: int, end: int) -> int:
    try:
        return int(buf[start:end])
    except ValueError:
        raise ProtocolError(f"bad length {bytes(buf[start:end])!r}") from None


def _skip_reply(buf: bytearray, pos: int, *, annotated: bool = True) -> int:
    """Offset just past the reply value starting at ``pos``; for an attribute map, past the
    value it annotates too, unless ``annotated`` is false."""
    if pos >= len(buf):
        raise _Incomplete
    kind = buf[pos]
    end = _line_end(buf, pos + 1)
    if kind in _SIMPLE:
        return end + 2
    length = _int_at(buf, pos + 1, end)
    if kind in _BLOB:
        stop = end + 2 if length < 0 else end + 2 + length + 2
        if stop > len(buf):
            raise _Incomplete
        return stop
    if kind not in _AGGREGATE:
        raise ProtocolError(f"unknown reply type {chr(kind)!r}")
    pos = end + 2
    for _ in range(max(length, 0) * _AGGREGATE[kind]):
        pos = _skip_reply(buf, pos)
    if kind == ord("|") and annotated:
        pos = _skip_reply(buf, pos)
    return pos


def parse_reply(buf: bytearray, pos: int = 0) -> tuple[int, bool, bool] | None:
    """The reply at ``pos``: (offset after it, is an error, is a RESP3 push), or None if the
    buffer ends first. A push answers no command."""
    try:
        end = _skip_reply(buf, pos)
        head = pos  # the type that counts is the annotated value's, not its attributes'
        while buf[head] == ord("|"):
            head = _skip_reply(buf, head, annotated=False)
    except _Incomplete:
        return None
    return end, buf[head] in _ERRORS, buf[head] == ord(">")


def parse_command(buf: bytearray, pos: int = 0) -> tuple[list[bytes], int] | None:
    """The request at ``pos``: (its words, offset after it), or None if the buffer ends first.

    Requests are arrays of bulk strings; an inline command (a plain line) is accepted too.
    No words (an empty line, ``*0``) means a request Redis ignores without replying.
    """
    if pos >= len(buf):
        return None
    try:
        if buf[pos] != ord("*"):
            end = buf.find(b"\n", pos)
            if end < 0:
                return None
            return bytes(buf[pos:end]).split(), end + 1
        end = _line_end(buf, pos + 1)
        count = _int_at(buf, pos + 1, end)
        pos = end + 2
        words = []
        for _ in range(max(count, 0)):
            if pos >= len(buf):
                return None
            if buf[pos] != ord("$"):
                raise ProtocolError(f"request element of type {chr(buf[pos])!r}")
            end = _line_end(buf, pos + 1)
            start = end + 2
            stop = start + _int_at(buf, pos + 1, end)
            if stop + 2 > len(buf):
                return None
            words.append(bytes(buf[start:stop]))
            pos = stop + 2
        return words, pos
    except _Incomplete:
        return None


def _names(command: str | Iterable[str] | None) -> frozenset[str] | None:
    if command is None:
        return None
    if isinstance(command, str):
        return frozenset({command.upper()})
    return frozenset(name.upper() for name in command)


def _needle(containing: str | bytes | None) -> bytes | None:
    return containing.encode() if isinstance(containing, str) else containing


@dataclass
class _Rule:
    """An armed one-shot fault: fires on ``remaining`` matches, once ``skip`` have passed."""

    action: Literal["swallow", "cut"]
    commands: frozenset[str] | None
    containing: bytes | None
    remaining: int
    skip: int

    def matches(self, name: str, words: list[bytes]) -> bool:
        if self.remaining <= 0:
            return False
        if self.commands is not None and name not in self.commands:
            return False
        return self.containing is None or any(self.containing in word for word in words)


@dataclass
class _Lossy:
    """Lose the reply of a seeded-random 1 in ``one_in`` matching commands."""

    one_in: int
    commands: frozenset[str]
    rng: random.Random


@dataclass(frozen=True)
class _Fault:
    """What the proxy decided for one command, and the rule to re-arm if it is spared."""

    action: Literal["swallow", "cut"]
    rule: _Rule | None


@dataclass(frozen=True)
class ProxyStats:
    """A snapshot of what the proxy has seen and done since it started."""

    commands: Counter[str]
    replies_dropped: int
    connections_reset: int
    commands_cut: int
    errors_spared: int
    connections: int

    def since(self, earlier: ProxyStats) -> ProxyStats:
        """What happened between ``earlier`` and this snapshot."""
        return ProxyStats(
            commands=self.commands - earlier.commands,
            replies_dropped=self.replies_dropped - earlier.replies_dropped,
            connections_reset=self.connections_reset - earlier.connections_reset,
            commands_cut=self.commands_cut - earlier.commands_cut,
            errors_spared=self.errors_spared - earlier.errors_spared,
            connections=self.connections - earlier.connections,
        )


@dataclass
class _Pending:
    """A command forwarded to Redis whose reply has not come back yet."""

    fault: _Fault | None = None
    resolved: threading.Event = field(default_factory=threading.Event)


class FaultProxy:
    """A threaded TCP proxy on a free loopback port, forwarding to one Redis server.

    Use as a context manager, or ``start()``/``stop()``. All methods are thread-safe.
    """

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = free_port()
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self._lossy: _Lossy | None = None
        self._delay = 0.0
        self._delay_left: int | None = None
        self._commands: Counter[str] = Counter()
        self._counts: Counter[str] = Counter()
        self._links: set[_Link] = set()
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None

    @property
    def url(self) -> str:
        """A redis:// URL for clients that should go through the proxy."""
        return f"redis://127.0.0.1:{self.port}/0"

    # -- arming faults ---------------------------------------------------------------------

    def swallow_next_reply(
        self,
        command: str | Iterable[str] = SCRIPT_CALLS,
        count: int = 1,
        *,
        containing: str | bytes | None = None,
        after: int = 0,
    ) -> None:
        """Let the next ``count`` matching commands run, drop their replies and reset the
        client connection; ``after`` matches pass untouched first. ``containing`` narrows
        the match to commands with that substring in an argument."""
        self._arm(_Rule("swallow", _names(command), _needle(containing), count, after))

    def close_mid_command(
        self,
        command: str | Iterable[str] | None = None,
        *,
        containing: str | bytes | None = None,
        after: int = 0,
    ) -> None:
        """Forward only the first half of the next matching command (any, by default), then
        close both connections: Redis never runs it. Commands the client sent before it
        were forwarded and run; replies not yet passed on are lost with the connection."""
        self._arm(_Rule("cut", _names(command), _needle(containing), 1, after))

    def lose_replies(
        self, one_in: int, *, seed: int, command: str | Iterable[str] = SCRIPT_CALLS
    ) -> None:
        """Swallow the reply (as ``swallow_next_reply``) of a random 1 in ``one_in`` matching
        commands, drawn from ``random.Random(seed)`` so a run can be repeated; 0 turns it off."""
        names = _names(command) or frozenset()
        with self._lock:
            self._lossy = _Lossy(one_in, names, random.Random(seed)) if one_in else None

    def delay(self, seconds: float, count: int | None = None) -> None:
        """Hold each of the next ``count`` replies (all, if None) ``seconds`` after Redis sent
        it; ``delay(0)`` ends a stall."""
        with self._lock:
            self._delay, self._delay_left = seconds, count

    def clear(self) -> None:
        """Disarm every fault and stall; counters are kept."""
        with self._lock:
            self._rules.clear()
            self._lossy = None
            self._delay, self._delay_left = 0.0, None

    def armed(self) -> int:
        """How many one-shot faults are still waiting for their command (0: all fired)."""
        with self._lock:
            return sum(rule.remaining for rule in self._rules)

    def stats(self) -> ProxyStats:
        """Commands seen per name, and what the faults did."""
        with self._lock:
            return ProxyStats(
                commands=Counter(self._commands),
                replies_dropped=self._counts["dropped"],
                connections_reset=self._counts["reset"],
                commands_cut=self._counts["cut"],
                errors_spared=self._counts["spared"],
                connections=self._counts["connections"],
            )

    def _arm(self, rule: _Rule) -> None:
        if rule.remaining < 1 or rule.skip < 0:
            raise ValueError("count must be at least 1 and after at least 0")
        with self._lock:
            self._rules.append(rule)

    # -- decisions, called from the connection threads -------------------------------------

    def _decide(self, words: list[bytes]) -> _Fault | None:
        name = words[0].decode("latin-1").upper()
        with self._lock:
            self._commands[name] += 1
            for rule in self._rules:
                if not rule.matches(name, words):
                    continue
                if rule.skip:
                    rule.skip -= 1
                    continue
                rule.remaining -= 1
                self._rules = [r for r in self._rules if r.remaining > 0 or r is rule]
                return _Fault(rule.action, rule)
            lossy = self._lossy
            if lossy and name in lossy.commands and lossy.rng.randrange(lossy.one_in) == 0:
                return _Fault("swallow", None)
        return None

    def _spare(self, fault: _Fault) -> None:
        """An error reply is passed on; a one-shot fault waits for the next match instead."""
        with self._lock:
            self._counts["spared"] += 1
            if fault.rule is not None:
                fault.rule.remaining += 1
                if fault.rule not in self._rules:
                    self._rules.append(fault.rule)

    def _count(self, what: str) -> None:
        with self._lock:
            self._counts[what] += 1

    def _reply_delay(self) -> float:
        with self._lock:
            if self._delay <= 0 or self._delay_left == 0:
                return 0.0
            if self._delay_left is not None:
                self._delay_left -= 1
            return self._delay

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        """Listen on ``self.port`` and serve connections from a daemon thread."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        listener.settimeout(_POLL)
        self._listener = listener
        self._acceptor = threading.Thread(target=self._accept, name="fault-proxy", daemon=True)
        self._acceptor.start()
        return self

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            self._count("connections")
            link = _Link(self, client, upstream)
            with self._lock:
                self._links.add(link)
            link.start()

    def _forget(self, link: _Link) -> None:
        with self._lock:
            self._links.discard(link)

    def stop(self) -> None:
        """Stop accepting, close every connection and wait (bounded) for the threads."""
        self._stopping.set()
        if self._acceptor is not None:
            self._acceptor.join(5)
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            links = list(self._links)
        for link in links:
            link.close(reset_client=False)
        for link in links:
            link.join(5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class _Link:
    """One client connection and its own connection to Redis, pumped by two threads."""

    def __init__(self, proxy: FaultProxy, client: socket.socket, upstream: socket.socket):
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        for sock in (client, upstream):
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.pending: deque[_Pending] = deque()
        self.closing = threading.Event()
        self._lock = threading.Lock()
        self._running = 2
        self.threads = [
            threading.Thread(target=self._run, args=(self._requests,), daemon=True),
            threading.Thread(target=self._run, args=(self._replies,), daemon=True),
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self, timeout: float) -> None:
        for thread in self.threads:
            thread.join(timeout)

    def _run(self, pump: Callable[[], None]) -> None:
        try:
            pump()
        except (OSError, ProtocolError):
            pass
        finally:
            self.close(reset_client=False)
            with self._lock:
                self._running -= 1
                last = self._running == 0
            # Only the last thread closes the sockets, so neither ever uses a closed (and
            # possibly reused) descriptor; a reset's SO_LINGER 0 turns that close into RST.
            if last:
                self.client.close()
                self.upstream.close()
                self.proxy._forget(self)

    def close(self, *, reset_client: bool) -> None:
        """Wake both threads and end the connection; with ``reset_client`` the client gets
        an RST (SO_LINGER 0), not a FIN."""
        with self._lock:
            if self.closing.is_set():
                return
            self.closing.set()
        client_how = socket.SHUT_RDWR
        if reset_client:
            self.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client_how = socket.SHUT_RD  # wakes our reader without sending a FIN first
        for sock, how in ((self.client, client_how), (self.upstream, socket.SHUT_RDWR)):
            with contextlib.suppress(OSError):  # already shut by the peer
                sock.shutdown(how)
        for entry in list(self.pending):
            entry.resolved.set()

    def _requests(self) -> None:
        """Client to Redis: forward whole commands, queue what each reply will answer."""
        buf = bytearray()
        while not self.closing.is_set():
            data = self.client.recv(_CHUNK)
            if not data:
                return
            buf += data
            pos = sent = 0
            while pos < len(buf) and (parsed := parse_command(buf, pos)) is not None:
                words, end = parsed
                fault = self.proxy._decide(words) if words else None
                if fault is not None and fault.action == "cut":
                    half = max(1, (end - pos) // 2)
                    self.upstream.sendall(buf[sent : pos + half])
                    self.proxy._count("cut")
                    self.close(reset_client=False)
                    return
                if words:
                    entry = _Pending(fault)
                    self.pending.append(entry)  # before the bytes leave: the reply may race
                pos = end
                if fault is not None:  # swallow: nothing after it may reach Redis
                    self.upstream.sendall(buf[sent:pos])
                    sent = pos
                    while not entry.resolved.wait(_POLL):
                        if self.closing.is_set():
                            return
                    if self.closing.is_set():
                        return
            self.upstream.sendall(buf[sent:pos])
            del buf[:pos]

    def _replies(self) -> None:
        """Redis to client: pair each reply with its command, then pass, hold or drop it."""
        buf = bytearray()
        while not self.closing.is_set():
            data = self.upstream.recv(_CHUNK)
            if not data:
                return
            arrived = time.monotonic()
            buf += data
            pos = sent = 0
            while (parsed := parse_reply(buf, pos)) is not None:
                end, is_error, is_push = parsed
                entry = self.pending.popleft() if self.pending and not is_push else None
                if entry is not None and entry.fault is not None:
                    if is_error:
                        self.proxy._spare(entry.fault)
                    else:
                        self.client.sendall(buf[sent:pos])  # the replies before it arrive
                        self.proxy._count("dropped")
                        self.proxy._count("reset")
                        self.close(reset_client=True)
                        entry.resolved.set()  # wakes the request thread, which then exits
                        return
                    entry.resolved.set()
                if not is_push and (wait := self.proxy._reply_delay()):
                    self.client.sendall(buf[sent:pos])
                    sent = pos
                    if self.closing.wait(max(0.0, arrived + wait - time.monotonic())):
                        return
                pos = end
            self.client.sendall(buf[sent:pos])
            del buf[:pos]
