"""A loopback TCP proxy the tests can break: to play a database that is down or hung.

    proxy = Proxy(target_port); url points at proxy.port
    proxy.down()   listener closed, open connections cut: "connection refused"
    proxy.stall()  connections stay open but nothing is forwarded: a hung server
    proxy.up()     back to forwarding (the same port)
"""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

HOST = "127.0.0.1"


class Proxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._mode = "up"
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._closing = False
        self._listener = self._listen(0)
        self.port: int = self._listener.getsockname()[1]
        self._start_accepting()

    def _listen(self, port: int) -> socket.socket:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((HOST, port))
        listener.listen(64)
        return listener

    def _start_accepting(self) -> None:
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was closed
            # Decided under the lock that down() and up() take: a connection accepted as
            # the mode changes is either cut with the rest or follows the new mode.
            with self._lock:
                if self._mode == "stall":
                    self._sockets.add(client)
                    continue
                if self._mode != "up":
                    client.close()
                    continue
            try:
                upstream = socket.create_connection((HOST, self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._mode != "up":
                    client.close()
                    upstream.close()
                    continue
                self._sockets.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        try:
            while not self._closing:
                if self._mode == "stall":
                    select.select([], [], [], 0.05)
                    continue
                readable, _, _ = select.select([a, b], [], [], 0.05)
                for source in readable:
                    data = source.recv(65536)
                    if not data:
                        return
                    peers[source].sendall(data)
        except (OSError, ValueError):
            return
        finally:
            for end in (a, b):
                try:
                    end.close()
                except OSError:
                    pass

    def _cut_all(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _stop_listening(self) -> None:
        # shutdown() wakes the thread blocked in accept(); close() alone would leave the
        # kernel socket listening until that accept() returns.
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()

    def _set_mode(self, mode: str) -> None:
        with self._lock:
            self._mode = mode

    def down(self) -> None:
        self._set_mode("down")
        self._stop_listening()
        self._cut_all()

    def stall(self) -> None:
        self._set_mode("stall")

    def up(self) -> None:
        if self._mode == "down":
            self._listener = self._listen(self.port)
            self._set_mode("up")
            self._start_accepting()
        else:
            self._cut_all()  # stalled connections are dead to their clients by now
            self._set_mode("up")

    def close(self) -> None:
        self._closing = True
        self._stop_listening()
        self._cut_all()


@contextmanager
def proxy_to(port: int) -> Iterator[Proxy]:
    proxy = Proxy(port)
    try:
        yield proxy
    finally:
        proxy.close()
