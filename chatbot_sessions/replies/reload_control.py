"""The operator's side of a reload: ask for a new version, see what each worker serves, wait.

``flask kb reload``/``flask kb stats`` (``cli.py``) and ``POST /api/admin/kb/reload``/
``GET /api/admin/kb`` (``api/admin.py``) are two faces of this one ``ReloadControl``, so they
cannot disagree about what "every worker serves version N" means. The workers' side (the
poll, the rebuild, the reports) is ``reloading.py``; every Redis command of both is in
``sessions/knowledge_versions.py``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chatbot_sessions.exceptions import KnowledgeReloadFailed, KnowledgeReloadTimedOut
from chatbot_sessions.replies.reloading import stale_after

if TYPE_CHECKING:
    from chatbot_sessions.sessions.knowledge_versions import KnowledgeVersions

#: Seconds between two reads of the workers' reports while waiting: a swap is seen within
#: KNOWLEDGE_POLL_INTERVAL plus this, and a wait costs Redis a GET and an HGETALL each time.
WAIT_POLL_SECONDS = 0.2


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


@dataclass(frozen=True)
class WorkerState:
    """One live worker's last report: what it serves, and when it last checked Redis."""

    worker: str  #: ``host:pid``
    #: The version its index was built for; None while it could not say (Redis was down
    #: when it started and has not answered since).
    version: int | None
    documents: int | None
    chunks: int | None
    built_at: float | None  #: epoch seconds
    checked_at: float  #: epoch seconds: its last report, written after each poll
    error: str | None  #: why its last rebuild failed (the index above still serves)
    failed_version: int | None

    @classmethod
    def of(cls, worker: str, report: Mapping[str, Any]) -> WorkerState:
        """Read a report as ``reloading.Served`` writes it; a field an older release did not
        write is None, so a rolling upgrade does not break the listing."""
        built = report.get("built_at")
        return cls(
            worker=worker,
            version=_optional_int(report.get("version")),
            documents=_optional_int(report.get("documents")),
            chunks=_optional_int(report.get("chunks")),
            built_at=None if built is None else float(built),
            checked_at=float(report["reported_at"]),  # workers() drops a report without it
            error=report.get("error") or None,
            failed_version=_optional_int(report.get("failed_version")),
        )

    @property
    def failure(self) -> str | None:
        """``version N failed: <why>``, or None when its last rebuild did not fail."""
        if self.error is None:
            return None
        return f"version {self.failed_version} failed: {self.error}"

    def serves(self, version: int) -> bool:
        """Whether it serves ``version`` or a later one (whose rebuild read the folder later,
        so it holds every change ``version`` was asked for)."""
        return self.version is not None and self.version >= version


@dataclass(frozen=True)
class ReloadState:
    """The version workers should serve, and every live worker's report (by worker id)."""

    version: int
    workers: tuple[WorkerState, ...]

    def failed_on(self, version: int) -> tuple[WorkerState, ...]:
        """The workers whose rebuild of ``version`` failed and that serve nothing newer."""
        return tuple(
            w for w in self.workers if w.failed_version == version and not w.serves(version)
        )

    def behind(self, version: int) -> tuple[WorkerState, ...]:
        """The workers that do not serve ``version`` (or a later one) yet."""
        return tuple(w for w in self.workers if not w.serves(version))


class ReloadControl:
    """Requests reloads and follows the workers' reports, over ``KnowledgeVersions``."""

    def __init__(self, versions: KnowledgeVersions, poll_interval: float) -> None:
        self.versions = versions
        #: A report older than this is a worker that died without withdrawing it.
        self.stale_after = stale_after(poll_interval)

    def request(self) -> int:
        """Ask every worker to rebuild from KNOWLEDGE_DIR: the version they will serve."""
        return self.versions.bump()

    def state(self) -> ReloadState:
        """The version in Redis and what every live worker reports (``StoreUnavailable``)."""
        version = self.versions.current()
        reports = self.versions.workers(stale_after=self.stale_after)
        return ReloadState(version, tuple(WorkerState.of(w, r) for w, r in reports.items()))

    def wait_for(self, version: int, timeout: float) -> ReloadState:
        """The state once every live worker serves ``version``; raise ``KnowledgeReloadFailed``
        as soon as one reports that it cannot build it, ``KnowledgeReloadTimedOut`` after
        ``timeout`` seconds (at least one worker must have reported: none is not success)."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.state()
            failed = state.failed_on(version)
            if failed:
                raise KnowledgeReloadFailed(version, state, failed)
            if state.workers and not state.behind(version):
                return state
            if time.monotonic() >= deadline:
                raise KnowledgeReloadTimedOut(version, timeout, state)
            time.sleep(WAIT_POLL_SECONDS)
