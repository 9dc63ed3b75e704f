"""Send exact bytes to a server and read its answer: for requests no HTTP library would build."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass
from typing import Any

PIECE = 16 * 1024


@dataclass(frozen=True)
class RawResponse:
    """One HTTP/1.1 answer as it came off the socket; header names in lower case.

    ``ending`` says how a ``Connection: close`` answer ended: ``"eof"`` (a clean close),
    ``"reset"`` (the kernel's RST, which can destroy an answer still in flight), or
    ``"open"`` (a keep-alive answer; not waited for).
    """

    status: int
    headers: dict[str, str]
    body: bytes
    ending: str

    def json(self) -> Any:
        return json.loads(self.body)


def exchange(port: int, request: bytes, timeout: float = 10, *, pause: float = 0) -> RawResponse:
    """Write ``request`` to 127.0.0.1:``port`` and read one Content-Length framed answer.

    With ``pause``, the request goes in 16 KiB pieces that far apart, as an upload over a real
    network does (on loopback a whole body otherwise lands in the server's buffer at once).
    A failure to send raises: the server cut the upload off.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        if pause:
            for start in range(0, len(request), PIECE):
                sock.sendall(request[start : start + PIECE])
                time.sleep(pause)
        else:
            sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed before a full head: {data[:200]!r}")
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        ending = "open"
        if headers.get("connection", "").lower() == "close":
            try:
                ending = "eof" if sock.recv(1) == b"" else "more data"
            except ConnectionResetError:
                ending = "reset"
    return RawResponse(int(status_line.split()[1]), headers, body[:length], ending)
