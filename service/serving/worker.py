"""The gunicorn worker: waitress's buffering event loop in each worker process.

gunicorn stays the process manager (the app loaded once before the fork, one worker per
core, a dead worker replaced, signals); each worker serves HTTP with waitress instead of
gunicorn's sync loop. The sync worker gives itself to a connection from the first
byte, so two clients that send slowly, or announce more body than they send, stall the
service; here the worker's event loop reads every connection, and a request reaches
the app only once its headers and body have all arrived (:mod:`.channel`).

The app runs in the loop's own thread, between two turns of the loop
(:class:`InlineDispatcher`), one request at a time: no thread hand-off per request, peak
memory that of one request per worker, and, as with the sync worker, a worker busy
with the app accepts nothing, so the next caller goes to a free worker (each answer
closes its connection, as the sync worker's did). A connection that stalls costs a
file descriptor and a buffer, never the app's time. The price: while the app runs
(milliseconds; a CDS call's fetching at most ``IPEX_CDS_BUDGET_S``), this worker's
timers wait, so a stalled request's 408 can come that much later.

On SIGTERM a worker stops accepting and answers everything already accepted or waiting
in the listen backlog (see :meth:`BufferedWorker.drain`), then exits.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import time
from collections import deque
from typing import Any, ClassVar

from gunicorn.workers.base import Worker
from waitress import wasyncore
from waitress.adjustments import Adjustments

from .channel import Limits, Server

log = logging.getLogger("ipex_screen.server")

LOOP_TIMEOUT_S = 0.1  # longest the loop sleeps: SIGTERM and heartbeats are seen this fast
OVERFLOW_BYTES = 8 << 20  # bodies and answers up to 8 MiB stay in memory, larger go to TMPDIR


class InlineDispatcher:
    """waitress's task dispatcher without threads: whole requests wait here until the
    worker's loop runs them, between two turns of the event loop.

    The cyclic GC is paused while the app runs, and what the app asked to hold (the
    parsed body, :data:`RELEASE_AFTER_ANSWER`) is freed only after the next turn of the
    loop, which sends the answer (or before the next request, if one waits): freeing a
    parsed 4 MB record takes as long as screening it, and the caller need not wait for
    it. The GC stays paused until then, else its first pass would walk the whole held
    record (see ``paused_gc``). One answered request is held at most.
    """

    def __init__(self) -> None:
        self.pending: deque[Any] = deque()
        # waitress queues a connection (its channel), whose service() runs its request.
        self.current: Any = None  # the channel whose request the app is running now
        self.answered: Any = None  # the last one answered: one body held at most
        self._gc_was_enabled = False

    def add_task(self, task: Any) -> None:
        self.pending.append(task)

    def run_pending(self) -> None:
        while self.pending:
            self.release()
            task = self.pending.popleft()
            self._gc_was_enabled = gc.isenabled()
            gc.disable()
            self.current = task
            try:
                task.service()  # waitress's channel: answers, logs what the app raised
            except Exception:
                log.exception("the server failed to answer a request")
            finally:
                self.current = None
            self.answered = task

    def release(self) -> None:
        """Free the last answered request (its body) and let the GC run again."""
        if self.answered is not None:
            held = getattr(self.answered, "held", None)
            if held:
                held.clear()
            self.answered = None
        if self._gc_was_enabled:
            self._gc_was_enabled = False
            gc.enable()

    def shutdown(self, cancel_pending: bool = True, timeout: float = 5) -> bool:
        if cancel_pending:
            for task in self.pending:
                task.cancel()
            self.pending.clear()
        return True


class ListenerServer(Server):
    """One listening socket of a worker whose app runs in the loop
    (:class:`InlineDispatcher`)."""

    dispatcher: InlineDispatcher


class BufferedWorker(Worker):  # type: ignore[misc]
    """A gunicorn worker whose HTTP is waitress's (see the module's docstring)."""

    limits: ClassVar[Limits]
    dispatcher: InlineDispatcher | None = None

    def handle_abort(self, sig: int, frame: Any) -> None:
        """The master stops a worker whose request held it past ``IPEX_WORKER_TIMEOUT_S``
        (SIGABRT; the handler runs in the app's thread between two steps of the app):
        that caller gets a JSON 503 rather than a dropped connection, then the worker
        exits and the master starts another."""
        channel = self.dispatcher.current if self.dispatcher is not None else None
        if channel is not None:
            sent = channel.answer_instead(503, f"the request held a worker past the limit of "
                                            f"{self.cfg.timeout} s (IPEX_WORKER_TIMEOUT_S) "
                                            "and was stopped before it could answer")
            log.error("worker %s stopped after %s s on one request; its caller was %s",
                      self.pid, self.cfg.timeout, "answered 503" if sent else "gone")
        super().handle_abort(sig, frame)

    def run(self) -> None:
        raise_descriptor_limit()
        socket_map: dict[int, Any] = {}
        dispatcher = self.dispatcher = InlineDispatcher()
        adjustments = Adjustments(
            backlog=self.cfg.backlog,
            connection_limit=self.cfg.worker_connections,
            channel_timeout=self.limits.idle_s,
            cleanup_interval=1,
            max_request_body_size=self.limits.max_body_bytes + 1,  # waitress refuses >=
            max_request_header_size=self.limits.max_header_bytes,
            inbuf_overflow=OVERFLOW_BYTES,
            outbuf_overflow=OVERFLOW_BYTES,
            # The app writes its answer from the loop's thread: it must never wait for
            # the loop to send some of it first.
            outbuf_high_watermark=1 << 40,
            asyncore_use_poll=True,  # select() stops at 1024 descriptors
            recv_bytes=256 * 1024,  # a 4 MB body in 16 reads, not 500
            ident="",  # no Server header naming the software
            expose_tracebacks=False,
        )
        servers: list[ListenerServer] = []
        for listener in self.sockets:
            sock: socket.socket = listener.sock
            server = ListenerServer(self.wsgi, map=socket_map, _sock=sock, dispatcher=dispatcher,
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
                dispatcher.release()  # the last answer went out in that turn
                dispatcher.run_pending()
            self.drain(servers, socket_map, dispatcher)
        finally:
            for server in servers:
                server.close()
            dispatcher.shutdown(cancel_pending=True, timeout=2)
            dispatcher.release()

    def drain(self, servers: list[ListenerServer], socket_map: dict[int, Any],
              dispatcher: InlineDispatcher) -> None:
        """Answer every accepted or queued connection, accepting no new ones, then return.

        When the whole server stops, the master has cut the listen backlog to 0
        (``service.server._Arbiter``), so the kernel completes no new handshake while
        one waits; whatever already waits in the backlog is accepted and answered.
        Before leaving, the backlog is looked at again, for a connection that arrived
        while the last ones were answered. Bounded by gunicorn's graceful timeout (the
        master kills a worker still running after it).
        """
        ends = time.monotonic() + max(self.cfg.graceful_timeout - 1.0, 1.0)
        for server in servers:
            server.draining = True
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
            dispatcher.release()
            dispatcher.run_pending()
        log.warning("worker %s: graceful timeout reached with connections still open", self.pid)


def raise_descriptor_limit() -> None:
    """Let the worker hold as many connections as the system allows it (each stalled
    client holds one descriptor; a soft limit of 1024 would stop accepts before the
    1000-connection cap)."""
    import resource

    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass


def accept_queued(servers: list[ListenerServer]) -> int:
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


def worker_class(limits: Limits) -> type[BufferedWorker]:
    """The worker class gunicorn runs, carrying this service's limits into the fork."""
    return type("IpexWorker", (BufferedWorker,), {"limits": limits})
