"""What the golden image holds, checked on a booted instance over SSH (testinfra)."""
from __future__ import annotations

import json

import pytest
from support import remote_json, run_ok

pytestmark = pytest.mark.image


def test_service_users_and_groups(host):
    for user in ("airflow", "mlflow"):
        u = host.user(user)
        assert u.exists and u.shell == "/usr/sbin/nologin"
    assert host.group("playground-sudoers").exists


def test_versions_match_the_manifest(host, manifest):
    on_host = remote_json(host, "/etc/playground/image-manifest.json")
    assert on_host["components"] == manifest["components"]
    comps = manifest["components"]
    assert run_ok(host, "/opt/airflow/bin/airflow version").strip().splitlines()[-1] == comps["airflow"]
    assert comps["mlflow"] in run_ok(host, "/opt/mlflow/bin/mlflow --version")
    assert run_ok(host, "/opt/airflow/bin/python -c 'import mlflow; print(mlflow.__version__)'").strip() \
        == comps["mlflow-skinny"]
    assert comps["python"] in run_ok(host, "python3 --version")


def test_units_installed_and_enabled(host):
    for unit in ("playground-data.service", "playground-agent.service", "ssh.service", "postgresql.service"):
        assert host.service(unit).is_enabled, unit
    for unit in ("airflow-webserver.service", "airflow-scheduler@.service", "mlflow-server.service",
                 "cloud-sql-proxy.service", "playground-bucket-mount.service", "playground-bucket-sync.service",
                 "playground.target"):
        assert host.file("/etc/systemd/system/" + unit).exists, unit
    assert host.service("playground.target").is_running
    assert host.service("airflow-webserver").is_running
    assert host.service("airflow-scheduler@1").is_running
    assert host.service("mlflow-server").is_running


def test_the_teams_data_is_on_the_data_volume_not_the_image(host):
    """PostgreSQL's clusters, the secrets and the task logs are bound from the data volume (a local instance's
    data/ folder, a GCE data disk): what a new image (`playground upgrade`) leaves as it was."""
    state = json.loads(run_ok(host, "cat /run/playground/data.json"))
    if state.get("volume") is None:
        pytest.skip("this machine has no data volume (a VM without a data disk): " + state.get("note", ""))
    assert state["state"] == "ok" and state["volume"] == "/mnt/disks/playground-data", state
    for target in ("/var/lib/postgresql", "/var/lib/playground/secrets", "/var/log/airflow",
                   "/var/lib/playground/mlflow-artifacts", "/var/lib/airflow/dags"):
        assert target in state["bound"], target
        assert run_ok(host, f"findmnt -n -o TARGET {target}").strip() == target, f"{target} is not a mount"
    assert run_ok(host, "systemctl show -p ActiveState playground-data.service").strip() == "ActiveState=active"


def test_config_and_secret_modes(host):
    for name in ("airflow.env", "mlflow.env", "cloudsql-proxy.env", "bucket-mount.env"):
        f = host.file("/etc/playground/" + name)
        assert (f.user, f.group, f.mode) == ("root", "airflow", 0o640), name
    secrets = host.file("/var/lib/playground/secrets")
    assert (secrets.user, secrets.mode) == ("root", 0o700)
    for name in ("airflow.env", "admin-password"):
        f = host.file("/var/lib/playground/secrets/" + name)
        assert (f.user, f.mode) == ("root", 0o600), name


def test_nothing_but_sshd_listens_beyond_loopback(host):
    for sock in host.socket.get_listening_sockets():
        if sock.startswith("unix://"):
            continue
        proto, rest = sock.split("://", 1)
        addr, port = rest.rsplit(":", 1)
        if addr not in ("127.0.0.1", "::1"):
            assert port == "22", f"{sock} listens beyond loopback"


def open_tcp_ports(address: str, ports: range, at_once: int = 256, timeout: float = 2.0) -> list[int]:
    """A TCP connect scan: the ports at address that accept a connection. Refused and unanswered ports are
    closed; any other failure (out of file descriptors, no route) fails the scan rather than pass as closed."""
    import asyncio

    async def scan() -> list[int]:
        gate = asyncio.Semaphore(at_once)

        async def probe(port: int) -> int | None:
            async with gate:
                try:
                    _, writer = await asyncio.wait_for(asyncio.open_connection(address, port), timeout)
                except (ConnectionRefusedError, asyncio.TimeoutError):
                    return None
                writer.close()
                return port

        return [p for p in await asyncio.gather(*(probe(p) for p in ports)) if p is not None]

    return asyncio.run(scan())


def test_only_sshd_answers_on_the_instance_address(request, local_instance):
    """From outside, as a port scan would see it: of all 65,535 TCP ports of the instance's address, only
    sshd's accepts (the web UIs, PostgreSQL, the scheduler's log server stay on loopback or off)."""
    if request.config.getoption("hosts"):
        pytest.skip("scans a local instance's address from this machine")
    assert open_tcp_ports(local_instance.address, range(1, 65536)) == [22]


