"""The tunnel's forwards (cli/playground/forwarder.py, remote.open_forwards) through a real SSH connection to
an SSH server in this process (paramiko's server side, direct-tcpip to a local HTTP server): parallel
requests are all in flight at once, a machine that went away is said and its connections refused at once,
and the same local port forwards again after a new connection."""
from __future__ import annotations

import socket
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import paramiko
import pytest
from playground import remote
from playground.commands import connect

PARALLEL = 6


class Web:
    """An HTTP server whose requests wait until `hold` of them are in flight together."""

    def __init__(self, hold: int) -> None:
        self.barrier = threading.Barrier(hold) if hold > 1 else None
        web = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if web.barrier is not None:
                    web.barrier.wait(timeout=10)  # BrokenBarrierError unless all are here at once
                body = b"ok"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Iface(paramiko.ServerInterface):
    """Password "pw"; sessions (the forwarder's probe) and direct-tcpip channels, whose destinations it keeps."""

    def __init__(self) -> None:
        self.dests: dict[int, tuple] = {}

    def get_allowed_auths(self, username):
        return "password"

    def check_auth_password(self, username, password):
        return paramiko.AUTH_SUCCESSFUL if password == "pw" else paramiko.AUTH_FAILED

    def check_channel_request(self, kind, chanid):
        return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_direct_tcpip_request(self, chanid, origin, destination):
        self.dests[chanid] = destination
        return paramiko.OPEN_SUCCEEDED


class SshServer:
    """Password login and direct-tcpip channels to 127.0.0.1, one thread per connection; `drop` closes every
    connection, as a machine that stops does."""

    KEY = paramiko.RSAKey.generate(2048)

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.transports: list[paramiko.Transport] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            t = paramiko.Transport(client)
            t.add_server_key(self.KEY)
            iface = Iface()
            t.start_server(server=iface)
            self.transports.append(t)
            threading.Thread(target=self._channels, args=(t, iface.dests), daemon=True).start()

    @staticmethod
    def _channels(t: paramiko.Transport, dests: dict) -> None:
        from playground.forwarder import pump

        while t.is_active():
            chan = t.accept(timeout=0.5)
            if chan is None or chan.get_id() not in dests:
                continue
            target = socket.create_connection(dests[chan.get_id()])
            threading.Thread(target=pump, args=(target, chan, threading.Event()), daemon=True).start()

    def drop(self) -> None:
        for t in self.transports:
            t.close()

    def close(self) -> None:
        self.drop()
        self.sock.close()


@pytest.fixture
def ssh():
    server = SshServer()
    yield server
    server.close()


def connection(server: SshServer):
    from fabric import Config, Connection

    return Connection("127.0.0.1", user="u", port=server.port, config=Config(overrides={"load_ssh_configs": False}),
                      connect_kwargs={"password": "pw", "look_for_keys": False, "allow_agent": False})


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=15) as resp:
        return resp.read().decode()


def test_parallel_requests_are_all_in_flight_at_once(ssh):
    """A browser's six parallel requests: each waits at the server until all six are there, so this passes
    only if the forward carries them together (fabric's backlog of one queued them)."""
    web = Web(PARALLEL)
    try:
        with remote.open_forwards(connection(ssh), [web.port]) as (fws, _):
            results: list[str] = []
            threads = [threading.Thread(target=lambda: results.append(get(fws[0].url))) for _ in range(PARALLEL)]
            for th in threads:
                th.start()
            for th in threads:
                th.join(20)
            assert results == ["ok"] * PARALLEL
    finally:
        web.close()


def test_a_machine_that_went_away_is_refused_at_once_then_forwarded_again(ssh, capsys):
    web = Web(1)
    conn = connection(ssh)
    try:
        with remote.open_forwards(conn, [web.port]) as (fws, forwarder):
            assert get(fws[0].url) == "ok" and forwarder.alive()
            ssh.drop()  # the machine stops
            forwarder.forget_probe()
            assert not forwarder.alive()
            with pytest.raises(OSError):  # refused (closed at once), not a hang until the client's timeout
                get(fws[0].url)

            stop = threading.Event()
            reopened: list[int] = []

            def reopen():
                reopened.append(1)
                if len(reopened) < 2:
                    raise paramiko.SSHException("not back yet")
                conn.close()
                conn.open()
                stop.set()  # one turn after it is back is enough for the check below

            connect.keep_forwarding(forwarder, reopen, stop, retry_s=0.1)
            said = capsys.readouterr().err
            assert "the machine went away" in said and "the machine is back: forwarding again" in said
            assert get(fws[0].url) == "ok", "the same local port forwards again"
    finally:
        web.close()


def test_a_destroyed_machine_ends_the_wait(ssh):
    """Away, and the provider no longer lists it: keep_forwarding says so (the tunnel exits with that line)."""
    web = Web(1)
    try:
        with remote.open_forwards(connection(ssh), [web.port]) as (_, forwarder):
            ssh.close()  # the machine and its SSH server are gone
            forwarder.forget_probe()

            def reopen():
                raise OSError("connection refused")

            assert connect.keep_forwarding(forwarder, reopen, threading.Event(), retry_s=0.1, gone=lambda: True)
    finally:
        web.close()
