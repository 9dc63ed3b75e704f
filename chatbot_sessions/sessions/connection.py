"""Builds the one redis-py client a process shares, from the validated settings.

A single server or a Sentinel master is reached through ``lean_client``'s client and pools,
which run script calls without redis-py 8's unused per-command hooks; a cluster uses
redis-py's ``RedisCluster`` as it is.

A single client owns a connection pool that every thread borrows from; redis-py resets
the pool when it notices it is running in a forked child, so the client is safe to
create before or after gunicorn forks its workers.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from chatbot_sessions.config import Settings, parse_host_port
from chatbot_sessions.sessions.lean_client import LeanRedis, LeanSentinelConnectionPool, lean

log = logging.getLogger(__name__)


def _no_retry() -> Retry:
    # redis-py would otherwise retry on its own (timeouts included, three times), hidden
    # from the store. The store retries its scripts itself (``store.RETRY_DELAYS``): it
    # knows every script is safe to run twice, and whether a call was retried, which a
    # DELETE needs to tell "my earlier attempt deleted it" from "there was nothing". A
    # timeout is never retried, so a request waits on Redis once (``sessions/budget.py``).
    return Retry(NoBackoff(), 0)


def _common_options(settings: Settings) -> dict[str, Any]:
    return {
        "socket_timeout": settings.redis_socket_timeout,
        "socket_connect_timeout": settings.redis_connect_timeout,
        "decode_responses": True,
        "retry": _no_retry(),
        "health_check_interval": 30,
    }


def connect(settings: Settings) -> redis.Redis:
    """Return a client for the configured Redis: sentinel, cluster, URL, host, or embedded."""
    options = _common_options(settings)
    if settings.redis_sentinels:
        return _sentinel_client(settings, options)
    if settings.redis_cluster:
        return _cluster_client(settings, options)
    if settings.redis_url:
        return lean(
            redis.Redis.from_url(
                settings.redis_url, max_connections=settings.redis_max_connections, **options
            )
        )
    if settings.redis_host:
        return lean(
            redis.Redis(
                host=settings.redis_host,
                port=settings.redis_port,
                password=settings.redis_password,
                db=settings.redis_db,
                max_connections=settings.redis_max_connections,
                **options,
            )
        )
    return _embedded_client()


def _embedded_client() -> redis.Redis:
    import fakeredis

    log.warning(
        "No REDIS_URL or REDIS_HOST set: using the embedded in-process store. It is "
        "single-process and not persistent; sessions vanish on restart. Set REDIS_URL "
        "for anything beyond a trial."
    )
    return fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)


def _sentinel_client(settings: Settings, options: dict[str, Any]) -> redis.Redis:
    """A client of whichever server the sentinels currently name as master.

    Each new connection asks the sentinels for the master's address, so after a failover
    the broken connections fail once (a 503, retried by the client) and the next ones
    reach the promoted replica; no restart is needed. Scripts are not in the new master's
    cache, and ``lua.LuaScript`` reloads them on the NOSCRIPT reply.
    """
    from redis.sentinel import Sentinel

    sentinel_auth = (
        {"password": settings.redis_sentinel_password} if settings.redis_sentinel_password else {}
    )
    sentinel = Sentinel(
        [parse_host_port(entry) for entry in settings.redis_sentinels],
        sentinel_kwargs={
            "socket_timeout": settings.redis_socket_timeout,
            "socket_connect_timeout": settings.redis_connect_timeout,
            **sentinel_auth,
        },
        password=settings.redis_password,
        db=settings.redis_db,
        **options,
    )
    # validated in config: REDIS_SENTINELS is never set without REDIS_SENTINEL_MASTER
    return sentinel.master_for(
        settings.redis_sentinel_master,
        redis_class=LeanRedis,
        connection_pool_class=LeanSentinelConnectionPool,
        max_connections=settings.redis_max_connections,
    )


def _cluster_client(settings: Settings, options: dict[str, Any]) -> redis.Redis:
    """A ``RedisCluster`` seeded from REDIS_URL or REDIS_HOST/PORT; it discovers the rest.

    Every key of a session shares one hash tag (see ``store.session_keys``), so each
    script runs on the one master owning that slot. On a connection error the cluster
    client refreshes its slot map before raising, so the store's retry reaches the node
    that owns the slot now.
    """
    from redis.cluster import RedisCluster

    options.pop("health_check_interval")  # not a RedisCluster option
    options["max_connections"] = settings.redis_max_connections  # per node
    seed_url, seed_options = _cluster_seed(settings)
    return RedisCluster.from_url(seed_url, **seed_options, **options)


def _cluster_seed(settings: Settings) -> tuple[str, dict[str, Any]]:
    """The cluster's seed node as (URL, extra options): REDIS_URL, else REDIS_HOST/PORT/PASSWORD."""
    if settings.redis_url:
        return settings.redis_url, {}
    host = settings.redis_host or "localhost"
    if ":" in host:  # an IPv6 address goes in brackets inside a URL
        host = f"[{host}]"
    password = {"password": settings.redis_password} if settings.redis_password else {}
    return f"redis://{host}:{settings.redis_port}", password
