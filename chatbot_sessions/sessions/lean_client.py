"""A redis-py client and pools that run a script call in about half the Python.

redis-py 8 wraps every command in machinery this service never turns on: OpenTelemetry
recorders (four calls per borrowed connection, each building the pool's name), a release
event for token re-authentication, a retry object with closures (ours retries nothing; the
store retries its scripts itself), and a connect-through-retry on a socket that is already
open. Under callgrind a script call through ``lua.LuaScript`` cost 149,000 instructions on
the stock client and 73,000 here; a cheap request makes one such call, so that was a tenth
of it. Packing the command with hiredis directly took 22,000 more off each call (a store
touch: 105,000 -> 83,000).

What is kept is everything a broken or stale connection needs:

- A borrowed connection is checked first, as redis-py checks it: one that the server closed
  (a restart, a failover, ``CLIENT KILL``) is reconnected before use, and so is one holding
  a reply nobody read, unless maintenance notifications are on (redis-py 8's default with
  RESP3, where unread data may be such a notice and is read with the next reply).
- A connection error or timeout disconnects the connection before the error is raised, so
  the next borrower reconnects; health checks (a ``PING`` after an idle spell) and the
  socket timeouts are the connection's own and unchanged.
- Fork safety, ``max_connections`` and, for Sentinel, giving up connections to a master the
  sentinels no longer name, are redis-py's own checks, asked in its order and under its
  lock (``_checkpid``, ``make_connection``, ``owns_connection``).
- Anything that cuts a call short, not only a connection error (a ``KeyboardInterrupt``,
  a gevent ``Timeout``), drops the socket, so a reply that arrives later is never read as
  the next caller's; a Sentinel connection does not drop itself in that case.

Only ``EVALSHA`` sent with no options takes the short path, and only on pools with no
client-side cache or credential provider (whose re-authentication hangs on the release
event); everything else is redis-py's own path. The short path follows what redis-py 8.1
does (``Redis._execute_command``, ``ConnectionPool.get_connection`` and ``release``) and
leans on the pool's private lists, so requirements.txt keeps redis below 9 and
``tests/sessions/test_lean_client.py`` holds it to redis-py's behaviour on a real server.
redis-py's OpenTelemetry metrics, which nothing here turns on, would not see script calls,
and their pool gauges would drift (the borrow and return on the short path record nothing).
"""

from __future__ import annotations

from typing import Any

import redis
from redis.connection import HiredisRespSerializer
from redis.exceptions import ConnectionError, ResponseError, TimeoutError
from redis.sentinel import SentinelConnectionPool

try:
    import hiredis
except ImportError:  # redis-py then packs in Python: no connection has a hiredis packer
    hiredis = None

#: The commands that take the short path: every store access and limit is one script.
SHORT_PATH_COMMANDS = frozenset({"EVALSHA"})


