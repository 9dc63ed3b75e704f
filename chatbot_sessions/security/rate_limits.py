"""Request rate limits: fixed windows in Redis, every limit of a request counted in one call.

What is limited (each setting a ``limits`` rate string: ``30/minute``, ``5/second;100/hour``):

- ``RATE_LIMIT_CREATE`` per client IP: ``POST /api/session/create``, and every send-message
  that starts a session (``ChatService.before_new_session``), so that made-up session ids
  cannot create sessions past the limit;
- ``RATE_LIMIT_SEND_IP`` per client IP and ``RATE_LIMIT_SEND_SESSION`` per session (per IP
  when the ``session-id`` header is missing or malformed) on send-message.

**Counting.** One Lua script increments every counter of the request, sets a counter's
expiry on its first hit and returns each count with the seconds its window has left: one
round trip per request on a single server or Sentinel. A send that starts a session makes a
second one for the create limit, at the point the chat service knows it will. A count past
its limit raises ``RateLimited`` (the 429 is built in ``http_errors.py``); refused requests
count too, as in any fixed window.

**Keys** are ``chatbot_sessions:rate:{<identity>}:<limit>:<amount>/<seconds>s``, where the
identity is ``ip:<SHA-256 of the address>`` or ``session:<SHA-256 of the id>`` (32 hex
each): no client input reaches a key name unhashed, no key outside a session's own holds
its id, and a counter left behind by a deleted session names nothing.
The hash tag puts each identity's counters in one slot. On Redis Cluster the script runs
once per slot, that is per identity: a send into a session costs two round trips (one to
the IP's master, one to the session's, one after the other), a create or a send without
a session one.

**Failing open.** A Redis error in the limiter never refuses a request by itself nor turns
into a 500: that request is counted in process memory instead (the same script on an
in-process fakeredis, so the limits still hold per worker during an outage) and goes on,
and the store answers for itself (503 when Redis is really down). A timeout is noted in
``sessions/budget.py``, and once the budget is spent the limiter does not call Redis at all, so a
stalled Redis costs a request one wait, not one per call.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import fakeredis
import redis
from flask import Flask, request
from limits import RateLimitItem, parse_many
from redis.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import RedisClusterException, RedisError

from chatbot_sessions import extensions
from chatbot_sessions.config import Settings
from chatbot_sessions.exceptions import RateLimited
from chatbot_sessions.sessions import budget
from chatbot_sessions.sessions.ids import parse_session_id

log = logging.getLogger(__name__)

KEY_PREFIX = "chatbot_sessions:rate:"
#: One counter of a request: its key and the rate it enforces.
Counter = tuple[str, RateLimitItem]

# KEYS: the counters. ARGV[i]: the window of KEYS[i], in seconds.
# Returns {count, seconds left, count, seconds left, ...} in KEYS order. The expiry is set
# whenever a counter has none, which is on its first hit: the window starts there.
_HIT = """
local result = {}
for i, key in ipairs(KEYS) do
  local count = redis.call('INCR', key)
  local ttl = redis.call('TTL', key)
  if ttl < 0 then
    ttl = tonumber(ARGV[i])
    redis.call('EXPIRE', key, ttl)
  end
  result[2 * i - 1] = count
  result[2 * i] = ttl
end
return result
"""


def client_ip() -> str:
    """The caller's address as the WSGI server (or a trusted proxy, see proxy.py) saw it."""
    return request.remote_addr or "unknown"


def _digest(text: str) -> str:
    # Client input (an address a trusted proxy passed on, a session id) reaches a key name
    # only hashed: it can never shape the key, and a key left behind names nobody.
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def ip_identity() -> str:
    """Whose counter a per-IP limit increments."""
    return "ip:" + _digest(client_ip())


def session_identity() -> str:
    """Whose counter a per-session limit increments: the session, else the caller's IP.

    Only a canonical UUID v4 counts as a session, and only its digest reaches the key; a
    missing or malformed header (which starts a new session) is counted against the IP.
    """
    session_id = parse_session_id(request.headers.get("session-id"))
    if session_id is None:
        return ip_identity()
    return "session:" + _digest(session_id)


