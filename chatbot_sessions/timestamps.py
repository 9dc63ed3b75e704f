"""Timestamps as the service stores and shows them: epoch milliseconds and ISO 8601 UTC.

Shared by the store (which writes epoch ms), the admin tools and schemas (which read ISO
back) and the chat turn (which stamps messages), so none of them imports another for it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from functools import lru_cache

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def now_ms() -> int:
    """Wall-clock time in epoch milliseconds, the unit every stored timestamp uses."""
    return time.time_ns() // 1_000_000


@lru_cache(maxsize=4096)
def iso_second(seconds: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` of epoch ``seconds`` in UTC (recent ones remembered)."""
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")


#: ``.000Z`` to ``.999Z``: a lookup costs a seventh of formatting ``{millis:03d}``.
MILLIS_SUFFIX = tuple(f".{millis:03d}Z" for millis in range(1000))


def iso_from_ms(ms: int | str) -> str:
    """Render epoch milliseconds as ISO 8601 UTC with a ``Z``, as JavaScript's toISOString.

    This runs for every message of every history read. Whole seconds are cached (a page
    renders many stamps from the same minutes) and the milliseconds come from a table.
    """
    seconds, millis = divmod(int(ms), 1000)
    return iso_second(seconds) + MILLIS_SUFFIX[millis]


def ms_from_iso(text: str) -> int:
    """Parse an ISO 8601 timestamp (as ``iso_from_ms`` writes it) back to epoch ms, exactly."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    # Integer arithmetic: going through float seconds could be off by a millisecond.
    return (moment - _EPOCH) // timedelta(milliseconds=1)
