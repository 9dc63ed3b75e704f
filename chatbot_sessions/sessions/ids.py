"""Session ids: unguessable UUID v4 strings, and the one gate client input passes through.

Only ids in canonical form ever become part of a Redis key, so no client string can smuggle
a glob, a hash tag or another session's key into a command.
"""

from __future__ import annotations

import re
import uuid

_CANONICAL_V4 = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", re.IGNORECASE
)


def new_session_id() -> str:
    """Return a fresh id: 122 random bits from the OS CSPRNG (``uuid4`` uses ``os.urandom``)."""
    return str(uuid.uuid4())


def parse_session_id(raw: str | None) -> str | None:
    """Return ``raw`` as a canonical lower-case UUID v4 string, or None if it is not one."""
    if raw is None or not _CANONICAL_V4.fullmatch(raw):
        return None
    return raw.lower()


_REPLY_ID = re.compile(r"[0-9a-f]{32}")


def new_reply_id() -> str:
    """A fresh id for a streamed reply: 128 random bits, hex (it names a key of the session)."""
    return uuid.uuid4().hex


def parse_reply_id(raw: str | None) -> str | None:
    """Return ``raw`` if it is a reply id of ours (32 lower-case hex digits), else None."""
    if raw is None or not _REPLY_ID.fullmatch(raw):
        return None
    return raw
