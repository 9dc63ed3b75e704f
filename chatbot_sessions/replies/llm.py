"""Replies written by an LLM behind an OpenAI-compatible chat-completions endpoint.

The model gets a system prompt with the retrieved passages, the recent conversation
as real user/assistant turns, then the question. Anything short of a usable answer
(connection error, HTTP error, time budget spent, a body that is not a chat
completion) is logged and answered extractively with ``degraded=True``: a flaky
model must never cost the user their reply.

Streamed replies (``stream``) ask for ``"stream": true`` and read the server-sent
events as they come: ``data: {chat.completion.chunk}`` lines whose
``choices[0].delta.content`` is the next piece of text, ended by ``data: [DONE]``. A
failure before any text streams the extractive answer instead; one after some text
ends the reply where it broke. Both are ``degraded``.

httpx rather than the ``openai`` package: one small POST does not justify the SDK's
dependency tree, and httpx gives explicit timeouts and a client documented as safe to
share between threads (the gunicorn gthread workers).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import replace
from typing import Any

import httpx

from chatbot_sessions.domain import Message, Reply, Source
from chatbot_sessions.replies.base import ReplyStream
from chatbot_sessions.replies.extractive import ExtractiveAnswerer
from chatbot_sessions.replies.retriever import Passage, Query, Retriever, prior_history

log = logging.getLogger(__name__)

SYSTEM_PROMPT = """\
You are the assistant of a documentation chatbot. Answer the user's question using only \
the numbered passages below and the conversation so far. If the passages do not contain \
the answer, say that you don't have information about that instead of guessing. Be \
concise, and name the titles of the passages you used."""

#: Statuses worth one more try: rate limiting and transient server trouble.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class LLMError(Exception):
    """The model gave no usable answer; the message says why, without user content."""


def chat_completions_url(base_url: str) -> str:
    """``…/v1`` -> ``…/v1/chat/completions``; a full endpoint URL is kept as given."""
    base = base_url.rstrip("/")
    return base if base.endswith("/chat/completions") else f"{base}/chat/completions"


class ChatCompletionsClient:
    """POSTs chat-completions requests within a time budget, retrying transient failures.

    ``timeout`` bounds one reply *including* retries, so the user never waits much
    longer than LLM_TIMEOUT; a retry happens only if time is left for it. A request
    that timed out is not retried: it has already spent the budget.

    httpx's timeouts bound each connect, write and read, not a whole response, so a
    server trickling its body could outlast any of them. The body is therefore streamed
    and the deadline checked after every chunk; each socket operation is bounded by the
    time left when the attempt began, and a read still waiting at the deadline (a server
    that went quiet) is cut then by shutting the socket down (``_Interrupter``).
    """

    def __init__(
        self,
        base_url: str,
        *,
        model: str,
        api_key: str | None = None,
        timeout: float = 30.0,
        max_tokens: int = 512,
        retries: int = 1,
        backoff: float = 0.25,
    ) -> None:
        self.url = chat_completions_url(base_url)
        self.model = model
        self.timeout = timeout
        self.max_tokens = max_tokens
        self.retries = retries
        self.backoff = backoff
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(headers=headers, timeout=timeout)

    def complete(self, messages: list[dict[str, str]]) -> str:
        """The assistant message content for ``messages``; raises ``LLMError`` otherwise."""
        payload = self._payload(messages, stream=False)
        deadline = time.monotonic() + self.timeout
        error = LLMError("no attempt made")
        for _ in self._attempts(deadline):
            try:
                with self._open(payload, deadline) as (response, _):
                    status = response.status_code
                    if status < 400:  # for an error only the status matters; skip the body
                        return _message_content(b"".join(_body(response, deadline)))
            except httpx.TimeoutException as exc:
                raise self._timed_out() from exc
            except httpx.TransportError as exc:
                if time.monotonic() >= deadline:
                    raise self._timed_out() from exc
                error = LLMError(f"connection failed ({exc.__class__.__name__})")
                continue
            error = LLMError(f"HTTP {status}")
            if status not in RETRY_STATUSES:
                raise error
        raise error

    def stream(self, messages: list[dict[str, str]]) -> CompletionStream:
        """The assistant's reply to ``messages`` as the model writes it (``"stream": true``)."""
        return CompletionStream(self, self._payload(messages, stream=True))

    def close(self) -> None:
        """Close the connection pool (at application shutdown)."""
        self._http.close()

    @property
    def closed(self) -> bool:
        """Whether ``close`` ran: the pool is gone and no request can be made."""
        return self._http.is_closed

    def _payload(self, messages: list[dict[str, str]], *, stream: bool) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": messages,
            "max_tokens": self.max_tokens,
            "stream": stream,
        }

    def _attempts(self, deadline: float) -> Iterator[int]:
        """The first attempt, then retries while any are left and time remains for the backoff."""
        for attempt in range(self.retries + 1):
            if attempt:
                if deadline - time.monotonic() <= self.backoff:
                    return
                time.sleep(self.backoff)
            yield attempt

    @contextmanager
    def _open(
        self, payload: dict[str, Any], deadline: float
    ) -> Iterator[tuple[httpx.Response, _Interrupter]]:
        """The response to one POST (headers read), its socket shut down at ``deadline``."""
        remaining = deadline - time.monotonic()
        with self._http.stream("POST", self.url, json=payload, timeout=remaining) as response:
            interrupter = _Interrupter(response, deadline)
            try:
                yield response, interrupter
            finally:
                interrupter.disarm()

    def _timed_out(self) -> LLMError:
        return LLMError(f"timed out after {self.timeout:g}s")


