"""Run the same function in several threads at once, for the thread-safety tests."""

from __future__ import annotations

import threading
from collections.abc import Callable


def run_in_threads(
    target: Callable[..., object],
    count: int,
    *,
    indexed: bool = False,
    timeout: float | None = None,
) -> None:
    """Start ``count`` threads on ``target`` (given its thread index when ``indexed``), join all."""
    threads = [threading.Thread(target=target, args=(i,) if indexed else ()) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
