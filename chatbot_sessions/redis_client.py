"""Builds the one redis-py client a process shares, from the validated settings.

A single client owns a connection pool that every thread borrows from; redis-py resets
the pool when it notices it is running in a forked child, so the client is safe to
create before or after gunicorn forks its workers.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry

from chatbot_sessions.config import Settings

log = logging.getLogger(__name__)


def _retry() -> Retry:
    # Only connection failures are retried: a timed-out command may already have run on the
    # server, and replaying an append would store the exchange twice. Two quick retries
    # ride out a dropped idle connection without stretching an outage past the timeout.
    return Retry(
        ExponentialBackoff(cap=0.2, base=0.02), 2, supported_errors=(RedisConnectionError,)
    )


def _common_options(settings: Settings) -> dict[str, Any]:
    return {
        "socket_timeout": settings.redis_socket_timeout,
        "socket_connect_timeout": settings.redis_connect_timeout,
        "decode_responses": True,
        "retry": _retry(),
        "health_check_interval": 30,
    }


def _parse_host_port(entry: str) -> tuple[str, int]:
    host, _, port = entry.rpartition(":")
    return (host or "localhost").strip("[]"), int(port or 26379)


def connect(settings: Settings) -> redis.Redis:
    """Return a client for the configured Redis: sentinel, cluster, URL, host, or embedded."""
    options = _common_options(settings)
    if settings.redis_sentinels:
        return _sentinel_client(settings, options)
    if settings.redis_cluster:
        return _cluster_client(settings, options)
    if settings.redis_url:
        return redis.Redis.from_url(
            settings.redis_url, max_connections=settings.redis_max_connections, **options
        )
    if settings.redis_host:
        return redis.Redis(
            host=settings.redis_host,
            port=settings.redis_port,
            password=settings.redis_password,
            db=settings.redis_db,
            max_connections=settings.redis_max_connections,
            **options,
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
    from redis.sentinel import Sentinel

    if not settings.redis_sentinel_master:
        from chatbot_sessions.config import ConfigError

        raise ConfigError("REDIS_SENTINEL_MASTER must name the master when REDIS_SENTINELS is set")
    sentinel_options = (
        {"password": settings.redis_sentinel_password} if (settings.redis_sentinel_password) else {}
    )
    sentinel = Sentinel(
        [_parse_host_port(entry) for entry in settings.redis_sentinels],
        sentinel_kwargs={
            "socket_timeout": settings.redis_socket_timeout,
            "socket_connect_timeout": settings.redis_connect_timeout,
            **sentinel_options,
        },
        password=settings.redis_password,
        db=settings.redis_db,
        **options,
    )
    return sentinel.master_for(settings.redis_sentinel_master)


def _cluster_client(settings: Settings, options: dict[str, Any]) -> redis.Redis:
    from redis.cluster import RedisCluster

    options.pop("health_check_interval")
    if settings.redis_url:
        return RedisCluster.from_url(settings.redis_url, **options)
    return RedisCluster(
        host=settings.redis_host or "localhost",
        port=settings.redis_port,
        password=settings.redis_password,
        **options,
    )
