"""The ways onto a machine: `tunnel` to its web UIs, `ssh` to its shell."""
from __future__ import annotations

import contextlib
from typing import Optional

import typer

from ..errors import PlaygroundError
from ..ui import console
from .common import REACH_PROVIDER, SOME_NAME, SOME_PROJECT, ZONE, one_line, provider_for


def tunnel(
    name: Optional[str] = SOME_NAME,
    project: Optional[str] = SOME_PROJECT,
    port: list[int] = typer.Option([], "--port", help="Remote port on the machine's 127.0.0.1 to forward; repeat. "
                                   "Default: Airflow's and MLflow's."),
    as_json: bool = typer.Option(False, "--json", help="Print the forwards as one JSON line for scripts."),
    provider: Optional[str] = REACH_PROVIDER,
    zone: Optional[str] = ZONE,
) -> None:
    """Forward the web UIs (bound to the machine's 127.0.0.1) to this machine until Ctrl-C.

    A local port already in use is replaced by the next free one, and said so. Left open across a stop and
    start (the nightly stop, autostop) or a reboot, it says the machine went away, refuses connections
    meanwhile, and forwards again on the same ports once the machine is back.
    """
    import json
    import signal
    import threading

    from .. import remote

    with one_line():
        chosen = provider_for(provider, project, zone)
        machine = chosen.reach(name, project)
        labels = {v: k for k, v in machine.web.items()}
        wanted = port or list(machine.web.values())
        target = machine.target
        conn = remote.connect(target, timeout=20 if target.proxy_command else 5)
        stop_event = threading.Event()
        # Both set explicitly: a tunnel started from a script's background job inherits SIGINT ignored,
        # and Ctrl-C (or kill -INT) must still close it.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop_event.set())
        with remote.one_line_errors(target), remote.open_forwards(conn, wanted) as (fws, forwarder):
            for fw in fws:
                if fw.local_port != fw.remote_port:
                    console.print(f"local port {fw.remote_port} is in use: using {fw.local_port}",
                                  highlight=False)
            if as_json:
                print(json.dumps({"instance": target.name, "admin_user": machine.admin, "forwards": [
                    {"service": labels.get(f.remote_port, "port"), "remote_port": f.remote_port,
                     "local_port": f.local_port, "url": f.url} for f in fws]}), flush=True)
            else:
                for fw in fws:
                    console.print(f"{labels.get(fw.remote_port, 'port').ljust(8)} {fw.url}  "
                                  f"(machine's 127.0.0.1:{fw.remote_port})", highlight=False)
                console.print(f"Airflow admin user: {machine.admin}  (password: {machine.ssh_command} -- sudo "
                              "playground-agent admin-password)", highlight=False)
                console.print("forwarding; Ctrl-C to close", highlight=False)
            gone = keep_forwarding(forwarder, lambda: remote.reopen(conn, target), stop_event,
                                   gone=lambda: target.name not in [r["name"] for r in chosen.list()])
            if gone:
                raise PlaygroundError(f"{target.name} no longer exists (destroyed): tunnel closed")
    console.print("tunnel closed", highlight=False)


def keep_forwarding(forwarder, reopen, stop_event, retry_s: float = 5.0, gone=lambda: False) -> bool:
    """Until stop_event: watch the machine; when it goes away, say so once, try a new connection every
    retry_s, and say when it is back (the forwarder's listeners stay on their ports throughout). True when
    gone() says the machine no longer exists (a listing that fails says nothing)."""
    away = False
    while not stop_event.wait(0.5):
        if forwarder.alive():
            continue
        if not away:
            away = True
            console.print("the machine went away (stopped, rebooting?): connections are refused until it is "
                          "back; waiting for it (Ctrl-C to close)", highlight=False)
        try:
            reopen()
        except Exception:  # noqa: BLE001 - paramiko, sockets, the gateway: not back yet
            with contextlib.suppress(Exception):
                if gone():
                    return True
            stop_event.wait(retry_s)
            continue
        forwarder.forget_probe()
        if forwarder.alive():
            away = False
            console.print("the machine is back: forwarding again", highlight=False)
    return False


def ssh(
    ctx: typer.Context,
    name: Optional[str] = typer.Option(None, help="Instance name (default: the only one, or --project's)."),
    project: Optional[str] = typer.Option(None, help="Pick the instance of this project (gce: the GCP project)."),
    provider: Optional[str] = typer.Option(None, help="local or gce (gce: through IAP, needs gcloud)."),
    zone: Optional[str] = typer.Option(None, help="gce: the zone."),
) -> None:
    """Open a shell on an instance, or run the command given after --."""
    import os

    with one_line():
        args = provider_for(provider, project, zone).reach(name, project).ssh_args
    os.execvp(args[0], args + list(ctx.args))
