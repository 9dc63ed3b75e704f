"""A real HTTP server on loopback speaking just enough of the chat-completions API.

Tests point the LLM client at it to check what goes over the wire and how failures
are handled; ``respond`` decides each answer from the decoded request.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Answer:
    """What the fake server sends back: status, raw body, and a delay before sending.

    ``trickle`` > 0 sends the body one byte at a time, that many seconds apart.
    """

    status: int = 200
    body: bytes = b""
    delay: float = 0.0
    trickle: float = 0.0


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


@dataclass
class Received:
    """One request as the server saw it."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeLLM:
    """Handle on the running server: its URL, what it received, how it answers."""

    base_url: str
    received: list[Received] = field(default_factory=list)
    respond: Callable[[dict[str, Any]], Answer] = lambda body: completion("ok")
    lock: threading.Lock = field(default_factory=threading.Lock)


def start_fake_llm() -> tuple[FakeLLM, Callable[[], None]]:
    """Start the server on 127.0.0.1 (free port); returns it and a stop function."""
    state: FakeLLM

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            body = json.loads(raw)
            with state.lock:
                state.received.append(Received(self.path, dict(self.headers), body))
            answer = state.respond(body)
            if answer.delay:
                time.sleep(answer.delay)
            try:
                self.send_response(answer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                if answer.trickle:
                    for byte in answer.body:
                        self.wfile.write(bytes([byte]))  # wfile is unbuffered: one send each
                        time.sleep(answer.trickle)
                else:
                    self.wfile.write(answer.body)
            except OSError:
                pass  # the client gave up (timeout test)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 64  # the default 5 drops bursts of concurrent connects
        daemon_threads = True
        block_on_close = False

    server = Server(("127.0.0.1", 0), Handler)
    state = FakeLLM(base_url=f"http://127.0.0.1:{server.server_address[1]}/v1")
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return state, stop
