"""One chat turn: read the context, generate the reply, store both turns exactly once.

Two ways: ``send`` answers in the request (the JSON endpoint); ``start_stream`` hands the
writing to a producer (``generation.py``) that publishes the reply's events to Redis as it
is written, for any worker to stream to the client (the SSE endpoints).

Kept out of the views so the HTTP layer stays a thin parse-call-return, and out of the
store so the store stays a repository. A turn costs two Redis round trips: one read of the
recent context (which also refreshes the TTL) and one atomic append; an Idempotency-Key
adds a claim (and, for a send that starts a session, one more step), all in
``idempotency.py``. See docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chatbot_sessions import extensions, signals
from chatbot_sessions.config import Settings
from chatbot_sessions.context import Context, Summaries, build_context
from chatbot_sessions.domain import Exchange, NewMessage, Reply
from chatbot_sessions.exceptions import GenerationsBusy, SessionNotFound
from chatbot_sessions.generation import Generations, generate, open_stream
from chatbot_sessions.replies.base import ReplyGenerator
from chatbot_sessions.replies.token_count import load_counter
from chatbot_sessions.sessions.events import EventPublisher, ReplyEvents
from chatbot_sessions.sessions.idempotency import Attempt, TurnWrites
from chatbot_sessions.sessions.ids import new_reply_id, parse_session_id
from chatbot_sessions.sessions.store import Published, SessionStore
from chatbot_sessions.timestamps import now_ms

if TYPE_CHECKING:
    from flask import Flask

__all__ = ["ChatService", "Exchange", "init_app"]


log = logging.getLogger(__name__)


def _no_check() -> None:
    return None


def _turns(question: str, asked_at: int, reply: Reply) -> list[NewMessage]:
    """The two messages a turn stores: the question as asked, the answer as written."""
    return [
        NewMessage("user", question, asked_at),
        NewMessage(
            "assistant",
            reply.text,
            now_ms(),
            tuple(reply.sources),
            stopped=reply.stopped,
            degraded=reply.degraded,
        ),
    ]


@dataclass(frozen=True)
class StreamTicket:
    """Where a streamed reply is: follow ``reply_id``'s events in ``session_id``.

    ``replay``: the request was answered before (no events to follow: the stored reply is
    sent as is). A keyed retry while another request writes the reply gets that reply's
    ticket, to follow like its own.
    """

    session_id: str
    reply_id: str
    replay: Exchange | None = None


class ChatService:
    """Answers questions within sessions, creating a session when the client has none."""

    def __init__(
        self,
        store: SessionStore,
        generator: ReplyGenerator,
        context_messages: int,
        *,
        idempotency_lease: float = 30.0,
        idempotency_wait: float = 2.0,
        before_new_session: Callable[[], None] = _no_check,
        generations: Generations | None = None,
        events: ReplyEvents | None = None,
        context_tokens: int = 3000,
        summaries: Summaries | None = None,
    ):
        self.store = store
        self.generator = generator
        self.context_messages = context_messages
        self.writes = TurnWrites(
            store, lease_seconds=idempotency_lease, wait_seconds=idempotency_wait
        )
        # Called before a turn starts a session, so that it can refuse (e.g. a rate limit on
        # creating sessions): whatever it raises ends the turn with nothing stored.
        self.before_new_session = before_new_session
        self.generations = generations
        self.events = events
        self.context_tokens = context_tokens
        self.summaries = summaries

    # -- streamed replies ---------------------------------------------------------------

    def start_stream(
        self, raw_session_id: str | None, question: str, idempotency_key: str | None = None
    ) -> StreamTicket:
        """Start writing the answer to ``question`` on a producer thread; return at once.

        The ``start`` event is published before this returns, so the ticket's reply can be
        followed right away. A keyed repeat of an answered request gets its replay; of one
        being streamed, that reply to join. GenerationsBusy when every producer is taken
        (nothing stored then).
        """
        if self.generations is None or self.events is None:
            raise RuntimeError("streaming needs generations and events (chat.init_app)")
        asked_at = now_ms()
        session_id = parse_session_id(raw_session_id)
        context = self._context(session_id)
        reply_id = new_reply_id()
        slot = self.generations.reserve()
        attempt = None
        try:
            attempt = self.writes.begin(
                idempotency_key,
                question,
                session_id if context is not None else None,
                reply_id=reply_id,
            )
            if attempt.replay is not None or attempt.joins is not None:
                slot.release()
                if attempt.joins is not None:
                    return StreamTicket(*attempt.joins)
                return StreamTicket(attempt.replay.session_id, "", replay=attempt.replay)
            if attempt.session_id is None:
                self.before_new_session()
            target = attempt.open_session()
            events = self.events.publisher(target, reply_id)
            events.start()
            if attempt.session_id != session_id:
                context = None  # a new session: nothing to build on
            slot.run(lambda: self._produce(attempt, events, question, context, asked_at))
        except BaseException as exc:
            slot.release()
            if attempt is not None:
                attempt.abandon()
            if isinstance(exc, RuntimeError):  # the pool is shutting down (worker exiting)
                raise GenerationsBusy(retry_after=1) from exc
            raise
        return StreamTicket(target, reply_id)

    def _produce(
        self,
        attempt: Attempt,
        events: EventPublisher,
        question: str,
        context: Context | None,
        asked_at: int,
    ) -> None:
        """Write the reply delta by delta, stop if asked, store the turn, publish ``done``."""
        try:
            started = time.perf_counter()
            stream = open_stream(self.generator, question, context)
            parts: list[str] = []
            stopped = False
            for delta in stream:
                parts.append(delta)
                published = events.delta(delta)
                if published == Published.GONE:
                    # The session was deleted while its answer was written: the deletion
                    # wins. Keeping the turn in a new session no listener can learn of
                    # would keep what the user asked to erase.
                    stream.close()
                    attempt.abandon()
                    return
                if published == Published.STOP:
                    stopped = True
                    stream.close()
                    break
            reply = Reply("".join(parts), tuple(stream.sources), stream.degraded, stopped)
            signals.reply_generated.send(
                self, seconds=time.perf_counter() - started, question=question, reply=reply
            )
            turns = _turns(question, asked_at, reply)
            exchange = attempt.commit(turns, reply)
            events.done(exchange, stopped=stopped)
            self._after_turn(exchange.session_id)
        except Exception as exc:
            attempt.abandon()
            log.warning("streamed reply failed: %s", exc)
            with contextlib.suppress(Exception):  # Redis may be what failed
                events.error()

    def context(self, session_id: str) -> Context:
        """What the next reply in ``session_id`` would be built from (an access of the
        session); SessionNotFound if there is no such session."""
        if self.context_messages == 0:
            if not self.store.touch(session_id):
                raise SessionNotFound(session_id)
            return Context(session_id, "", 0, [], self.context_tokens, 0)
        stored = self.store.context(session_id, cap=self.context_messages)
        return build_context(session_id, stored, self.context_tokens)

    def _context(self, session_id: str | None) -> Context | None:
        """The context of an existing session, or None when there is no such session."""
        if session_id is None:
            return None
        try:
            return self.context(session_id)
        except SessionNotFound:
            return None

    def _after_turn(self, session_id: str) -> None:
        if self.summaries is not None:
            self.summaries.after_turn(session_id)

    def send(
        self, raw_session_id: str | None, question: str, idempotency_key: str | None = None
    ) -> Exchange:
        """Answer ``question`` in the given session, or in a new one if it is unknown.

        With ``idempotency_key``, a repeat of an answered request returns the stored reply
        (see ``TurnWrites.begin`` for the other cases).
        """
        asked_at = now_ms()
        session_id = parse_session_id(raw_session_id)
        context = self._context(session_id)
        attempt = self.writes.begin(
            idempotency_key, question, session_id if context is not None else None
        )
        if attempt.replay is not None:
            return attempt.replay
        try:
            if attempt.session_id is None:
                # Inside the try: a refused keyed turn ends its lease (``abandon``), so the
                # client's retry is refused again at once instead of waiting on the lease.
                self.before_new_session()
            started = time.perf_counter()
            reply = generate(self.generator, question, context if attempt.session_id else None)
            signals.reply_generated.send(
                self, seconds=time.perf_counter() - started, question=question, reply=reply
            )
            turns = _turns(question, asked_at, reply)
            exchange = attempt.commit(turns, reply)
        except BaseException:
            attempt.abandon()
            raise
        self._after_turn(exchange.session_id)
        return exchange


def init_app(app: Flask, settings: Settings) -> ChatService:
    """Register the chat service over the app's store and generator (register those first)."""
    resources = extensions.resources(app)
    generator = extensions.get_required(resources.generator, "generator")
    # A generator that looks at less history than CONTEXT_MESSAGES says how much (the
    # extractive one: the last two questions); decoding more for every reply is waste.
    wanted = getattr(generator, "history_messages", None)
    chat = ChatService(
        extensions.get_required(resources.store, "store"),
        generator,
        settings.context_messages if wanted is None else min(wanted, settings.context_messages),
        # A keyed request holds its key while it may still be generating (LLM_TIMEOUT).
        idempotency_lease=settings.llm_timeout + 2,
        idempotency_wait=settings.idempotency_wait,
        generations=Generations(settings.max_generations),
        events=ReplyEvents(resources.store, retention=settings.stream_retention),  # type: ignore[arg-type]
        context_tokens=settings.context_tokens,
    )
    # With an LLM, keep a rolling summary (not when no context is read at all).
    if resources.summariser is not None and settings.context_messages > 0:
        chat.summaries = Summaries(
            chat.store,
            resources.summariser,
            settings.context_tokens,
            cap=settings.context_messages,
        )
        resources.on_close(chat.summaries.close)
    resources.chat = chat
    # Every reply's context is measured in tokens; the tokenizer's tables take about a
    # second to load. A serving process loads them before it takes requests, so no
    # visitor's first follow-up waits for them (tests building apps skip this).
    resources.on_start(load_counter)
    resources.on_close(chat.generations.close)  # type: ignore[union-attr]
    return chat