class CompletionStream:
    """The text of one streamed chat completion, delta by delta, within the client's budget.

    Iterating sends the request and yields the content of each chunk, the whole text
    stripped at both ends as ``complete`` strips it. Failures raise ``LLMError``;
    connection failures and retryable statuses are retried as ``complete`` retries them,
    but only before any text (a retry would repeat what the reader already has).

    ``close()`` may come from another thread than the one iterating (the user pressed
    Stop): it shuts the socket down, which wakes a read waiting on the model, and the
    iteration then ends quietly. A close that comes while the connection is still being
    made takes effect once the response headers are in.
    """

    def __init__(self, client: ChatCompletionsClient, payload: dict[str, Any]) -> None:
        self._client = client
        self._payload = payload
        self._reading = threading.Lock()  # held by the thread inside ``_deltas``
        self._state = threading.Lock()  # guards ``_closed`` and ``_interrupter``
        self._closed = False
        self._interrupter: _Interrupter | None = None
        self._deltas = self._read()

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        with self._reading:
            try:
                if not self._closed:
                    delta = next(self._deltas)
                    if not self._closed:
                        return delta
            except LLMError:
                if not self._closed:
                    raise  # a failure; once closed, the shut socket's error is expected
            self._deltas.close()
            raise StopIteration

    def close(self) -> None:
        """Stop: no more deltas, and the HTTP response is released. Idempotent, never blocks."""
        with self._state:
            if self._closed:
                return
            self._closed = True
            interrupter = self._interrupter
        if interrupter is not None:
            interrupter.fire()
        if self._reading.acquire(blocking=False):
            try:
                self._deltas.close()  # nobody is reading: release the response here
            finally:
                self._reading.release()
        # else the reading thread wakes on the shut socket and closes it on its way out

    def _opened(self, interrupter: _Interrupter | None) -> bool:
        """Publish (or withdraw) the response's interrupter; False if closed meanwhile."""
        with self._state:
            self._interrupter = interrupter
            return not self._closed

    def _read(self) -> Iterator[str]:
        client = self._client
        deadline = time.monotonic() + client.timeout
        error = LLMError("no attempt made")
        for _ in client._attempts(deadline):
            wrote = False
            try:
                with client._open(self._payload, deadline) as (response, interrupter):
                    if not self._opened(interrupter):
                        return
                    status = response.status_code
                    if status < 400:
                        for delta in _trimmed(_content(response, deadline)):
                            wrote = True
                            yield delta
                        return
            except httpx.TimeoutException as exc:
                raise client._timed_out() from exc
            except httpx.TransportError as exc:
                if time.monotonic() >= deadline:
                    raise client._timed_out() from exc  # the interrupter cut a silent server
                name = exc.__class__.__name__
                if wrote:
                    raise LLMError(f"stream broke off ({name})") from exc
                error = LLMError(f"connection failed ({name})")
                continue
            finally:
                self._opened(None)
            error = LLMError(f"HTTP {status}")
            if status not in RETRY_STATUSES:
                raise error
        raise error


