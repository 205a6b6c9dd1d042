"""Local port forwards over one SSH connection, as `ssh -L` makes them, that outlive the connection.

fabric's forward_local listens with a backlog of one and polls accept() every 10 ms, so a browser's six
parallel requests queue behind each other (measured 1.04 s against 0.02 s for one), and its listeners die
with the connection. Here each listener has the kernel's usual backlog and blocks in accept(); each accepted
connection gets its own direct-tcpip channel and a thread that pumps both ways. The listeners belong to the
Forwarder, not to the SSH connection: when the machine goes away (a stop, autostop, a reboot) new
connections are refused at once instead of hanging, and once remote.reopen has made a new connection they
are forwarded again on the same local ports.
"""
from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from typing import Callable, Optional

BACKLOG = 128
CHUNK = 65536
PROBE_EVERY_S = 5.0  # how often `alive` asks the machine, not only the transport's flag
PROBE_TIMEOUT_S = 5.0


class Forwarder:
    """Listeners on 127.0.0.1:local for each (local, remote) pair, forwarded to the machine's
    127.0.0.1:remote through transport() (the SSH connection's current paramiko Transport, or None)."""

    def __init__(self, pairs: list[tuple[int, int]], transport: Callable[[], Optional[object]]) -> None:
        self.pairs, self.transport = pairs, transport
        self._listeners: list[socket.socket] = []
        self._stop = threading.Event()
        self._probed_at, self._probed_ok = 0.0, False

    def start(self) -> None:
        for local, remote in self.pairs:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", local))
            except OSError:
                sock.close()
                self.close()
                raise
            sock.listen(BACKLOG)
            sock.settimeout(0.5)  # accept() wakes up to see close()
            self._listeners.append(sock)
            threading.Thread(target=self._accept, args=(sock, remote), daemon=True,
                             name=f"forward-{local}").start()

    def close(self) -> None:
        self._stop.set()
        for sock in self._listeners:
            with contextlib.suppress(OSError):
                sock.close()
        self._listeners = []

    def alive(self) -> bool:
        """Whether the machine answers: the transport's flag, and every PROBE_EVERY_S a session channel opened
        and closed (a machine that vanished without a TCP reset leaves the flag set for minutes)."""
        t = self._live_transport()
        if t is None:
            return False
        now = time.monotonic()
        if now - self._probed_at < PROBE_EVERY_S:
            return self._probed_ok
        try:
            t.open_session(timeout=PROBE_TIMEOUT_S).close()
            self._probed_ok = True
        except Exception:  # noqa: BLE001 - paramiko's SSHException, EOFError, socket errors: not answering
            self._probed_ok = False
            with contextlib.suppress(Exception):
                t.close()
        self._probed_at = time.monotonic()
        return self._probed_ok

    def forget_probe(self) -> None:
        """After a reconnect: the next `alive` asks again."""
        self._probed_at = 0.0

    def _live_transport(self):
        t = self.transport()
        return t if t is not None and t.is_active() else None

    def _accept(self, sock: socket.socket, remote: int) -> None:
        while not self._stop.is_set():
            try:
                client, peer = sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return  # closed
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as OpenSSH's forwards do
            threading.Thread(target=self._serve, args=(client, peer, remote), daemon=True).start()

    def _serve(self, client: socket.socket, peer: tuple, remote: int) -> None:
        t = self._live_transport()
        chan = None
        if t is not None:
            try:
                chan = t.open_channel("direct-tcpip", ("127.0.0.1", remote), peer, timeout=PROBE_TIMEOUT_S)
            except Exception:  # noqa: BLE001 - the machine went away meanwhile, or refused the port
                chan = None
        if chan is None:
            client.close()  # refused at once: a client sees a closed connection, never a hang
            return
        try:
            pump(client, chan, self._stop)
        finally:
            with contextlib.suppress(Exception):
                chan.close()
            client.close()


def pump(sock: socket.socket, chan, stop: threading.Event) -> None:
    """Copy both ways until either side closes (or stop is set)."""
    while not stop.is_set():
        ready, _, _ = select.select([sock, chan], [], [], 1.0)
        for src, dst in ((sock, chan), (chan, sock)):
            if src in ready:
                data = src.recv(CHUNK)
                if not data:
                    return
                dst.sendall(data)