def test_web_uis_answer_on_loopback_with_auth_on(host):
    health = remote_json(host, "/run/playground/status.json")
    assert health["healthy"], health["problems"]
    code = run_ok(host, "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/api/v1/dags").strip()
    assert code in ("401", "403")
    assert run_ok(host, "curl -s http://127.0.0.1:5000/health").strip() == "OK"


def test_no_secret_on_a_command_line_or_in_the_journal(host):
    """The admin password went to `airflow users create` on stdin, and MLflow reads its backend URI from its
    environment: neither is in the journal (runuser logs its command line there) nor in any process's argv."""
    password = run_ok(host, "sudo -n playground-agent admin-password").strip()
    assert len(password) == 24
    journal = run_ok(host, "sudo -n journalctl -b --no-pager -o cat")
    assert password not in journal, "the admin password is in the journal"
    argv = run_ok(host, "ps -eo args")
    mlflow = [line for line in argv.splitlines() if "mlflow server" in line]
    assert mlflow and not any("backend-store-uri" in line or "postgresql" in line for line in mlflow), mlflow


def test_mlflow_telemetry_is_off_in_the_server_and_its_ui(host, manifest):
    """MLflow's own check, with the telemetry settings of the running server's environment. (Its web UI asks
    the server, which says disabled when telemetry is; offline it also says so, so the UI's answer here proves
    nothing: the server's environment does.)"""
    version = tuple(int(x) for x in manifest["components"]["mlflow"].split(".")[:2])
    if version < (3, 2):
        pytest.skip("MLflow collects usage data from 3.2 on; this image has " + manifest["components"]["mlflow"])
    pid = run_ok(host, "systemctl show -p MainPID --value mlflow-server").strip()
    environ = dict(line.split("=", 1) for line in run_ok(host, f"sudo -n cat /proc/{pid}/environ").split("\0")
                   if "=" in line)
    assert environ.get("MLFLOW_DISABLE_TELEMETRY") == "true" and environ.get("DO_NOT_TRACK") == "true"
    probe = "/opt/mlflow/bin/python -c 'from mlflow.telemetry.utils import is_telemetry_disabled as d; print(d())'"
    settings = "MLFLOW_DISABLE_TELEMETRY={MLFLOW_DISABLE_TELEMETRY} DO_NOT_TRACK={DO_NOT_TRACK}".format(**environ)
    assert run_ok(host, f"env -i {settings} {probe}").strip() == "True"
    assert run_ok(host, f"env -i {probe}").strip() == "False", "without the settings MLflow would send usage data"
    assert run_ok(host, "sudo -n cat /etc/playground/airflow.env").count('MLFLOW_DISABLE_TELEMETRY="true"') == 1


def test_airflow_sends_no_usage_data(host):
    """Airflow 2.10 sent usage data through Scarf unless `[usage_data_collection] enabled` was False or
    SCARF_ANALYTICS false; 2.11 and 2.0 have no such collection. Read as Airflow's processes read it."""
    env = run_ok(host, "sudo -n cat /etc/playground/airflow.env")
    assert 'SCARF_ANALYTICS="false"' in env and 'DO_NOT_TRACK="true"' in env
    probe = ("from airflow.configuration import conf; "
             "print(conf.getboolean('usage_data_collection', 'enabled', fallback=False))")
    got = run_ok(host, 'sudo -n -u airflow sh -c "set -a; . /etc/playground/airflow.env; set +a; '
                       f'exec /opt/airflow/bin/python -c \\"{probe}\\""')
    assert got.strip().splitlines()[-1] == "False"


def test_ubuntu_news_is_off(host, manifest):
    """Ubuntu's images fetch login and apt "news" from Canonical with the machine's release, CPU and uptime."""
    from playground.image import profiles

    if profiles.debian_suite(manifest["profile"]):
        pytest.skip("Debian's minbase has no motd-news or Pro client (Ubuntu's GCE images do)")
    assert host.file("/etc/default/motd-news").contains("^ENABLED=0")
    assert run_ok(host, "systemctl is-enabled motd-news.timer || true").strip() == "masked"
    if host.exists("pro"):  # its table: "apt_news   False"
        rows = [line.split() for line in run_ok(host, "pro config show").splitlines()]
        assert [row[-1].lower() for row in rows if row and row[0] == "apt_news"] == ["false"]


def test_gce_only_tools_are_recorded(host, manifest):
    tools = remote_json(host, "/etc/playground/google-tools.json")
    from playground.image import profiles

    if profiles.debian_suite(manifest["profile"]):  # built here: Google serves these binaries only
        assert tools == {"gcsfuse": "absent", "cloud-sql-proxy": "absent"}
        assert not host.file("/usr/local/bin/cloud-sql-proxy").exists
    else:
        assert host.file("/usr/local/bin/cloud-sql-proxy").exists
        assert host.file("/usr/bin/gcsfuse").exists