class _Interrupter:
    """Shuts a response's socket down, waking a read blocked on it in another thread.

    httpx fixes the read timeout when a response starts, so a stream that went quiet
    late would be waited on for up to a whole budget more; a timer shuts the socket
    down at the deadline instead, and ``CompletionStream.close()`` uses the same
    shutdown. Once httpx has closed the response (its connection may be back in the
    pool, serving another request) nothing is shut down. Without a socket to reach (a
    custom transport) only the per-read timeout and the per-chunk check remain.
    """

    def __init__(self, response: httpx.Response, deadline: float) -> None:
        network = response.extensions.get("network_stream")
        self._socket: socket.socket | None = (
            network.get_extra_info("socket") if network is not None else None
        )
        self._response = response
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self.fire)
        self._timer.daemon = True
        if self._socket is not None:
            self._timer.start()

    def fire(self) -> None:
        """Shut the socket down now, unless the response is done with it."""
        with self._lock:
            sock, self._socket = self._socket, None
            if sock is None or self._response.is_closed:
                return
            # socket.socket's own shutdown: SSLSocket's would drop its SSL object under
            # the reading thread's feet. OSError: the socket is already closed.
            with suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def disarm(self) -> None:
        """The response is being closed: never touch its socket from now on."""
        with self._lock:
            self._socket = None
        self._timer.cancel()


def _body(response: httpx.Response, deadline: float) -> Iterator[bytes]:
    """The body as it arrives; ``ReadTimeout`` once ``deadline`` passes."""
    for chunk in response.iter_bytes():
        if time.monotonic() >= deadline:
            raise httpx.ReadTimeout("deadline passed while reading the body")
        yield chunk


def _content(response: httpx.Response, deadline: float) -> Iterator[str]:
    """The text deltas of a streamed response, as they arrive.

    A server that ignores ``"stream": true`` answers with one JSON completion, which
    is one delta; anything else is read as server-sent events.
    """
    body = _body(response, deadline)
    if response.headers.get("content-type", "").startswith("application/json"):
        yield _message_content(b"".join(body))
        return
    finished = False
    for data in _sse_data(body):
        if data == "[DONE]":
            return
        content, finish_reason = _chunk_content(data)
        finished = finished or finish_reason is not None
        if content:
            yield content
    if not finished:
        raise LLMError("stream ended before the reply was finished")


#: SSE fields a chat-completions stream may carry besides ``data``; none matter here.
_SSE_FIELDS = frozenset({"event", "id", "retry"})


def _sse_data(body: Iterator[bytes]) -> Iterator[str]:
    """The data of each server-sent event in ``body``; comments (``: keep-alive``) skipped.

    Lines are split as bytes, before decoding: ``str.splitlines`` (and httpx's
    ``iter_lines``) would also split at U+2028 and the like, which JSON strings may
    hold unescaped. A line that is no SSE field means this is not an event stream.
    """
    data: list[str] = []
    pending = b""
    for chunk in body:
        lines = (pending + chunk).splitlines(keepends=True)
        # An unterminated last line waits for the rest; so does one ending in CR, in case
        # the LF of a CRLF is in the next chunk.
        pending = lines.pop() if lines and not lines[-1].endswith(b"\n") else b""
        for raw in lines:
            line = _decoded(raw)
            if line:
                _add_field(line, data)
            elif data:
                yield "\n".join(data)
                data = []
    if pending:
        _add_field(_decoded(pending), data)
    if data:
        # The spec drops an event the body ends in; a last "data: [DONE]" without its
        # blank line is still worth reading, and a cut-off chunk fails as not JSON.
        yield "\n".join(data)


