"""The app's resources: built by the ``init_app`` of the part that owns each, reached here.

Flask's tutorial pattern (flaskr's ``db.init_app`` and ``get_db``), for every resource:
one ``Resources`` object per app, under one key of ``app.extensions``; each part's
``init_app`` fills in its own fields and says how to close them; views, CLIs and hooks read
them through the accessors below. No other module names a key of ``app.extensions``, and
nothing lives in a module-level global, so apps built side by side (tests) stay apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import Flask

from chatbot_sessions import current
from chatbot_sessions.config import Settings

if TYPE_CHECKING:  # types only: the parts import this module, not the other way round
    import redis

    from chatbot_sessions.chat import ChatService
    from chatbot_sessions.ops.health import ReadinessProbe
    from chatbot_sessions.ops.metrics import Metrics
    from chatbot_sessions.replies.base import ReplyGenerator
    from chatbot_sessions.replies.reload_control import ReloadControl
    from chatbot_sessions.replies.reloading import KnowledgeReloader
    from chatbot_sessions.replies.summary import Summariser
    from chatbot_sessions.security.rate_limits import RateLimiter
    from chatbot_sessions.sessions.admin import SessionAdmin
    from chatbot_sessions.sessions.knowledge_versions import KnowledgeVersions
    from chatbot_sessions.sessions.store import SessionStore

_KEY = "chatbot_sessions"


@dataclass
class Resources:
    """Everything one app built; a field is None until its part's ``init_app`` ran."""

    settings: Settings
    redis: redis.Redis | None = None
    store: SessionStore | None = None
    admin: SessionAdmin | None = None
    generator: ReplyGenerator | None = None
    #: The knowledge base's reload version in Redis, and who serves which.
    knowledge_versions: KnowledgeVersions | None = None
    #: Keeps the generator's knowledge base at that version; only for a reloadable one.
    reloader: KnowledgeReloader | None = None
    #: Asks for a reload and follows the workers there (``flask kb``, the admin API).
    reload_control: ReloadControl | None = None
    #: Writes the rolling summary of long conversations; only with an LLM.
    summariser: Summariser | None = None
    chat: ChatService | None = None
    limiter: RateLimiter | None = None
    metrics: Metrics | None = None
    readiness: ReadinessProbe | None = None
    #: Objects that must live as long as the app (blinker holds receivers weakly).
    keep_alive: list[Any] = field(default_factory=list)
    _closers: list[Callable[[], None]] = field(default_factory=list)
    _starters: list[Callable[[], None]] = field(default_factory=list)

    def on_start(self, starter: Callable[[], None]) -> None:
        """Run ``starter`` when a server process starts serving the app (``start_app``)."""
        self._starters.append(starter)

    def start(self) -> None:
        """Start the background work of a serving process (threads must start after fork)."""
        for starter in self._starters:
            starter()

    def on_close(self, closer: Callable[[], None]) -> None:
        """Run ``closer`` when the app is closed; the last registered runs first."""
        self._closers.append(closer)

    def close(self) -> None:
        """Release what the parts opened (connection pools, HTTP clients), once."""
        while self._closers:
            self._closers.pop()()


def install(app: Flask, settings: Settings) -> Resources:
    """Give ``app`` its (empty) resources; ``create_app`` calls this first."""
    app.extensions[_KEY] = resources = Resources(settings)
    return resources


def resources(app: Flask | None = None) -> Resources:
    """The resources of ``app``, or of the current app."""
    return (app or current.app()).extensions[_KEY]


def is_service_app(app: object) -> bool:
    """Whether ``app`` was built by ``create_app`` (gunicorn may serve other WSGI apps,
    such as the benchmark's floor, with the same configuration)."""
    return _KEY in getattr(app, "extensions", {})


def start_app(app: Flask) -> None:
    """Start ``app``'s background work: each gunicorn worker calls this once it has the app,
    after the fork (a thread started before it would not exist in the worker)."""
    resources(app).start()


def close_app(app: Flask) -> None:
    """Close everything ``app`` opened: gunicorn calls this as a worker exits, tests too."""
    resources(app).close()


def get_settings() -> Settings:
    """The validated settings of the current app."""
    return resources().settings


def get_store() -> SessionStore:
    """The session repository of the current app."""
    return _required(resources().store, "store")


def get_admin() -> SessionAdmin:
    """The operator commands (scans, stats, export/import) of the current app."""
    return _required(resources().admin, "admin")


def get_chat() -> ChatService:
    """The chat-turn service of the current app."""
    return _required(resources().chat, "chat")


def get_generator() -> ReplyGenerator:
    """The reply generator of the current app."""
    return _required(resources().generator, "generator")


def get_reload_control() -> ReloadControl:
    """The knowledge base's reload requests and the workers' reports, of the current app."""
    return _required(resources().reload_control, "reload control")


def get_metrics() -> Metrics:
    """The Prometheus metrics of the current app."""
    return _required(resources().metrics, "metrics")


def get_readiness() -> ReadinessProbe:
    """The readiness probe of the current app."""
    return _required(resources().readiness, "readiness")


def get_required(value: Any, name: str) -> Any:
    """``value``, which an earlier ``init_app`` should have set; a wiring bug if not."""
    return _required(value, name)


def _required(value: Any, name: str) -> Any:
    if value is None:  # a part's init_app did not run: a wiring bug, not a request error
        raise RuntimeError(f"the app has no {name}: its init_app was not called")
    return value
