"""A knowledge base that changes without a restart: the swappable generator and its poller.

``flask kb reload`` increments a version in Redis (``sessions.knowledge_versions``). Each
serving process runs one ``KnowledgeReloader`` thread that reads that version every
KNOWLEDGE_POLL_INTERVAL seconds; when it differs from the one served, the thread rebuilds
the index from KNOWLEDGE_DIR and swaps it in (``ReloadableGenerator.rebuild``). Requests
never wait for a build and never see a half-built index; a build that fails leaves the old
index serving, with the error logged and reported. Each process also reports what it serves
(``Served``) into Redis, which ``flask kb stats`` lists, and announces the version it serves
(``signals.knowledge_served``), which the metrics show.

With the embedded store (no Redis configured) the version lives inside the one process, so
``flask kb reload``, another process, cannot reach it: restart instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from chatbot_sessions import signals
from chatbot_sessions.domain import Message, Reply
from chatbot_sessions.exceptions import StoreUnavailable
from chatbot_sessions.replies.base import ReplyStream, StreamingReplyGenerator
from chatbot_sessions.replies.retriever import Retriever

if TYPE_CHECKING:
    from chatbot_sessions.sessions.knowledge_versions import KnowledgeVersions

log = logging.getLogger(__name__)


def stale_after(interval: float) -> float:
    """Seconds after which a worker's report counts as dead: several missed polls."""
    return max(10.0, 5 * interval)


class ReloadableGenerator:
    """A ``StreamingReplyGenerator`` whose knowledge base can be rebuilt while it serves.

    Every call reads ``current`` once: a generator around one complete index. A rebuild
    makes the new index and a generator around it first, then replaces ``current`` in one
    assignment, so a request in flight finishes on the index it started with.
    """

    def __init__(
        self,
        build_index: Callable[[], Retriever],
        answer_with: Callable[[Retriever], StreamingReplyGenerator],
    ) -> None:
        self._build_index = build_index
        self._answer_with = answer_with
        self._rebuilding = threading.Lock()
        self.current: StreamingReplyGenerator = answer_with(build_index())

    @property
    def retriever(self) -> Retriever:
        """The index served now (``flask kb`` reads it)."""
        return self.current.retriever

    @property
    def client(self) -> Any:
        """The LLM client, shared by every index's generator; None for extractive replies."""
        return getattr(self.current, "client", None)

    @property
    def history_messages(self) -> int | None:
        """How much history the generator reads (None: all that CONTEXT_MESSAGES allows);
        the same for every index, so the chat service may read it once."""
        return getattr(self.current, "history_messages", None)

    def generate(self, question: str, history: Sequence[Message], **extra: Any) -> Reply:
        """The current generator's reply (``extra``: the summary, for an LLM)."""
        return self.current.generate(question, history, **extra)

    def stream(self, question: str, history: Sequence[Message], **extra: Any) -> ReplyStream:
        """The current generator's reply as a stream."""
        return self.current.stream(question, history, **extra)

    def rebuild(self) -> Retriever:
        """Index the folder afresh and serve the new index; on any error raise, keeping the old."""
        with self._rebuilding:
            generator = self._answer_with(self._build_index())
            self.current = generator
        return generator.retriever

    def close(self) -> None:
        """Release the LLM client's connection pool (shared by every rebuilt generator)."""
        close = getattr(self.current, "close", None)
        if close is not None:
            close()


@dataclass(frozen=True)
class Served:
    """What one process serves, as it reports it into Redis (``flask kb stats``)."""

    #: The reload version the index was built for; None when it was built while Redis
    #: could not say (the first poll that reaches Redis decides).
    version: int | None
    documents: int
    chunks: int
    #: When that index was built, epoch seconds.
    built_at: float
    #: Why the last rebuild failed (the index above still serves), or None.
    error: str | None = None
    #: The version whose rebuild failed; not tried again until the version changes.
    failed_version: int | None = None

    @classmethod
    def of(cls, retriever: Retriever, version: int | None) -> Served:
        """A freshly built ``retriever``'s state, at ``version``."""
        stats = retriever.stats
        return cls(version, stats.documents, stats.chunks, time.time())


class KnowledgeReloader:
    """Keeps one process's generator at the version in Redis, from a background thread."""

    def __init__(
        self,
        generator: ReloadableGenerator,
        versions: KnowledgeVersions,
        *,
        interval: float,
        version: int | None,
    ) -> None:
        self.generator = generator
        self.versions = versions
        self.interval = interval
        self.served = Served.of(generator.retriever, version)
        self._redis_ok = True
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        self._stopping = threading.Event()

    @property
    def worker(self) -> str:
        """This process's id in the reports: ``host:pid`` (read after the fork)."""
        return f"{socket.gethostname()}:{os.getpid()}"

    def check(self) -> None:
        """One poll: read the version, rebuild if it changed, report. Never raises."""
        try:
            wanted = self.versions.current()
        except StoreUnavailable as exc:
            self._redis_unavailable(exc)
            return
        if self._needs_rebuild(wanted):
            self._rebuild(wanted)
        elif self.served.version is None:  # never reloaded: the start-up index is version 0
            self.served = replace(self.served, version=wanted)
            self._announce()
        try:
            self.versions.report(self.worker, asdict(self.served), int(stale_after(self.interval)))
        except StoreUnavailable as exc:
            self._redis_unavailable(exc)
            return
        if not self._redis_ok:
            log.info("knowledge reloader: Redis answers again")
            self._redis_ok = True

    def _needs_rebuild(self, wanted: int) -> bool:
        if wanted in (self.served.version, self.served.failed_version):
            return False
        return not (self.served.version is None and wanted == 0)

    def _rebuild(self, version: int) -> None:
        started = time.perf_counter()
        try:
            retriever = self.generator.rebuild()
        except Exception as exc:  # a folder gone or unreadable must not end the thread
            self.served = replace(self.served, error=f"{exc}", failed_version=version)
            log.error(
                "knowledge base version %s: rebuild failed, still serving version %s: %s",
                version,
                self.served.version,
                exc,
            )
            return
        self.served = Served.of(retriever, version)
        self._announce()
        log.info(
            "knowledge base version %s: %d documents, %d chunks, swapped in after %.3fs",
            version,
            self.served.documents,
            self.served.chunks,
            time.perf_counter() - started,
        )

    def _announce(self) -> None:
        """Tell whoever listens (the metrics) which version this process serves now."""
        if self.served.version is not None:
            signals.knowledge_served.send(self, version=self.served.version)

    def _redis_unavailable(self, exc: StoreUnavailable) -> None:
        if self._redis_ok:  # once per outage, not once a second
            log.warning("knowledge reloader: Redis unavailable, will retry: %s", exc)
            self._redis_ok = False

    def start(self) -> None:
        """Start polling in a daemon thread of this process (again in a forked child)."""
        if self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._announce()  # here, not at build: only a serving process has a version to show
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="knowledge-reloader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            try:
                self.check()
            except Exception:  # a bug must not stop reloads for the rest of the process
                log.exception("knowledge reloader: unexpected error")

    def stop(self) -> None:
        """Stop polling and withdraw this process's report (it is leaving)."""
        if self._thread is None or self._pid != os.getpid():
            return
        self._stopping.set()
        self._thread.join(timeout=1)  # a build in progress is abandoned: the thread is a daemon
        self._thread = None
        self._pid = None
        with contextlib.suppress(StoreUnavailable):  # else the report expires on its own
            self.versions.forget(self.worker)
