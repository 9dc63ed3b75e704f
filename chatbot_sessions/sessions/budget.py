"""One bounded wait on Redis per request.

A request may talk to Redis several times (rate limits, the context read, the append).
When Redis is stalled, each of those calls would wait out ``REDIS_SOCKET_TIMEOUT`` on its
own, so a client waited two or three timeouts for its 503. The rule here: once a Redis call
in a request has **timed out**, every later Redis call of the same request fails at once,
so the request answers within about one timeout in total.

Only waits count (a timeout, or a connection error that came after a wait): a refused or
reset connection fails in microseconds and is worth retrying, and on Redis Cluster a fast
failure of one node says nothing about another. ``note_failure`` is that rule, for the
store and the rate limiter alike.

The scope is a context variable that the app resets at the start and end of every request
(``init_app``); code outside a request (the CLI, background work) has no budget and is never
cut short.
"""

from __future__ import annotations

from contextvars import ContextVar

from flask import Flask
from redis.exceptions import TimeoutError as RedisTimeoutError

#: A failure slower than this (seconds) was a wait, not a quick refusal.
FAST_FAILURE = 0.1

_timed_out: ContextVar[bool | None] = ContextVar("redis_timed_out", default=None)


def begin() -> None:
    """Start a fresh budget for the work that follows (a request)."""
    _timed_out.set(False)


def end(_exc: BaseException | None = None) -> None:
    """Leave the budget's scope, so a pooled thread's next job starts without one."""
    _timed_out.set(None)


def spent() -> bool:
    """True when an earlier Redis call in this scope already waited out its timeout."""
    return bool(_timed_out.get())


def note_timeout() -> None:
    """Record that a Redis call of this scope timed out (a no-op outside any scope)."""
    if _timed_out.get() is not None:
        _timed_out.set(True)


def note_failure(error: BaseException, waited: float = 0.0) -> bool:
    """Record a failed Redis call; True when it was a wait: a timeout, or a connection
    error that came only after ``waited`` seconds (a stalled server closing on us), not a
    quick refusal. A wait spends the scope's budget and is not worth retrying."""
    if isinstance(error, RedisTimeoutError) or waited > FAST_FAILURE:
        note_timeout()
        return True
    return False


def init_app(app: Flask) -> None:
    """Give every request its own budget; registered first, so it is set before any limit."""
    app.before_request_funcs.setdefault(None, []).insert(0, begin)
    app.teardown_request(end)
