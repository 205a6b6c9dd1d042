#!/usr/bin/python3
"""Stand-in for the Cloud SQL Auth Proxy, placed at /usr/local/bin/cloud-sql-proxy in one test instance only.

The real binary is left out of local tests: it asks Google's SQL Admin API for the instance's address and
certificates. This takes the same arguments the unit passes (--address, --port, PROJECT:REGION:INSTANCE),
listens where the proxy would, and relays each connection to the MariaDB that plays the Cloud SQL
instance (UPSTREAM_PORT, on the loopback of the instance's network namespace). Standard library only:
it runs on the image's python3 (3.9 on seed-local).
"""
import argparse
import re
import socket
import sys
import threading

UPSTREAM_PORT = 3306


def pipe(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    for sock in (src, dst):
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def relay(client):
    try:
        upstream = socket.create_connection(("127.0.0.1", UPSTREAM_PORT), timeout=5)
        upstream.settimeout(None)
    except OSError as exc:
        print("cloud-sql-proxy stand-in: upstream not answering: %s" % exc, flush=True)
        client.close()
        return
    back = threading.Thread(target=pipe, args=(upstream, client), daemon=True)
    back.start()
    pipe(client, upstream)
    back.join()
    client.close()
    upstream.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5432)
    parser.add_argument("instance")
    args = parser.parse_args()
    if not re.match(r"^[a-z0-9:.-]+:[a-z0-9-]+:[a-z0-9-]+$", args.instance):
        sys.exit("invalid instance connection name %r (want PROJECT:REGION:INSTANCE)" % args.instance)
    server = socket.create_server((args.address, args.port))
    print("cloud-sql-proxy stand-in: listening on %s:%d for %s" % (args.address, args.port, args.instance),
          flush=True)
    while True:
        client, _ = server.accept()
        threading.Thread(target=relay, args=(client,), daemon=True).start()


if __name__ == "__main__":
    main()
