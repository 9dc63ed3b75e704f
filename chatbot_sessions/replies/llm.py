"""Replies written by an LLM behind an OpenAI-compatible chat-completions endpoint.

The model gets a system prompt with the retrieved passages, the recent conversation
as real user/assistant turns, then the question. Anything short of a usable answer
(connection error, HTTP error, time budget spent, a body that is not a chat
completion) is logged and answered extractively with ``degraded=True``: a flaky
model must never cost the user their reply.

httpx rather than the ``openai`` package: one small POST does not justify the SDK's
dependency tree, and httpx gives explicit timeouts and a client documented as safe to
share between threads (the gunicorn gthread workers).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import httpx

from chatbot_sessions.domain import Message, Reply
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
    time left when the attempt began.
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
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "max_tokens": self.max_tokens,
            "stream": False,
        }
        deadline = time.monotonic() + self.timeout
        error = LLMError("no attempt made")
        for attempt in range(self.retries + 1):
            if attempt:
                if deadline - time.monotonic() <= self.backoff:
                    break
                time.sleep(self.backoff)
            try:
                status, body = self._post(payload, deadline)
            except httpx.TimeoutException as exc:
                raise LLMError(f"timed out after {self.timeout:g}s") from exc
            except httpx.TransportError as exc:
                error = LLMError(f"connection failed ({exc.__class__.__name__})")
                continue
            if status in RETRY_STATUSES:
                error = LLMError(f"HTTP {status}")
                continue
            if status >= 400:
                raise LLMError(f"HTTP {status}")
            return _message_content(body)
        raise error

    def _post(self, payload: dict[str, Any], deadline: float) -> tuple[int, bytes]:
        """Status and body of one POST, abandoned (TimeoutException) once ``deadline`` passes."""
        remaining = deadline - time.monotonic()
        with self._http.stream("POST", self.url, json=payload, timeout=remaining) as response:
            if response.status_code >= 400:
                return response.status_code, b""  # only the status matters; skip the body
            chunks = []
            for chunk in response.iter_bytes():
                chunks.append(chunk)
                if time.monotonic() >= deadline:
                    raise httpx.ReadTimeout("deadline passed while reading the body")
            return response.status_code, b"".join(chunks)

    def close(self) -> None:
        """Close the connection pool (at application shutdown)."""
        self._http.close()

    @property
    def closed(self) -> bool:
        """Whether ``close`` ran: the pool is gone and no request can be made."""
        return self._http.is_closed


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
    question: str, history: Sequence[Message], passages: Sequence[Passage]
) -> list[dict[str, str]]:
    """System prompt with passages, ``history`` as user/assistant turns, then ``question``.

    Consecutive messages of one role are merged: several chat templates (Mistral's,
    for one) reject a conversation whose roles do not alternate.
    """
    messages = [{"role": "system", "content": f"{SYSTEM_PROMPT}\n\n{_passages_block(passages)}"}]
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
    """``ReplyGenerator`` asking an LLM, falling back to extractive answers (degraded).

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

    def generate(self, question: str, history: Sequence[Message]) -> Reply:
        """The model's answer, or the extractive one with ``degraded=True`` if it fails."""
        history = prior_history(question, history)
        query = Query.for_conversation(question, history)
        passages = self.retriever.search_query(query, self.top_k)
        recent = history[-self.context_messages :] if self.context_messages > 0 else []
        try:
            text = self.client.complete(build_messages(question, recent, passages))
        except LLMError as exc:
            log.warning(
                "LLM %s at %s failed: %s; answering extractively (degraded)",
                self.client.model,
                self.client.url,
                exc,
            )
            return replace(self.fallback.answer(query, passages), degraded=True)
        return Reply(text=text, sources=tuple(p.as_source() for p in passages))

    def close(self) -> None:
        """Release the HTTP connection pool."""
        self.client.close()
