"""Writing replies off the request thread: a bounded pool of producers per worker.

A streamed reply is written by a producer thread, not by the request that asked for it, so
the answer goes on (and is stored) when the client goes away, and any worker can serve its
events from Redis. The pool is bounded (``MAX_GENERATIONS``): a request that finds every
slot taken is refused at once (``GenerationsBusy``, a 503 with ``Retry-After``) instead of
queueing behind replies that may each take LLM_TIMEOUT.

A slot is reserved before anything is written, so a refusal changes nothing stored; the
reserving request then either hands the slot a job or releases it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from chatbot_sessions.context import Context
from chatbot_sessions.domain import Message, Reply
from chatbot_sessions.exceptions import GenerationsBusy
from chatbot_sessions.replies.base import ReplyGenerator, ReplyStream, TextStream

log = logging.getLogger(__name__)


class Slot:
    """One reserved producer slot: run one job in it, or release it unused."""

    def __init__(self, pool: Generations) -> None:
        self._pool = pool
        self._held = True

    def run(self, job: Callable[[], None]) -> None:
        """Run ``job`` on a producer thread; the slot frees itself when the job ends."""

        def wrapped() -> None:
            try:
                job()
            except BaseException:  # a job reports its own failures; this is the last net
                log.exception("reply producer failed")
            finally:
                self.release()

        self._pool.executor.submit(wrapped)

    def release(self) -> None:
        """Give the slot back (idempotent)."""
        if self._held:
            self._held = False
            self._pool.free.release()


class Generations:
    """``size`` producer threads; ``reserve`` refuses at once when all are taken."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix="reply-writer")
        self.free = threading.BoundedSemaphore(size)

    def reserve(self) -> Slot:
        """A slot for one reply, or GenerationsBusy."""
        if not self.free.acquire(blocking=False):
            raise GenerationsBusy(retry_after=1)
        return Slot(self)

    def close(self) -> None:
        """Let the replies being written finish (gunicorn's graceful timeout bounds this)."""
        self.executor.shutdown(wait=True)


def _inputs(context: Context | None) -> tuple[list[Message], dict[str, str]]:
    """What a generator is called with besides the question: the history, and the summary
    as a keyword only when there is one (only generators built with an LLM ever get one)."""
    if context is None:
        return [], {}
    return context.messages, ({"summary": context.summary} if context.summary else {})


def generate(generator: ReplyGenerator, question: str, context: Context | None) -> Reply:
    """The generator's whole reply to ``question`` in ``context`` (None: a new session)."""
    history, extra = _inputs(context)
    return generator.generate(question, history, **extra)


def open_stream(generator: ReplyGenerator, question: str, context: Context | None) -> ReplyStream:
    """The generator's reply as a stream of text deltas: its own ``stream`` when it has one,
    else its whole reply as one delta."""
    history, extra = _inputs(context)
    stream = getattr(generator, "stream", None)
    if stream is not None:
        return stream(question, history, **extra)
    reply = generate(generator, question, context)
    return TextStream([reply.text], reply.sources, degraded=reply.degraded)
