"""A ``requests.Session`` whose every socket read ends by one deadline.

``requests`` (urllib3) bounds each socket read by the read timeout, and the timeout
restarts with every read that returns: a server that sends a byte a second, in its
headers or its body, keeps a call going as long as it likes. Here every connection the
session opens wraps its socket so that each read waits at most
``min(read timeout, time left)``, and a read after the deadline fails at once. The
deadline is a callable giving the seconds left (one CDS call's budget).

No library offers a total deadline for a blocking ``requests`` call: urllib3's
``Timeout(total=...)`` is applied once, as each read's timeout, and ``httpx`` likewise
times each phase. The hook used is urllib3's documented one for custom connections
(``ConnectionCls`` of a connection pool, set through ``pool_classes_by_scheme``), on
the session's own adapter, so ``responses`` (which mocks ``HTTPAdapter.send``) and
operators' proxy settings keep working.
"""

from __future__ import annotations

import io
import socket
from collections.abc import Callable
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.poolmanager import PoolManager

Remaining = Callable[[], float]


class DeadlineSocket:
    """A connected socket (plain or TLS) whose reads end by the deadline."""

    def __init__(self, sock: socket.socket, remaining: Remaining, read_timeout: float) -> None:
        self._sock = sock
        self._remaining = remaining
        self._read_timeout = read_timeout

    def _arm(self) -> None:
        left = self._remaining()
        if left <= 0:
            raise TimeoutError("the call's deadline has passed")
        self._sock.settimeout(min(self._read_timeout, left))

    def recv(self, size: int, flags: int = 0) -> bytes:
        self._arm()
        return self._sock.recv(size, flags)

    def recv_into(self, buffer: Any, size: int = 0, flags: int = 0) -> int:
        self._arm()
        return self._sock.recv_into(buffer, size, flags)

    def makefile(self, mode: str = "r", buffering: int | None = None, **kwargs: Any) -> Any:
        """The binary reader ``http.client`` reads the status line, headers and body from."""
        if mode != "rb" or not hasattr(self._sock, "_io_refs"):
            # Not what http.client asks for, or not a socket.socket (urllib3's
            # TLS-in-TLS transport): reads keep their per-read timeout only.
            return self._sock.makefile(mode, buffering, **kwargs)  # type: ignore[call-overload]
        # As socket.makefile does, but reading through this object's recv_into.
        self._sock._io_refs += 1
        raw = socket.SocketIO(self, "rb")  # type: ignore[arg-type]
        size = buffering if buffering and buffering > 0 else io.DEFAULT_BUFFER_SIZE
        return io.BufferedReader(raw, size)

    def _decref_socketios(self) -> None:
        self._sock._decref_socketios()  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _connection_classes(remaining: Remaining, read_timeout: float
                        ) -> dict[str, type[HTTPConnectionPool]]:
    def wrap(connection: Any) -> None:
        if connection.sock is not None and not isinstance(connection.sock, DeadlineSocket):
            connection.sock = DeadlineSocket(connection.sock, remaining, read_timeout)

    class Plain(HTTPConnection):
        def connect(self) -> None:
            super().connect()
            wrap(self)

    class Tls(HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            wrap(self)

    class PlainPool(HTTPConnectionPool):
        ConnectionCls = Plain

    class TlsPool(HTTPSConnectionPool):
        ConnectionCls = Tls

    return {"http": PlainPool, "https": TlsPool}


class DeadlineAdapter(HTTPAdapter):
    """``HTTPAdapter`` whose connections (direct or through a proxy) obey the deadline."""

    def __init__(self, remaining: Remaining, read_timeout: float) -> None:
        self._pools = _connection_classes(remaining, read_timeout)
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(self._pools)

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> PoolManager:
        manager: PoolManager = super().proxy_manager_for(proxy, **kwargs)
        manager.pool_classes_by_scheme = dict(self._pools)
        return manager


def deadline_session(remaining: Remaining, *, read_timeout: float) -> requests.Session:
    """A session whose reads each wait at most ``read_timeout`` and end by the deadline."""
    session = requests.Session()
    adapter = DeadlineAdapter(remaining, read_timeout)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
