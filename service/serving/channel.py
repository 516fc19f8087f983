"""waitress, tuned: whole requests buffered off the app's thread, a deadline, JSON refusals.

waitress reads every connection in one event loop and hands a request to the app's
thread only once its headers and body have all arrived, so a client that sends slowly,
or announces more body than it sends, holds no thread. What is added here:

- a deadline per request: once its first byte is in, a request has
  ``IPEX_REQUEST_TIMEOUT_S`` to arrive whole, or it gets a JSON 408 and the connection
  is closed (waitress itself only closes connections idle for a while, and a byte now
  and then keeps one from being idle);
- a request line over 8190 bytes is a 414, as gunicorn had it;
- the server's own refusals (400, 408, 413, 414, 431, 500, 501) are JSON
  (:mod:`.answers`) instead of waitress's text;
- every answer closes its connection (as gunicorn's sync worker did), so the next
  request goes to whichever worker is free (see :mod:`.worker`); the close is a
  lingering one (our side shut, what the client still sends read and dropped for up
  to 2 s), so a client still sending the body of a refused request reads the refusal
  instead of a reset.
"""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass
from typing import Any

from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask, WSGITask
from waitress.utilities import Error

from ..edge.fhir_json import RELEASE_AFTER_ANSWER
from .answers import server_answer

log = logging.getLogger("ipex_screen.server")

MAX_REQUEST_LINE = 8190  # bytes, as gunicorn's limit_request_line had it
LINGER_S = 2.0  # after our last byte, how long what the client still sends is read


@dataclass(frozen=True, slots=True)
class Limits:
    """What the server enforces before the app sees a request."""

    request_timeout_s: float
    max_body_bytes: int
    max_header_bytes: int
    idle_s: float


class RequestTimeout(Error):  # type: ignore[misc]
    code = 408
    reason = "Request Timeout"


class UriTooLong(Error):  # type: ignore[misc]
    code = 414
    reason = "URI Too Long"


def _refusal_text(error: Any, limits: Limits) -> str:
    code = int(error.code)
    if code == 408:
        return (f"the request did not arrive whole within {limits.request_timeout_s:g} s "
                "(IPEX_REQUEST_TIMEOUT_S)")
    if code == 413:
        return (f"the body is larger than the limit of {limits.max_body_bytes} bytes "
                "(IPEX_MAX_BODY_MB)")
    if code == 414:
        return f"the request line is longer than {MAX_REQUEST_LINE} bytes"
    if code == 431:
        return f"the request headers are larger than {limits.max_header_bytes} bytes"
    if code == 501:
        return "only the chunked Transfer-Encoding is supported"
    if code == 400:
        # waitress's reason, cut before any quoted piece of the request itself.
        detail = str(getattr(error, "body", "") or "").split('"', 1)[0].strip()
        return "the request is not valid HTTP/1.1" + (f": {detail}" if detail else "")
    return "the server failed to process this request; it has been logged"


class Parser(HTTPRequestParser):  # type: ignore[misc]
    """waitress's parser, with gunicorn's cap on the request line."""

    def parse_header(self, header_plus: bytes) -> None:
        line_end = header_plus.find(b"\r\n")
        if line_end > MAX_REQUEST_LINE or (line_end < 0 and len(header_plus) > MAX_REQUEST_LINE):
            super().parse_header(b"GET / HTTP/1.0\r\n")
            self.error = UriTooLong("request line too long")
            return
        super().parse_header(header_plus)


class JsonErrorTask(ErrorTask):  # type: ignore[misc]
    """The server's own refusal, as JSON; the connection closes after it."""

    def execute(self) -> None:
        error = self.request.error
        limits: Limits = self.channel.server.limits
        path = None if int(error.code) == 414 else self._path()
        status, headers, body = server_answer(int(error.code), _refusal_text(error, limits),
                                              path=path)
        if int(error.code) >= 500:
            log.error("the server answered %s", status)
        else:
            log.info("the server refused a request: %s", status)
        self.status = status
        self.response_headers.extend(headers)
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)

    def _path(self) -> str | None:
        # For an app that raised, waitress answers through a fresh request object that
        # has no path: the request being served (still first in line) has it.
        for request in (self.request, *self.channel.requests[:1]):
            path = getattr(request, "path", None)
            if path:
                return str(path)
        return None


