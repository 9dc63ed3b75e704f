"""A real HTTP server on loopback speaking just enough of the chat-completions API.

Tests point the LLM client at it to check what goes over the wire and how failures
are handled; ``respond`` decides each answer from the decoded request: an ``Answer``
(one body, as for ``"stream": false``) or a ``Streamed`` one (server-sent events, as
for ``"stream": true``), which can also break off, stall or send garbage.

The SSE stream is shaped like OpenAI's: ``data: {chat.completion.chunk}`` events, the
first carrying only the role, one per delta, then one with ``finish_reason`` and an
empty ``delta``, a usage chunk with no choices, and ``data: [DONE]``; a ``: keep-alive``
comment comes first, as proxies and some servers send. Transfer-Encoding is chunked,
so a dropped connection is a body cut short, as in production.
"""

from __future__ import annotations

import json
import select
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

#: How long a stalled stream keeps its socket open when the client never gives up.
STALL_LIMIT = 30.0


@dataclass
class Answer:
    """What the fake server sends back: status, raw body, and a delay before sending.

    ``trickle`` > 0 sends the body one byte at a time, that many seconds apart.
    """

    status: int = 200
    body: bytes = b""
    delay: float = 0.0
    trickle: float = 0.0
    content_type: str = "application/json"


@dataclass
class Streamed:
    """A streamed completion: one chunk per delta, each sent ``gap`` seconds after the last.

    ``fault`` strikes once ``after`` deltas are out: ``"drop"`` closes the connection,
    ``"stall"`` stops sending but keeps the socket open (until the client leaves, or
    STALL_LIMIT), ``"garbage"`` sends a data line that is not JSON and then stops.
    """

    deltas: Sequence[str]
    gap: float = 0.0
    fault: Literal["drop", "stall", "garbage"] | None = None
    after: int = 0


def completion(content: str) -> Answer:
    """A well-formed chat-completions response carrying ``content``."""
    body = {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
    }
    return Answer(200, json.dumps(body).encode())


def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    """One ``chat.completion.chunk`` as OpenAI streams it."""
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "test-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def sse(*events: str | dict[str, Any]) -> Answer:
    """A raw ``text/event-stream`` body: dicts become ``data:`` events, strings go as written."""
    parts = [e if isinstance(e, str) else f"data: {json.dumps(e)}\n\n" for e in events]
    return Answer(200, "".join(parts).encode(), content_type="text/event-stream")


@dataclass
class Received:
    """One request as the server saw it; for a streamed answer, how far it got."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    sent: int = 0  # deltas written
    disconnected: threading.Event = field(default_factory=threading.Event)


@dataclass
class FakeLLM:
    """Handle on the running server: its URL, what it received, how it answers."""

    base_url: str
    received: list[Received] = field(default_factory=list)
    respond: Callable[[dict[str, Any]], Answer | Streamed] = lambda body: completion("ok")
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 for chunked streams (and keep-alive, as real servers have).
    protocol_version = "HTTP/1.1"
    state: FakeLLM

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        request = Received(self.path, dict(self.headers), json.loads(raw))
        with self.state.lock:
            self.state.received.append(request)
        answer = self.state.respond(request.body)
        try:
            if isinstance(answer, Streamed):
                self._stream(answer, request)
            else:
                self._answer(answer)
        except OSError:
            request.disconnected.set()  # the client gave up (timeout and close tests)
            self.close_connection = True

    def _answer(self, answer: Answer) -> None:
        if answer.delay:
            time.sleep(answer.delay)
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        if answer.trickle:
            for byte in answer.body:
                self.wfile.write(bytes([byte]))  # wfile is unbuffered: one send each
                time.sleep(answer.trickle)
        else:
            self.wfile.write(answer.body)

    def _stream(self, answer: Streamed, request: Received) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._send(": keep-alive\n\n")
        self._event(chunk({"role": "assistant", "content": ""}))
        for delta in answer.deltas:
            if answer.fault and request.sent == answer.after:
                break
            if self._client_left(answer.gap):
                request.disconnected.set()
                return
            self._event(chunk({"content": delta}))
            request.sent += 1
        else:
            self._event(chunk({}, finish_reason="stop"))
            self._event({"id": "chatcmpl-test", "choices": [], "usage": {"total_tokens": 9}})
            self._send("data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
            return
        self.close_connection = True
        if answer.fault == "garbage":
            self._send("data: {this is not json\n\n")
        elif answer.fault == "stall" and self._client_left(STALL_LIMIT):
            request.disconnected.set()
        # "drop" (and the end of the others): close without the terminating chunk

    def _event(self, data: dict[str, Any]) -> None:
        self._send(f"data: {json.dumps(data)}\n\n")

    def _send(self, text: str) -> None:
        data = text.encode()
        self.wfile.write(b"%X\r\n%s\r\n" % (len(data), data))

    def _client_left(self, wait: float) -> bool:
        """Wait up to ``wait`` seconds; True as soon as the client closes its end."""
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([self.connection], [], [], left)
            if readable:
                try:
                    if self.connection.recv(1, socket.MSG_PEEK) == b"":
                        return True
                except OSError:
                    return True
                time.sleep(min(left, 0.01))  # data, not EOF: nothing this server expects
        return False

    def log_message(self, format: str, *args: Any) -> None:
        pass


def start_fake_llm() -> tuple[FakeLLM, Callable[[], None]]:
    """Start the server on 127.0.0.1 (free port); returns it and a stop function."""

    class Server(ThreadingHTTPServer):
        request_queue_size = 64  # the default 5 drops bursts of concurrent connects
        daemon_threads = True
        block_on_close = False

        def handle_error(self, request: Any, client_address: Any) -> None:
            if not isinstance(sys.exc_info()[1], ConnectionError):
                super().handle_error(request, client_address)
            # else a client hung up on a kept-alive connection: what the close tests do

    handler = type("Handler", (_Handler,), {})
    server = Server(("127.0.0.1", 0), handler)
    handler.state = FakeLLM(base_url=f"http://127.0.0.1:{server.server_address[1]}/v1")
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return handler.state, stop
