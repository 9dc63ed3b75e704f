"""Conversation memory on Redis: the session domain in one package.

- ``ids``: session ids, and the one gate client input passes through on its way to a key;
- ``keys``: the Redis key layout, its inverse, and the TTL rule;
- ``codec``: how messages and replies become Redis values and back;
- ``scripts``: every Lua script, each with its KEYS/ARGV contract;
- ``store``: the repository a request uses (one script per access, exactly-once writes);
- ``idempotency``: storing a chat turn exactly once, with or without an Idempotency-Key;
- ``admin``: operator scans, statistics, export/import and TTLs over the same keys.

Nothing here knows HTTP; ``domain`` (below) holds the values it shares with the rest.
"""
