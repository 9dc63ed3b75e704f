"""Files the hybrid retriever caches between starts: where they live, how they are written."""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, TypeVar

T = TypeVar("T")


def default_cache_dir() -> str:
    """``$XDG_CACHE_HOME/chatbot-sessions``, else ``~/.cache/chatbot-sessions``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "chatbot-sessions")


def write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Create ``path`` with what ``write(file)`` writes, all at once; raises ``OSError``.

    The temporary file is in the target's folder, so ``os.replace`` is an atomic rename:
    workers starting together either see no file or a whole one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


@contextmanager
def build_lock(path: Path | None) -> Iterator[None]:
    """Held while the file at ``path`` is built, so processes starting together (gunicorn's
    workers) build it once: the first builds, the others wait here, then find it made.

    Building the model peaks at about 650 MB and embedding a corpus takes seconds of CPU:
    done by every worker at once, they multiply. The lock is advisory (``flock`` on a file
    beside ``path``) and goes with its process, so a killed builder never leaves it held;
    where no lock file can be made (a read-only folder), the build runs without one.
    """
    if path is None:
        yield
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path.with_name(path.name + ".lock"), "a")  # noqa: SIM115 (held below)
    except OSError:
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file is closed
        yield


def read_or_build(
    path: Path | None, read: Callable[[Path], T | None], build: Callable[[], T]
) -> tuple[T, bool]:
    """What ``read(path)`` finds there, else what ``build()`` makes (saving it is ``build``'s
    job), and whether it was read. The build runs under ``build_lock``, after one more
    read: another worker may have built the file while this one waited. Without a path,
    nothing is read and nothing locked."""
    if path is not None:
        found = read(path)
        if found is not None:
            return found, True
    with build_lock(path):
        if path is not None:
            found = read(path)  # made meanwhile?
            if found is not None:
                return found, True
        return build(), False