class Body:
    """The buffered request body, read without ``readinto``.

    werkzeug reads ``wsgi.input`` through a ``LimitedStream`` capped at
    ``MAX_CONTENT_LENGTH``; given a stream with ``readinto`` (waitress's BytesIO or
    file), ``read(limit + 1)`` zero-fills a buffer of the whole limit (64 MB) twice on
    every request (34 ms of CPU and 64 MB of memory for an 80 KB CDS call, measured).
    Without ``readinto`` it calls ``read(n)``, which returns only what there is, as
    gunicorn's own body object does.
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def read(self, size: int | None = -1) -> bytes:
        data: bytes = self._stream.read(-1 if size is None else size)
        return data

    def readline(self, size: int | None = -1) -> bytes:
        line: bytes = self._stream.readline(-1 if size is None else size)
        return line

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines: list[bytes] = self._stream.readlines(-1 if hint is None else hint)
        return lines

    def __iter__(self) -> Any:
        return iter(self._stream)


class AppTask(WSGITask):  # type: ignore[misc]
    """A request for the app; its answer closes the connection. What the app puts in
    the environ's :data:`RELEASE_AFTER_ANSWER` list (the parsed body) is its channel's
    ``held``: it outlives the task until the worker releases the channel."""

    def get_environment(self) -> dict[str, Any]:
        environ: dict[str, Any] = super().get_environment()
        environ["wsgi.input"] = Body(environ["wsgi.input"])
        environ[RELEASE_AFTER_ANSWER] = self.channel.held = []
        return environ

    def execute(self) -> None:
        self.set_close_on_finish()
        super().execute()


class Channel(HTTPChannel):  # type: ignore[misc]
    """One client connection, with the time its unfinished request started."""

    held: list[Any]  # set by AppTask: the app's parsed body, released by the worker

    task_class = AppTask
    error_task_class = JsonErrorTask
    parser_class = Parser
    request: Any  # waitress's: the request being received, or None
    request_started: float | None = None  # monotonic time of a pending request's first byte
    linger_until: float | None = None  # set once our side of the connection is shut

    def answer_instead(self, status: int, text: str) -> bool:
        """Send the server's own JSON answer straight to the socket, in place of the
        app's answer to the request it is running (which has sent nothing yet: the app
        runs inline and the loop sends), and shut the connection. For a worker being
        stopped while the app holds this request. False if the connection could not
        take it."""
        path = getattr(self.requests[0], "path", None) if self.requests else None
        line, headers, body = server_answer(status, text, path=path)
        head = "".join(f"{name}: {value}\r\n" for name, value in
                       [*headers, ("Connection", "close")])
        raw = f"HTTP/1.1 {line}\r\n{head}\r\n".encode("latin-1") + body
        sock = self.socket
        try:
            sock.settimeout(1.0)
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            return False
        return True

    def handle_close(self) -> None:
        """Shut our side and linger (see the module's docstring); close for real after."""
        if self.linger_until is None and self.socket is not None and self.connected:
            try:
                self.socket.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            else:
                self.linger_until = time.monotonic() + LINGER_S
                self.will_close = self.close_when_flushed = False
                return
        super().handle_close()

    def readable(self) -> bool:
        return True if self.linger_until is not None else bool(super().readable())

    def writable(self) -> bool:
        return False if self.linger_until is not None else bool(super().writable())

    def handle_read(self) -> None:
        if self.linger_until is None:
            super().handle_read()
            return
        try:
            data = self.socket.recv(65536)
        except OSError:
            data = b""
        if not data or time.monotonic() > self.linger_until:
            super().handle_close()

    def lingered_enough(self) -> bool:
        return self.linger_until is not None and time.monotonic() > self.linger_until

    def received(self, data: bytes) -> bool:
        pending: Any = self.request
        result: bool = super().received(data)
        if self.request is None:
            self.request_started = None
        elif self.request is not pending or self.request_started is None:
            self.request_started = time.monotonic()
        return result

    def time_out(self) -> None:
        """Answer the unfinished request with a 408 and close (from the event loop)."""
        with self.requests_lock:
            request: Any = self.request
            if request is None or self.requests or self.will_close:
                return
            request.error = RequestTimeout("request timeout")
            request.completed = True
            self.request = None
            self.request_started = None
            self.requests.append(request)
        self.server.add_task(self)


class Server(TcpWSGIServer):  # type: ignore[misc]
    """One listening socket's event loop side: accepts, buffers, times out, drains."""

    channel_class = Channel
    draining = False
    limits: Limits

    def maintenance(self, now: float) -> None:
        """Every second: 408 for requests past their deadline, close idle connections."""
        started_before = time.monotonic() - self.limits.request_timeout_s
        # While draining, a kept-alive connection gets 1 s for a request its client may
        # already be sending; then it is closed.
        idle_before = now - (min(1.0, self.limits.idle_s) if self.draining
                             else self.limits.idle_s)
        for channel in list(self.active_channels.values()):
            if channel.linger_until is not None:
                if channel.lingered_enough():
                    HTTPChannel.handle_close(channel)
                continue
            if channel.requests:
                continue  # the app is answering it
            if channel.request_started is not None:
                if channel.request_started < started_before:
                    channel.time_out()
            elif channel.last_activity < idle_before:
                channel.will_close = True