def _decoded(raw: bytes) -> str:
    try:
        return raw.rstrip(b"\r\n").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LLMError("stream is not UTF-8") from exc


def _add_field(line: str, data: list[str]) -> None:
    """Take one non-blank SSE line: a ``data`` value joins ``data``, others are checked."""
    if line.startswith(":"):
        return  # a comment
    name, _, value = line.partition(":")
    if name == "data":
        data.append(value.removeprefix(" "))
    elif name not in _SSE_FIELDS:
        raise LLMError("stream is not server-sent events")


def _chunk_content(data: str) -> tuple[str | None, str | None]:
    """Content and finish_reason of one chunk; either may be None.

    The first chunk's delta usually holds only the role, the last one nothing (it
    carries the finish_reason), and a usage chunk has no choices at all.
    """
    try:
        chunk = json.loads(data)
    except ValueError as exc:
        raise LLMError("stream event is not JSON") from exc
    if isinstance(chunk, dict) and "error" in chunk:
        raise LLMError("stream reported an error")  # its message may quote the request
    try:
        choices = chunk["choices"]
        if not choices and isinstance(choices, list):
            return None, None
        delta = choices[0]["delta"]
        content = delta.get("content")
        finish_reason = choices[0].get("finish_reason")
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise LLMError("stream event is not a chat-completion chunk") from exc
    if content is not None and not isinstance(content, str):
        raise LLMError("stream event is not a chat-completion chunk")
    return content, finish_reason


def _trimmed(deltas: Iterator[str]) -> Iterator[str]:
    """``deltas`` without the whitespace around the whole text, as ``complete`` strips it.

    Leading whitespace is skipped; whitespace ending a delta is held back until more text
    follows, so no delta is blank and the last one ends in text. ``LLMError`` if no text.
    """
    held = ""
    started = False
    for delta in deltas:
        if not started:
            delta = delta.lstrip()
            if not delta:
                continue
            started = True
        text = delta.rstrip()
        if text:
            yield held + text
            held = delta[len(text) :]
        else:
            held += delta
    if not started:
        raise LLMError("chat completion has no text")


def _message_content(raw: bytes) -> str:
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise LLMError("response is not JSON") from exc
    try:
        content = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as exc:
        raise LLMError("response is not a chat completion") from exc
    if not isinstance(content, str) or not content.strip():
        raise LLMError("chat completion has no text")
    return content.strip()


def _passages_block(passages: Sequence[Passage]) -> str:
    if not passages:
        return "Passages: none matched the question."
    parts = []
    for number, passage in enumerate(passages, start=1):
        chunk = passage.chunk
        dated = f", published {chunk.published}" if chunk.published else ""
        parts.append(f"[{number}] {chunk.title} ({chunk.source}{dated})\n{chunk.text}")
    return "Passages:\n\n" + "\n\n".join(parts)


def build_messages(
    question: str, history: Sequence[Message], passages: Sequence[Passage], summary: str = ""
) -> list[dict[str, str]]:
    """System prompt with passages (and the summary of the earlier conversation, when there
    is one), ``history`` as user/assistant turns, then ``question``.

    Consecutive messages of one role are merged: several chat templates (Mistral's,
    for one) reject a conversation whose roles do not alternate.
    """
    system = f"{SYSTEM_PROMPT}\n\n{_passages_block(passages)}"
    if summary:
        system += f"\n\nSummary of the conversation before the turns below:\n{summary}"
    messages = [{"role": "system", "content": system}]
    turns = [(m["type"], m["content"]) for m in history if m.get("content")]
    for role, content in [*turns, ("user", question)]:
        if role not in ("user", "assistant"):
            continue
        if messages[-1]["role"] == role:
            messages[-1]["content"] += f"\n\n{content}"
        else:
            messages.append({"role": role, "content": content})
    return messages


