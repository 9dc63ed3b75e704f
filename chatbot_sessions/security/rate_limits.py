"""Request rate limits: fixed windows in Redis, counted with the session access where they can.

What is limited (each setting a ``limits`` rate string: ``30/minute``, ``5/second;100/hour``):

- ``RATE_LIMIT_CREATE`` per client IP: ``POST /api/session/create``, and every send-message
  that starts a session (``ChatService.before_new_session``), so that made-up session ids
  cannot create sessions past the limit;
- ``RATE_LIMIT_SEND_IP`` per client IP and ``RATE_LIMIT_SEND_SESSION`` per session (per IP
  when the ``session-id`` header is missing or malformed) on send-message;
- ``RATE_LIMIT_FEEDBACK`` per client IP on rating an answer (each rating is a write).

**Counting.** Fixed windows, counted by Lua (``sessions/scripts.py``, ``COUNT_LIMITS``):
each counter of the request is incremented, gets its expiry on its first hit, and the
script says whether one is past its amount. On a single server or Sentinel the counters
ride on the request's first session access: the view wrapper leaves them *owed*, and the
store's create, touch or context script counts them before it does anything else, so a
create or a send into a session costs no round trip for its limits; only the first run
of that script carries them (a run again after a lost reply neither counts twice nor
refuses what the first run did). A send that names no session has nothing to ride on (it
claims its Idempotency-Key before any access), so the limiter's own script counts its send
limits before the view, and its create limit once the chat service knows it starts a
session, only if the send limits passed; ratings are counted before the view too (their
script writes at once). A request that names a session but reaches no access (a malformed
body, a keyed replay) is counted when the view is done. On Redis Cluster the counters'
hash tags are not the session's, so the limiter always counts them itself, before the view.
A count past its limit raises ``RateLimited`` (the 429 is built in ``http_errors.py``);
refused requests count too, as in any fixed window, and a refusal comes before anything
is stored.

**Keys** are ``chatbot_sessions:rate:{<identity>}:<limit>:<amount>/<seconds>s``, where the
identity is ``ip:<SHA-256 of the address>`` or ``session:<SHA-256 of the id>`` (32 hex
each): no client input reaches a key name unhashed, no key outside a session's own holds
its id, and a counter left behind by a deleted session names nothing.
The hash tag puts each identity's counters in one slot. On Redis Cluster the script runs
once per slot, that is per identity: a send into a session costs two round trips (one to
the IP's master, one to the session's, one after the other), a create or a send without
a session one.

**Failing open.** A Redis error in the limiter's own call never refuses a request by
itself nor turns into a 500: that request is counted in process memory instead (the same
script on an in-process fakeredis, so the limits still hold per worker during an outage)
and goes on, and the store answers for itself (503 when Redis is really down). When the
counters ride on a session access, a Redis error is that access's error: the 503 the
request gets anyway. A counter Redis cannot increment is skipped. A timeout is noted in
``sessions/budget.py``, and once the budget is spent the limiter does not call Redis at
all, so a stalled Redis costs a request one wait, not one per call.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import fakeredis
import redis
from flask import Flask, has_request_context
from limits import RateLimitItem, parse_many
from redis.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import RedisClusterException, RedisError

from chatbot_sessions import current, extensions
from chatbot_sessions.config import Settings
from chatbot_sessions.domain import LimitCounter
from chatbot_sessions.exceptions import RateLimited
from chatbot_sessions.sessions import budget, scripts
from chatbot_sessions.sessions.ids import parse_session_id
from chatbot_sessions.sessions.lua import LuaScript

log = logging.getLogger(__name__)

KEY_PREFIX = "chatbot_sessions:rate:"
#: Where a request's counters wait for its first session access (the request's ``g``).
_OWED = "rate_limits_owed"


def client_ip() -> str:
    """The caller's address as the WSGI server (or a trusted proxy, see proxy.py) saw it."""
    return current.request().remote_addr or "unknown"


def _digest(text: str) -> str:
    # Client input (an address a trusted proxy passed on, a session id) reaches a key name
    # only hashed: it can never shape the key, and a key left behind names nobody.
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def ip_identity() -> str:
    """Whose counter a per-IP limit increments."""
    return "ip:" + _digest(client_ip())


