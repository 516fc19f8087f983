"""The gunicorn worker: waitress's buffering event loop in each worker process.

gunicorn stays the process manager (the app loaded once before the fork, one worker per
core, a dead worker replaced, signals); each worker serves HTTP with waitress instead of
gunicorn's sync loop. The sync worker gives its one thread to a connection from the
first byte, so two clients that send slowly, or announce more body than they send,
stall the service; here the worker's event loop reads every connection and the app's
one thread (:attr:`BufferedWorker.threads`) only ever sees whole requests
(:mod:`.channel`). Peak memory stays that of one request per worker, as with sync.

Like the sync worker, a worker accepts a connection only while its app thread is free,
and closes each connection after its answer, so connections spread over the workers
the way they did (a worker busy with a large bundle does not pile up callers that
the other could serve). A connection that stalls never holds the app thread.

On SIGTERM a worker stops accepting and answers everything already accepted or waiting
in the listen backlog (see :meth:`BufferedWorker.drain`), then exits.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any, ClassVar

from gunicorn.workers.base import Worker
from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.task import ThreadedTaskDispatcher

from .channel import Limits, Server

log = logging.getLogger("ipex_screen.server")

LOOP_TIMEOUT_S = 0.25  # longest the loop sleeps: SIGTERM and heartbeats are seen this fast
OVERFLOW_BYTES = 8 << 20  # bodies and answers up to 8 MiB stay in memory, larger go to TMPDIR


class GatedServer(Server):
    """A listener that accepts only while the worker's app thread is free."""

    dispatcher: ThreadedTaskDispatcher

    def readable(self) -> bool:
        readable: bool = super().readable()  # also runs the maintenance
        if readable and (self.dispatcher.active_count or self.dispatcher.queue):
            return False  # the app thread is busy: leave the connection to an idle worker
        return readable


class BufferedWorker(Worker):  # type: ignore[misc]
    """A gunicorn worker whose HTTP is waitress's (see the module's docstring)."""

    limits: ClassVar[Limits]
    threads: ClassVar[int] = 1

    def run(self) -> None:
        socket_map: dict[int, Any] = {}
        dispatcher = ThreadedTaskDispatcher()
        dispatcher.set_thread_count(self.threads)
        adjustments = Adjustments(
            threads=self.threads,
            backlog=self.cfg.backlog,
            connection_limit=self.cfg.worker_connections,
            channel_timeout=self.limits.idle_s,
            cleanup_interval=1,
            max_request_body_size=self.limits.max_body_bytes + 1,  # waitress refuses >=
            max_request_header_size=self.limits.max_header_bytes,
            inbuf_overflow=OVERFLOW_BYTES,
            outbuf_overflow=OVERFLOW_BYTES,
            asyncore_use_poll=True,  # select() stops at 1024 descriptors
            recv_bytes=256 * 1024,  # a 4 MB body in 16 reads, not 500
            ident="",  # no Server header naming the software
            expose_tracebacks=False,
        )
        servers: list[GatedServer] = []
        for listener in self.sockets:
            sock: socket.socket = listener.sock
            server = GatedServer(self.wsgi, map=socket_map, _sock=sock, dispatcher=dispatcher,
                                 adj=adjustments, bind_socket=False,
                                 sockinfo=(sock.family, sock.type, sock.proto,
                                           sock.getsockname()))
            server.limits = self.limits
            server.dispatcher = dispatcher
            servers.append(server)
        try:
            while self.alive:
                self.notify()
                if self.ppid != os.getppid():
                    log.info("the gunicorn master is gone: worker %s stops", self.pid)
                    break
                wasyncore.loop(timeout=LOOP_TIMEOUT_S, map=socket_map, use_poll=True, count=1)
            self.drain(servers, socket_map)
        finally:
            for server in servers:
                server.close()
            dispatcher.shutdown(cancel_pending=True, timeout=2)

    def drain(self, servers: list[GatedServer], socket_map: dict[int, Any]) -> None:
        """Answer every accepted or queued connection, accepting no new ones, then return.

        The listen backlog is cut to 0, so the kernel completes no new handshake while
        one is waiting (a new client's SYN is dropped and retried, and is refused once
        the socket closes); whatever already waits in the backlog is accepted and
        answered. Before leaving, the backlog is looked at again, for a connection
        that arrived while the last ones were answered. Bounded by gunicorn's
        graceful timeout (the master kills a worker still running after it).
        """
        ends = time.monotonic() + max(self.cfg.graceful_timeout - 1.0, 1.0)
        for server in servers:
            server.draining = True
            try:
                server.socket.listen(0)
            except OSError:
                pass
        queued = accept_queued(servers)
        for server in servers:
            server.accepting = False
        log.info("worker %s draining: %d queued connection(s) accepted", self.pid, queued)
        last_looks = 0
        while time.monotonic() < ends:
            self.notify()
            now = time.time()
            for server in servers:
                server.maintenance(now)
            if not any(server.active_channels for server in servers):
                if last_looks >= 3 or not accept_queued(servers):
                    return
                last_looks += 1
            wasyncore.loop(timeout=0.05, map=socket_map, use_poll=True, count=1)
        log.warning("worker %s: graceful timeout reached with connections still open", self.pid)


def accept_queued(servers: list[GatedServer]) -> int:
    """Accept every connection waiting in the listen backlogs; how many there were."""
    taken = 0
    for server in servers:
        while True:
            try:
                conn, addr = server.socket.accept()
            except (BlockingIOError, InterruptedError):
                break
            except ConnectionAbortedError:
                continue
            except OSError:
                break
            server.set_socket_options(conn)
            server.channel_class(server, conn, server.fix_addr(addr), server.adj,
                                 map=server._map)
            taken += 1
    return taken


def worker_class(limits: Limits, *, threads: int = 1) -> type[BufferedWorker]:
    """The worker class gunicorn runs, carrying this service's limits into the fork."""
    return type("IpexWorker", (BufferedWorker,), {"limits": limits, "threads": threads})