class LLMGenerator:
    """``StreamingReplyGenerator`` asking an LLM, falling back to extractive answers (degraded).

    ``retriever`` is public so tools such as ``flask kb`` can reach the index.
    """

    def __init__(
        self,
        retriever: Retriever,
        client: ChatCompletionsClient,
        *,
        context_messages: int = 10,
        top_k: int = 4,
    ) -> None:
        self.retriever = retriever
        self.client = client
        self.context_messages = context_messages
        self.top_k = top_k
        self.fallback = ExtractiveAnswerer(retriever)

    def generate(self, question: str, history: Sequence[Message], summary: str = "") -> Reply:
        """The model's answer, or the extractive one with ``degraded=True`` if it fails.

        Not a collected ``stream``: a whole reply is worth a retry, or the extractive
        answer, where a stream that broke off can only end where it broke.
        """
        query, passages, messages = self._prepare(question, history, summary)
        try:
            text = self.client.complete(messages)
        except LLMError as exc:
            self._report(exc, "answering extractively")
            return replace(self.fallback.answer(query, passages), degraded=True)
        return Reply(text=text, sources=tuple(p.as_source() for p in passages))

    def stream(
        self, question: str, history: Sequence[Message], summary: str = ""
    ) -> LLMReplyStream:
        """The model's answer as it writes it; retrieval runs now, the request on iteration.

        If the model fails before any text the extractive answer is streamed instead; if
        it fails later the reply ends there. Either way ``degraded`` becomes True.
        """
        query, passages, messages = self._prepare(question, history, summary)
        return LLMReplyStream(
            self.client.stream(messages),
            sources=tuple(p.as_source() for p in passages),
            fallback=lambda: self.fallback.stream(query, passages),
            report=self._report,
        )

    def close(self) -> None:
        """Release the HTTP connection pool."""
        self.client.close()

    def _prepare(
        self, question: str, history: Sequence[Message], summary: str = ""
    ) -> tuple[Query, list[Passage], list[dict[str, str]]]:
        """The retrieval query, the passages it finds and the messages for the model."""
        history = prior_history(question, history)
        query = Query.for_conversation(question, history)
        passages = self.retriever.search_query(query, self.top_k)
        recent = history[-self.context_messages :] if self.context_messages > 0 else []
        return query, passages, build_messages(question, recent, passages, summary)

    def _report(self, exc: LLMError, outcome: str) -> None:
        log.warning(
            "LLM %s at %s failed: %s; %s (degraded)",
            self.client.model,
            self.client.url,
            exc,
            outcome,
        )


class LLMReplyStream:
    """``ReplyStream`` of an LLM reply: the model's deltas, or the fallback's if it fails first.

    ``sources`` are the retrieved passages, as for the model's answer, even when the
    fallback writes the text: they are final before the first delta.
    """

    def __init__(
        self,
        completion: CompletionStream,
        *,
        sources: Sequence[Source],
        fallback: Callable[[], ReplyStream],
        report: Callable[[LLMError, str], None],
    ) -> None:
        self.sources = tuple(sources)
        self.degraded = False
        self._completion = completion
        self._fallback = fallback
        self._report = report
        self._closed = False
        self._deltas = self._write()

    def __iter__(self) -> Iterator[str]:
        return self._deltas

    def close(self) -> None:
        """Stop (Stop pressed, or shutdown): no more deltas, the HTTP response released."""
        self._closed = True
        self._completion.close()

    def _write(self) -> Iterator[str]:
        written = 0
        try:
            for delta in self._completion:
                written += len(delta)
                yield delta
            return
        except LLMError as exc:
            failure = exc
        self.degraded = True
        if written:
            self._report(failure, f"the reply ends after {written} characters")
            return
        self._report(failure, "answering extractively")
        for delta in self._fallback():
            if self._closed:
                return
            yield delta
