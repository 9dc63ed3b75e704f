"""Small loopback HTTP servers for browser tests: a WSGI app in a thread, a static site.

Both bind 127.0.0.1 on a port the OS picks and serve from a daemon thread (polling every
50 ms, so stopping is quick), so a test can run the app in-process (with an injected reply
generator) or serve an embedding page from a second origin, and stop either in a ``with``.
"""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from werkzeug.serving import make_server


@contextmanager
def _serving(server) -> Iterator[str]:
    """Run a socketserver-style ``server`` in a thread; yield its base URL; stop it."""
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@contextmanager
def serve_wsgi(app) -> Iterator[str]:
    """Serve ``app`` with werkzeug's threaded server; yields its base URL."""
    with _serving(make_server("127.0.0.1", 0, app, threaded=True)) as base_url:
        yield base_url


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:
        pass


@contextmanager
def serve_static(root: Path, files: Mapping[str, str]) -> Iterator[str]:
    """Write ``files`` (name -> text) under ``root`` and serve them; yields the base URL."""
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(text, encoding="utf-8")
    handler = functools.partial(_QuietHandler, directory=str(root))
    with _serving(http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)) as base_url:
        yield base_url
