"""A stand-in FHIR server on a real loopback socket that misbehaves on purpose.

Each path answers by a rule: a JSON document (optionally chunked, without a length),
a document sent a few bytes at a time with a pause between them (in the headers or in
the body), or raw bytes. Used where timing and memory matter, so a real socket is read.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Answer:
    """What one path answers: ``body`` (bytes) sent as told."""

    body: bytes
    chunked: bool = False  # Transfer-Encoding: chunked instead of Content-Length
    trickle_headers_s: float = 0.0  # pause between header bytes
    trickle_body_s: float = 0.0  # pause between body pieces
    piece: int = 1  # bytes per trickled piece
    status: int = 200


@dataclass
class StandIn:
    """Serves ``routes`` (path without the query -> Answer or a function of the full path)."""

    routes: dict[str, Answer | Callable[[str], Answer]] = field(default_factory=dict)
    seen: list[str] = field(default_factory=list)
    tls: ssl.SSLContext | None = None  # serve https with this context

    def __post_init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.settimeout(0.05)  # so the accept loop notices the stop
        scheme = "https" if self.tls else "http"
        self.base = f"{scheme}://127.0.0.1:{self._listener.getsockname()[1]}/fhir"
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> StandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        self._listener.close()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(30)
            if self.tls:
                conn = self.tls.wrap_socket(conn, server_side=True)
            head = b""
            while b"\r\n\r\n" not in head:
                data = conn.recv(65536)
                if not data:
                    return
                head += data
            target = head.split(b" ", 2)[1].decode()
            self.seen.append(target)
            rule = self.routes.get(urlsplit(target).path)
            if rule is None:
                answer = Answer(b'{"resourceType":"OperationOutcome"}', status=404)
            else:
                answer = rule(target) if callable(rule) else rule
            self._send(conn, answer)
        except OSError:
            return  # the client gave up: that is what the tests provoke
        finally:
            conn.close()

    def _send(self, conn: socket.socket, answer: Answer) -> None:
        framing = (b"Transfer-Encoding: chunked\r\n" if answer.chunked
                   else b"Content-Length: %d\r\n" % len(answer.body))
        head = (b"HTTP/1.1 %d X\r\nContent-Type: application/fhir+json\r\n" % answer.status
                + framing + b"Connection: close\r\n\r\n")
        body = answer.body
        if answer.chunked:
            body = b"".join(b"%x\r\n%s\r\n" % (len(part), part)
                            for part in _parts(body, 1 << 20)) + b"0\r\n\r\n"
        self._write(conn, head, answer.trickle_headers_s, answer.piece)
        self._write(conn, body, answer.trickle_body_s, answer.piece)

    def _write(self, conn: socket.socket, data: bytes, pause: float, piece: int) -> None:
        if not pause:
            conn.sendall(data)
            return
        for part in _parts(data, piece):
            if self._stopping.is_set():
                return
            conn.sendall(part)
            time.sleep(pause)


def _parts(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]
