"""Files the hybrid retriever caches between starts: where they live, how they are written."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


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
