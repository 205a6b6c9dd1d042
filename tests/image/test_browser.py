"""The web UIs in a real browser, as a user opens them: headless Chromium through `playground tunnel`.

Each page is rendered with its JavaScript run (`--dump-dom` after a virtual-time budget) while Chromium
records every request in a net log. The checks: the page really rendered (a line of the UI is in the DOM),
every request the page made went to the tunnel's own address (a UI that phones home from the user's
browser would show here, since the browser has the internet even when the VM has none), and MLflow's UI
is told by its server that telemetry is off and shows no telemetry notice. Chromium's own background
requests are told apart (their network isolation key is not the tunnel's origin, or no web origin started
them) and cannot leave this machine: every host name resolves to nothing but 127.0.0.1.
"""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.image

CLI = str(Path(sys.executable).with_name("playground"))
BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
# Quiet Chromium's own services; what is left of them is kept on this machine by the resolver rule.
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-default-apps", "--disable-domain-reliability",
         "--no-pings", "--disable-features=AutofillServerCommunication,Translate,OptimizationHints,MediaRouter",
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]


@pytest.fixture(scope="module")
def tunnel(request, local_instance):
    if request.config.getoption("hosts"):
        pytest.skip("needs a local instance and its tunnel")
    if BROWSER is None:
        pytest.skip("chromium is not installed (scripts/install.sh test installs it)")
    proc = subprocess.Popen([CLI, "tunnel", "--name", local_instance.name, "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line, f"tunnel printed nothing: {proc.stderr.read()[-2000:]}"
    yield {f["service"]: f["url"] for f in json.loads(line)["forwards"]}
    proc.send_signal(signal.SIGINT)
    try:
        proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


def browse(url: str, workdir: Path) -> tuple[str, list[str]]:
    """The rendered DOM of url, and the URLs of every request the page made."""
    net_log = workdir / "net.json"
    proc = subprocess.run([BROWSER, *FLAGS, f"--user-data-dir={workdir / 'profile'}", f"--log-net-log={net_log}",
                           "--virtual-time-budget=20000", "--dump-dom", url],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    log = json.loads(net_log.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    site = "{0.scheme}://{0.hostname}".format(urlsplit(url))
    page = []
    for event in log["events"]:
        p = event.get("params", {})
        if event["type"] != start or not p.get("network_isolation_key", "").startswith(site):
            continue
        # The page's own: its document, and what its content started (an origin as initiator). Chromium's
        # services (autofill and the like) fetch for the page with "not an origin".
        if p.get("request_type") == "main frame" or p.get("initiator", "not an origin") != "not an origin":
            page.append(p["url"])
    return proc.stdout, page


def elsewhere(urls: list[str], base: str) -> list[str]:
    origin = urlsplit(base)
    return [u for u in urls if (urlsplit(u).hostname, urlsplit(u).port) != (origin.hostname, origin.port)]


def test_mlflow_ui_renders_asks_no_other_host_and_is_told_telemetry_is_off(tunnel, tmp_path):
    import requests

    dom, asked = browse(tunnel["mlflow"] + "/", tmp_path)
    assert "Experiments" in dom, "the MLflow UI did not render: " + dom[-500:]
    assert len(asked) > 3, "the page's own requests are in the net log"
    assert elsewhere(asked, tunnel["mlflow"]) == []
    # MLflow 3.17's home page would show its "MLflow collects usage data" notice whatever the setting (until
    # the user closes it); the image removes it (40-mlflow.sh), since nothing is collected.
    assert "collects usage data" not in dom.lower(), "MLflow's telemetry notice is on the home page"
    # MLflow 3.2+: the UI's telemetry worker asks the server for its config and sends nothing when told
    # it is disabled.
    if any(u.endswith("/ajax-api/3.0/mlflow/ui-telemetry") for u in asked):
        config = requests.get(tunnel["mlflow"] + "/ajax-api/3.0/mlflow/ui-telemetry", timeout=10).json()
        assert config["disable_ui_telemetry"] is True, config


def test_airflow_ui_renders_and_asks_no_other_host(tunnel, tmp_path):
    dom, requests = browse(tunnel["airflow"] + "/login/", tmp_path)
    assert "Sign In" in dom, "the Airflow login page did not render: " + dom[-500:]
    assert len(requests) > 3
    assert elsewhere(requests, tunnel["airflow"]) == []
