"""Session ids: unguessable UUID v4 strings, and the one gate client input passes through.

Only ids in canonical form ever become part of a Redis key, so no client string can smuggle
a glob, a hash tag or another session's key into a command.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache

_CANONICAL_V4 = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", re.IGNORECASE
)


def new_session_id() -> str:
    """Return a fresh id: 122 random bits from the OS CSPRNG, as ``str(uuid.uuid4())``.

    The same bytes and bits ``uuid4`` takes (16 from ``os.urandom``, then the version and
    variant set), written out directly: building a ``UUID`` object to print it cost 21,000
    instructions, a fortieth of a create.
    """
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # variant RFC 4122
    digits = raw.hex()
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def parse_session_id(raw: str | None) -> str | None:
    """Return ``raw`` as a canonical lower-case UUID v4 string, or None if it is not one."""
    if raw is None or len(raw) != 36:  # the one length a UUID's text has
        return None
    return _parse_uuid_text(raw)


@lru_cache(maxsize=4096)
def _parse_uuid_text(raw: str) -> str | None:
    # Remembered for recent ids (36 characters each, so the memory stays small): a
    # send-message checks its session id five times on the way, the pattern match
    # costing about 6,000 instructions each time.
    return raw.lower() if _CANONICAL_V4.fullmatch(raw) else None


_REPLY_ID = re.compile(r"[0-9a-f]{32}")


#: A message id in a path: a plain decimal number (no sign, no leading zero, no spaces),
#: short enough to be exact in Lua's numbers (doubles).
_MESSAGE_ID = re.compile(r"0|[1-9][0-9]{0,14}")


def parse_message_id(raw: str | int | None) -> int | None:
    """Return ``raw`` as a message id (an absolute position, 0 or more), or None if it is not
    one: a malformed message id names no message and never reaches Redis."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw if 0 <= raw < 10**15 else None
    if not isinstance(raw, str) or not _MESSAGE_ID.fullmatch(raw):
        return None
    return int(raw)


def new_reply_id() -> str:
    """A fresh id for a streamed reply: 128 random bits, hex (it names a key of the session)."""
    return os.urandom(16).hex()


def parse_reply_id(raw: str | None) -> str | None:
    """Return ``raw`` if it is a reply id of ours (32 lower-case hex digits), else None."""
    if raw is None or not _REPLY_ID.fullmatch(raw):
        return None
    return raw