class _LeanPoolMixin:
    """``get_connection`` and ``release`` without the observability and re-auth steps."""

    def _short_path_allowed(self) -> bool:
        # Settled once: both are construction-time settings of the pool.
        allowed = getattr(self, "_lean_allowed", None)
        if allowed is None:
            allowed = self._lean_allowed = (
                self.cache is None and self.connection_kwargs.get("credential_provider") is None
            )
        return allowed

    def get_connection(self, command_name: Any = None, *keys: Any, **options: Any) -> Any:
        """A connection ready to send a command, as redis-py's pool hands one out."""
        if not self._short_path_allowed():
            return super().get_connection(command_name, *keys, **options)
        self._checkpid()
        with self._lock:
            try:
                connection = self._available_connections.pop()
            except IndexError:
                connection = self.make_connection()
            self._in_use_connections.add(connection)
        try:
            if connection._sock is None:  # what connect() asks first, past a retry wrapper
                connection.connect()
            try:
                # A server-closed socket raises here. Unread data is a reply nobody read,
                # unless maintenance notifications (RESP3 pushes) may be waiting.
                if connection.can_read() and not self.maint_notifications_enabled():
                    raise ConnectionError("Connection has data")
            except (ConnectionError, TimeoutError, OSError):
                connection.disconnect()  # start over, once
                connection.connect()
                if connection.can_read() and not self.maint_notifications_enabled():
                    raise ConnectionError("Connection not ready") from None
        except BaseException:
            self.release(connection)
            raise
        return connection

    def release(self, connection: Any) -> None:
        """Put a connection back for the next borrower, in redis-py's order (the ownership
        question inside the lock, after the connection left the in-use set: a Sentinel
        failover that drops idle connections then cannot miss this one)."""
        self._checkpid()
        if not self._short_path_allowed():
            return super().release(connection)
        with self._lock:
            try:
                self._in_use_connections.remove(connection)
            except KeyError:
                return  # not borrowed from this pool (or the pool was reset since)
            if self.owns_connection(connection):
                if connection.should_reconnect():
                    connection.disconnect()
                self._available_connections.append(connection)
                return
            # From before a fork, or to a master the sentinels no longer name: as redis-py,
            # closed, and its slot given back.
            connection.disconnect()
            if connection.pid == self.pid:
                self._created_connections -= 1


class LeanConnectionPool(_LeanPoolMixin, redis.ConnectionPool):
    """A ``redis.ConnectionPool`` whose borrow and return skip the unused hooks."""


class LeanSentinelConnectionPool(_LeanPoolMixin, SentinelConnectionPool):
    """A ``SentinelConnectionPool`` (each connection asks for the master) likewise."""


def lean(client: redis.Redis) -> LeanRedis:
    """A ``LeanRedis`` on a ``LeanConnectionPool`` with ``client``'s settings, which redis-py
    has already read from the URL or the arguments; ``client`` has opened nothing."""
    pool = client.connection_pool
    lean_pool = LeanConnectionPool(
        connection_class=pool.connection_class,
        max_connections=pool.max_connections,
        **pool.connection_kwargs,
    )
    copy = LeanRedis(connection_pool=lean_pool)
    copy.auto_close_connection_pool = True  # the pool is the copy's own, as from_url's is
    return copy


class LeanRedis(redis.Redis):
    """A ``redis.Redis`` whose script calls skip the retry wrapper and the recorders."""

    def execute_command(self, *args: Any, **options: Any) -> Any:
        """Send one command and read its reply; a script call takes the short path."""
        pool = self.connection_pool
        if (
            options
            or args[0] not in SHORT_PATH_COMMANDS
            or self.connection is not None
            or not isinstance(pool, _LeanPoolMixin)
            or not pool._short_path_allowed()
        ):
            return super().execute_command(*args, **options)
        connection = pool.get_connection()
        try:
            if type(connection._command_packer) is HiredisRespSerializer:
                # Its pack, less the steps a script call never needs (the command name has
                # no space to split at, and the store sends str, bytes, int and float, no
                # bytearray or memoryview to convert): a genexpr and an isinstance call per
                # argument, about 22,000 instructions for twenty. Any other type is left to
                # redis-py's pack, which converts it or refuses it with its DataError.
                try:
                    packed = hiredis.pack_command(args)
                except TypeError:
                    connection.send_command(*args)
                else:
                    connection.send_packed_command([packed])  # buffers, as pack gives
            else:
                connection.send_command(*args)
            response = connection.read_response()
        except ResponseError:
            raise  # the server's answer to this call: the connection is in step
        except BaseException:
            # A connection error or timeout: what redis-py's retry does with no retries left.
            # Anything else cut the call short too (KeyboardInterrupt, a gevent Timeout), and
            # its reply may still arrive; a Sentinel connection does not drop itself then.
            connection.disconnect()
            raise
        finally:
            pool.release(connection)
        callback = self.response_callbacks.get(args[0])
        return response if callback is None else callback(response)
