"""What a reply is built from: the rolling summary, then the newest turns that fit.

``CONTEXT_TOKENS`` is the budget for the conversation history a generator receives: the
summary (if any) plus the verbatim messages. The system prompt and the retrieved passages
are not part of it (they have their own bounds: the prompt is fixed, the passages are
``top_k`` chunks). Turns go in newest first, whole user/assistant pairs at a time, and stop
at the first that does not fit; they are then handed over oldest first. The newest pair
always goes in, even if it alone is over the budget: the model then sees at least the turn
the question follows.

Messages older than the window fall to the summariser: once a turn is out of the window,
``Summaries`` folds it into the session's summary (one LLM call, after the reply is stored,
never in the reply's way).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from chatbot_sessions.domain import Message
from chatbot_sessions.exceptions import SessionNotFound, StoreUnavailable
from chatbot_sessions.replies.summary import Summariser, SummaryFailed
from chatbot_sessions.replies.token_count import (
    count_message_tokens,
    count_tokens,
    most_message_tokens,
)
from chatbot_sessions.sessions.store import SessionStore, StoredContext

log = logging.getLogger(__name__)

#: Messages read after the summary, at most: enough for any budget of a few thousand tokens
#: (short turns), and the bound that keeps a turn's cost flat however long the session is.
READ_CAP = 200
#: Most messages one summarisation folds in (a long backlog goes in several steps).
SUMMARY_BATCH = 100


@dataclass(frozen=True)
class Context:
    """The history handed to the generator, and what it cost."""

    session_id: str
    summary: str
    summary_through: int
    messages: list[Message]
    budget: int
    #: Position of the oldest verbatim message: everything before it is the summary's job.
    window_start: int

    @property
    def tokens(self) -> int:
        """Tokens of the summary and the messages, counted when asked for (GET …/context,
        once per answer): a reply needs what fits the budget, which ``build_context`` mostly
        decides from bounds, not the sum (a fifth of the CPU of reading a context). Not a
        ``cached_property``: on Python 3.11 that takes one lock for every instance."""
        summary = count_tokens(self.summary) if self.summary else 0
        return summary + sum(count_message_tokens(m) for m in self.messages)


def _pairs(messages: Sequence[Message]) -> list[list[Message]]:
    """Group into turns from the newest: an assistant message with the user one before it."""
    groups: list[list[Message]] = []
    index = len(messages) - 1
    while index >= 0:
        pair = index > 0 and messages[index - 1]["type"] == "user"
        if messages[index]["type"] == "assistant" and pair:
            groups.append([messages[index - 1], messages[index]])
            index -= 2
            continue
        groups.append([messages[index]])
        index -= 1
    return groups


def build_context(session_id: str, stored: StoredContext, budget: int) -> Context:
    """Fit the stored summary and messages into ``budget`` tokens (see the module doc).

    Turns are taken on their ``most_message_tokens`` bound while that fits: a turn whose bound fits
    fits. From the first that might not, the turns taken are counted and the rest decided on
    exact counts, so the messages chosen are the ones exact counting alone would choose.
    """
    summary = stored.summary
    used = count_tokens(summary) if summary else 0
    turns = _pairs(stored.messages)
    chosen: list[Message] = []
    bounded = used
    undecided = len(turns)
    for index, turn in enumerate(turns):
        most = sum(most_message_tokens(m) for m in turn)
        if chosen and bounded + most > budget:
            undecided = index
            break
        chosen[:0] = turn
        bounded += most
    if undecided < len(turns):
        used += sum(count_message_tokens(m) for m in chosen)
        for turn in turns[undecided:]:
            cost = sum(count_message_tokens(m) for m in turn)
            if used + cost > budget:
                break
            chosen[:0] = turn
            used += cost
    window_start = chosen[0]["id"] if chosen else stored.start + len(stored.messages)
    return Context(
        session_id=session_id,
        summary=summary,
        summary_through=stored.summary_through,
        messages=chosen,
        budget=budget,
        window_start=window_start,
    )


class Summaries:
    """Folds turns that left the window into the session's summary, off the reply's path.

    One job per session at a time: a turn stored while its session's job runs makes that job
    look again when it ends, so the summary always catches up with the last turn. A failed
    summary leaves the old one.
    """

    def __init__(
        self, store: SessionStore, summariser: Summariser, budget: int, *, cap: int = READ_CAP
    ) -> None:
        self.store = store
        self.summariser = summariser
        self.budget = budget
        # The same read as the reply's context, so the window the summary stops at is the
        # one the next reply starts from: no message falls between the two.
        self.cap = cap
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="summariser")
        self._running: set[str] = set()
        self._again: set[str] = set()
        self._lock = threading.Lock()

    def after_turn(self, session_id: str) -> None:
        """Schedule a look at ``session_id``: summarise what fell out of its window."""
        with self._lock:
            if session_id in self._running:
                self._again.add(session_id)
                return
            self._running.add(session_id)
        self._executor.submit(self._run, session_id)

    def _run(self, session_id: str) -> None:
        while True:
            try:
                self.catch_up(session_id)
            except (SummaryFailed, StoreUnavailable, SessionNotFound) as exc:
                log.warning("summary not updated: %s", exc)
            except Exception:
                log.exception("summary job failed")
            with self._lock:
                if session_id not in self._again:
                    self._running.discard(session_id)
                    return
                self._again.discard(session_id)

    def catch_up(self, session_id: str) -> bool:
        """Fold the turns before the current window into the summary; True if it moved."""
        window = build_context(
            session_id, self.store.context(session_id, cap=self.cap), self.budget
        )
        if window.window_start <= window.summary_through:
            return False
        backlog = self.store.context(
            session_id,
            cap=min(SUMMARY_BATCH, window.window_start - window.summary_through),
            start=window.summary_through,
        )
        fallen = [m for m in backlog.messages if m["id"] < window.window_start]
        if not fallen:
            return False
        summary = self.summariser.summarise(window.summary, fallen)
        return self.store.save_summary(session_id, summary, fallen[-1]["id"] + 1)

    def close(self) -> None:
        """Let running summaries finish."""
        self._executor.shutdown(wait=True)