def _named_session() -> str | None:
    """The canonical session id the request's ``session-id`` header names, if well formed."""
    return parse_session_id(current.request().headers.get("session-id"))


def session_identity() -> str:
    """Whose counter a per-session limit increments: the session, else the caller's IP.

    Only a canonical UUID v4 counts as a session, and only its digest reaches the key; a
    missing or malformed header (which starts a new session) is counted against the IP.
    """
    session_id = _named_session()
    if session_id is None:
        return ip_identity()
    return "session:" + _digest(session_id)


@dataclass(frozen=True)
class Limit:
    """One configured limit: its name in keys, its rates, and whose counter it increments."""

    name: str
    rates: tuple[RateLimitItem, ...]
    identity: Callable[[], str]
    #: Per rate, what its counters share whoever is counted: the key's ending, the window,
    #: the amount and the rate's text (``limits`` works the window out per call).
    _shapes: tuple[tuple[str, int, int, str], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        shapes = tuple(
            (f":{self.name}:{rate.amount}/{rate.get_expiry()}s", rate.get_expiry(), rate.amount,
             str(rate))
            for rate in self.rates
        )  # fmt: skip
        object.__setattr__(self, "_shapes", shapes)

    @classmethod
    def from_setting(cls, name: str, value: str, identity: Callable[[], str]) -> Limit:
        """Parse a validated ``RATE_LIMIT_*`` value (config.py refused bad ones at start-up)."""
        return cls(name, tuple(parse_many(value)), identity)

    def counters(self) -> list[LimitCounter]:
        """One counter per rate of this limit, for the current request's identity."""
        tag = f"{KEY_PREFIX}{{{self.identity()}}}"
        return [
            LimitCounter(tag + ending, window, amount, text)
            for ending, window, amount, text in self._shapes
        ]


class RateLimiter:
    """Counts a request's limits in the sessions' Redis; shared by every thread of a worker."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.client = client
        self.create = Limit.from_setting("create", settings.rate_limit_create, ip_identity)
        self.send_ip = Limit.from_setting("send", settings.rate_limit_send_ip, ip_identity)
        self.send_session = Limit.from_setting(
            "session", settings.rate_limit_send_session, session_identity
        )
        self.feedback = Limit.from_setting("feedback", settings.rate_limit_feedback, ip_identity)
        self._script = LuaScript(client, scripts.LIMITS)
        self._by_slot = isinstance(client, RedisCluster)
        #: Counters may ride on the session access's script: one server, any key in reach.
        self.folds = not self._by_slot
        # Where a request is counted when Redis fails: the same script, in process memory.
        fallback = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
        self._script_in_memory = LuaScript(fallback, scripts.LIMITS)

    def check(self, limits: Iterable[Limit]) -> None:
        """Count one hit on every limit now; RateLimited if any of them is past its amount."""
        self.count([counter for limit in limits for counter in limit.counters()])

    def count(self, counters: Sequence[LimitCounter]) -> None:
        """Count ``counters`` with the limiter's own script; RateLimited if one is used up."""
        breached: list[tuple[int, LimitCounter]] = []  # (seconds until it resets, counter)
        for group in self._groups(counters):
            over = self._run(group)
            if over is not None:
                seconds, number = over
                breached.append((int(seconds), group[int(number) - 1]))
        if breached:
            # Retry when every breached window has reset: the longest wait.
            retry_after, counter = max(breached, key=lambda pair: pair[0])
            raise RateLimited(retry_after, counter.rate)

    def owe(self, limits: Iterable[Limit]) -> None:
        """Leave this request's counters for its first session access to count."""
        setattr(current.g(), _OWED, [counter for limit in limits for counter in limit.counters()])

    def take_owed(self) -> list[LimitCounter]:
        """The counters this request still owes, now the caller's to count (the store's
        ``owed_limits`` hook); none outside a request, as for a background thread."""
        if not has_request_context():
            return []
        return current.g().pop(_OWED, None) or []

    def check_new_session(self) -> None:
        """The chat service's hook: a send about to start a session counts as a create.

        Only once its send limits passed: a send they refuse must not spend the create
        budget of everyone behind its IP, nor report the create window as its wait.
        """
        owed = self.take_owed()  # none in practice: an access or the view took them
        if owed:
            self.count(owed)
        self.check([self.create])

    def _groups(self, counters: Sequence[LimitCounter]) -> list[list[LimitCounter]]:
        """One group per script call: all counters, or on a cluster one group per slot."""
        if not self._by_slot:
            return [list(counters)] if counters else []
        slots: dict[int, list[LimitCounter]] = {}
        for counter in counters:
            slots.setdefault(key_slot(counter.key.encode()), []).append(counter)
        return list(slots.values())

    def _run(self, group: Sequence[LimitCounter]) -> Any:
        """Run the script on Redis, or in memory when Redis failed or the budget is spent."""
        keys = [counter.key for counter in group]
        args = [n for counter in group for n in (counter.window, counter.amount)]
        if not budget.spent():
            started = time.monotonic()
            try:
                return self._script(keys=keys, args=args)
            # RedisClusterException: no cluster node answered (it is not a RedisError).
            except (RedisError, RedisClusterException) as exc:
                budget.note_failure(exc, time.monotonic() - started)
                log.warning("rate limits counted in memory: %s: %s", type(exc).__name__, exc)
        return self._script_in_memory(keys=keys, args=args)

    def limit(
        self, view: Callable[..., Any], limits: Sequence[Limit], rides: Callable[[], bool]
    ) -> Callable[..., Any]:
        """``view`` behind ``limits``: owed to its first session access when ``rides()``
        says this request's first access is a create, touch or context that can take them,
        else counted before the view runs."""
        checked_first = _limited(view, functools.partial(self.check, limits))
        if not self.folds:
            return checked_first

        @functools.wraps(view)
        def owing_view(*args: Any, **kwargs: Any) -> Any:
            if not rides():
                return checked_first(*args, **kwargs)
            self.owe(limits)
            try:
                response = view(*args, **kwargs)
            except BaseException:
                # Refused before any session access (a malformed body, Redis down): the
                # request still counts, and a used-up limit answers first, as it would
                # have before the view ran.
                self.count(self.take_owed())
                raise
            self.count(self.take_owed())  # no access took them: a replay, say
            return response

        return owing_view


def _always() -> bool:
    return True


def _never() -> bool:
    return False


def _names_a_session() -> bool:
    """Whether the send names a session (a well-formed id): its context read comes first."""
    return _named_session() is not None


def _limited(view: Callable[..., Any], check: Callable[[], None]) -> Callable[..., Any]:
    @functools.wraps(view)
    def limited_view(*args: Any, **kwargs: Any) -> Any:
        check()
        return view(*args, **kwargs)

    return limited_view


def init_rate_limits(app: Flask, settings: Settings) -> RateLimiter | None:
    """Attach the limiter to the three writing views and the chat service; nothing when disabled.

    The check wraps the view functions (as a route decorator would), so it runs after the
    before-request hooks and not for the OPTIONS answers Flask makes without the view.
    """
    if not settings.rate_limit_enabled:
        return None
    resources = extensions.resources(app)
    limiter = RateLimiter(extensions.get_required(resources.redis, "redis"), settings)
    # endpoint: (its limits, whether this request's first session access can count them)
    endpoints = {
        "sessions.CreateSession": ([limiter.create], _always),
        # Only into a session: a send that starts one claims its Idempotency-Key before any
        # access, and a refusal must come before anything is stored (nor wait on a busy key).
        "messages.SendMessage": ([limiter.send_ip, limiter.send_session], _names_a_session),
        # A rating's script (RATE) writes at once: its limit is counted before it runs.
        "sessions.AnswerFeedback": ([limiter.feedback], _never),
    }
    for endpoint, (limits, rides) in endpoints.items():
        view = app.view_functions[endpoint]  # KeyError here: a limited view was renamed
        app.view_functions[endpoint] = limiter.limit(view, limits, rides=rides)
    extensions.get_required(resources.chat, "chat").before_new_session = limiter.check_new_session
    if limiter.folds:
        extensions.get_required(resources.store, "store").owed_limits = limiter.take_owed
    resources.limiter = limiter
    return limiter