@dataclass(frozen=True)
class Limit:
    """One configured limit: its name in keys, its rates, and whose counter it increments."""

    name: str
    rates: tuple[RateLimitItem, ...]
    identity: Callable[[], str]

    @classmethod
    def from_setting(cls, name: str, value: str, identity: Callable[[], str]) -> Limit:
        """Parse a validated ``RATE_LIMIT_*`` value (config.py refused bad ones at start-up)."""
        return cls(name, tuple(parse_many(value)), identity)

    def counters(self) -> list[Counter]:
        """(key, rate) for each rate of this limit, for the current request's identity."""
        tag = f"{KEY_PREFIX}{{{self.identity()}}}:{self.name}"
        return [(f"{tag}:{rate.amount}/{rate.get_expiry()}s", rate) for rate in self.rates]


class RateLimiter:
    """Counts a request's limits in the sessions' Redis; shared by every thread of a worker."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.client = client
        self.create = Limit.from_setting("create", settings.rate_limit_create, ip_identity)
        self.send_ip = Limit.from_setting("send", settings.rate_limit_send_ip, ip_identity)
        self.send_session = Limit.from_setting(
            "session", settings.rate_limit_send_session, session_identity
        )
        self._hit = client.register_script(_HIT)
        self._by_slot = isinstance(client, RedisCluster)
        # Where a request is counted when Redis fails: the same script, in process memory.
        fallback = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
        self._hit_in_memory = fallback.register_script(_HIT)

    def check(self, limits: Iterable[Limit]) -> None:
        """Count one hit on every limit; RateLimited if any of them is past its amount."""
        counters = [counter for limit in limits for counter in limit.counters()]
        breached: list[tuple[int, RateLimitItem]] = []  # (seconds until it resets, rate)
        for group in self._groups(counters):
            for (_key, rate), (count, seconds_left) in zip(group, self._count(group), strict=True):
                if count > rate.amount:
                    breached.append((max(1, seconds_left), rate))
        if breached:
            # Retry when every breached window has reset: the longest wait.
            retry_after, rate = max(breached, key=lambda pair: pair[0])
            raise RateLimited(retry_after, str(rate))

    def check_new_session(self) -> None:
        """The chat service's hook: a send about to start a session counts as a create."""
        self.check([self.create])

    def _groups(self, counters: list[Counter]) -> list[list[Counter]]:
        """One group per script call: all counters, or on a cluster one group per slot."""
        if not self._by_slot:
            return [counters]
        slots: dict[int, list[Counter]] = {}
        for counter in counters:
            key, _rate = counter
            slots.setdefault(key_slot(key.encode()), []).append(counter)
        return list(slots.values())

    def _count(self, group: Sequence[Counter]) -> list[tuple[int, int]]:
        """Run the script on Redis, or in memory when Redis failed or the budget is spent."""
        keys = [key for key, _ in group]
        args = [rate.get_expiry() for _, rate in group]
        result: Any = None
        if not budget.spent():
            started = time.monotonic()
            try:
                result = self._hit(keys=keys, args=args)
            # RedisClusterException: no cluster node answered (it is not a RedisError).
            except (RedisError, RedisClusterException) as exc:
                budget.note_failure(exc, time.monotonic() - started)
                log.warning("rate limits counted in memory: %s: %s", type(exc).__name__, exc)
        if result is None:
            result = self._hit_in_memory(keys=keys, args=args)
        return [(int(result[i]), int(result[i + 1])) for i in range(0, len(result), 2)]


def _limited(view: Callable[..., Any], check: Callable[[], None]) -> Callable[..., Any]:
    @functools.wraps(view)
    def limited_view(*args: Any, **kwargs: Any) -> Any:
        check()
        return view(*args, **kwargs)

    return limited_view


def init_rate_limits(app: Flask, settings: Settings) -> RateLimiter | None:
    """Attach the limiter to the two writing views and the chat service; nothing when disabled.

    The check wraps the view functions (as a route decorator would), so it runs after the
    before-request hooks and not for the OPTIONS answers Flask makes without the view.
    """
    if not settings.rate_limit_enabled:
        return None
    resources = extensions.resources(app)
    limiter = RateLimiter(extensions.get_required(resources.redis, "redis"), settings)
    endpoints = {
        "sessions.CreateSession": [limiter.create],
        "messages.SendMessage": [limiter.send_ip, limiter.send_session],
    }
    for endpoint, limits in endpoints.items():
        view = app.view_functions[endpoint]  # KeyError here: a limited view was renamed
        app.view_functions[endpoint] = _limited(view, functools.partial(limiter.check, limits))
    extensions.get_required(resources.chat, "chat").before_new_session = limiter.check_new_session
    resources.limiter = limiter
    return limiter
