"""MLflow on MySQL the seed's way (mlflow-backend = cloudsql), on a real local instance.

What stands in for Google, and where:
- the Cloud SQL instance: Debian's MariaDB, run in the instance's own network namespace on its
  127.0.0.1:3306 (reachable from nowhere else);
- Secret Manager: the fake Google server, which checks every call against secretmanager.v1's discovery
  document and the bearer token, on this machine's end of the instance's veth (its port given to the
  instance beside the metadata server's);
- the instance's service account: its token and scopes, served by the local metadata server at GCE's
  path (instance/service-accounts/default/...).
Left out, and said so here: the Cloud SQL Auth Proxy binary, which needs Google's SQL Admin API. In its
place, in this instance only, /usr/local/bin/cloud-sql-proxy is a relay that takes the proxy's arguments
(standin_cloud_sql_proxy.py).

What runs for real: the agent reading the password with the instance's token, the root-only
secrets/mlflow.env with the quoted URI, the proxy unit pulled in by playground.target with its env file,
MLflow's own migrations on MySQL, a run logged by MLflow's client landing in MySQL, health noticing the
proxy down, and the runs kept across stop and start (the secret read again at boot).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest
from fakegoogle import FakeGoogle
from playground.local import instance, netns, store
from support import instance_ssh as ssh
from support import need_local, remove_instance, service_accounts, stop_process

pytestmark = pytest.mark.image

NAME = "pgcloudsql"
PROJECT = "playground-sql"
CONNECTION = f"{PROJECT}:europe-west1:mlflow"
SECRET_ID = "mlflow-db"
# Every character here must be quoted in the URI: the agent quotes it, MLflow's SQLAlchemy unquotes it.
PASSWORD = "s3cret:/@%&+?#-pw"
STANDIN = Path(__file__).with_name("standin_cloud_sql_proxy.py")


class MariaDB:
    """Debian's MariaDB playing the Cloud SQL instance, in a local instance's network namespace."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.sock = root / "mysqld.sock"
        self.proc: subprocess.Popen | None = None
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={root / 'data'}", "--user=root",
                        "--auth-root-authentication-method=socket", "--skip-test-db"],
                       check=True, capture_output=True)

    def start(self, namespace: str) -> None:
        log = open(self.root / "mysqld.log", "ab")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", namespace, "mariadbd", "--no-defaults", f"--datadir={self.root / 'data'}",
             "--user=root", f"--socket={self.sock}", f"--pid-file={self.root / 'mysqld.pid'}",
             "--bind-address=127.0.0.1", "--port=3306", "--skip-name-resolve", "--skip-log-bin",
             "--innodb-buffer-pool-size=64M"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"mariadbd exited: {(self.root / 'mysqld.log').read_text()[-2000:]}")
            if subprocess.run(self._client("SELECT 1"), capture_output=True).returncode == 0:
                return
            time.sleep(0.3)
        pytest.fail("mariadbd did not answer within 30 s")

    def _client(self, sql: str) -> list[str]:
        return ["mariadb", "--no-defaults", "-S", str(self.sock), "-u", "root", "-N", "-B", "-e", sql]

    def sql(self, sql: str) -> str:
        proc = subprocess.run(self._client(sql), capture_output=True, text=True)
        assert proc.returncode == 0, f"{sql}: {proc.stderr}"
        return proc.stdout

    def stop(self) -> None:
        stop_process(self.proc, 30)
        self.proc = None


def wait_healthy(inst) -> dict:
    return instance.wait_healthy(inst, 300, report=lambda s: None)


@pytest.fixture(scope="module")
def cloudsql(request, image_profile, tmp_path_factory):
    if request.config.getoption("hosts"):
        pytest.skip("needs a local instance (MariaDB in its namespace)")
    need_local()
    if shutil.which("mariadbd") is None:
        pytest.skip("mariadb-server is not installed (scripts/install.sh test installs it)")
    img = request.getfixturevalue("image")
    remove_instance(NAME)
    # The fake Secret Manager listens on this machine's end of the veth the instance will get (the lowest
    # free slot; checked below), bound before that address exists so the agent's first apply finds it.
    slot = instance.free_slot()
    google = FakeGoogle(bind=netns.names(slot)["host_ip"])
    google.secrets.values[(PROJECT, SECRET_ID)] = PASSWORD
    upper = instance.paths.instances_dir() / NAME / "upper"  # the instance's own layer over the image
    (upper / "etc/playground").mkdir(parents=True)
    (upper / "etc/playground/agent.env").write_text(f"PLAYGROUND_SECRETMANAGER_ENDPOINT={google.endpoint}\n")
    (upper / "usr/local/bin").mkdir(parents=True)
    shutil.copy(STANDIN, upper / "usr/local/bin/cloud-sql-proxy")
    (upper / "usr/local/bin/cloud-sql-proxy").chmod(0o755)
    db = MariaDB(tmp_path_factory.mktemp("cloudsql"))
    patch = pytest.MonkeyPatch()
    # Given to this instance on this machine, beside its metadata server (netns.isolate drops the rest).
    patch.setattr(store, "HOST_PORTS", (store.METADATA_PORT, google.server.server_address[1]))
    plain = store.metadata_document
    patch.setattr(store, "metadata_document", lambda inst: {
        **plain(inst), "instance": {**plain(inst)["instance"],
                                    "serviceAccounts": service_accounts(google.secrets.token)}})
    attrs = {"cloudsql-instance": CONNECTION, "mlflow-db-password-secret": f"projects/{PROJECT}/secrets/{SECRET_ID}"}
    state: dict = {"google": google, "db": db}
    try:
        inst, _ = instance.launch(NAME, PROJECT, attrs, img, image_profile, report=lambda s: None, wait=False)
        assert inst.slot == slot, f"the instance took slot {inst.slot}, not the free slot {slot} seen before"
        db.start(inst.net["netns"])
        db.sql("DROP USER IF EXISTS ''@'localhost'; CREATE DATABASE mlflow CHARACTER SET utf8mb4; "
               f"CREATE USER 'mlflow'@'%' IDENTIFIED BY '{PASSWORD}'; GRANT ALL ON mlflow.* TO 'mlflow'@'%';")
        state["inst"] = inst
        state["report"] = wait_healthy(inst)
        yield state
    finally:
        remove_instance(NAME)
        db.stop()
        patch.undo()
        google.close()
        assert not google.violations, google.violations


def test_healthy_with_the_proxy_unit_and_the_secret_read_with_the_instance_token(cloudsql):
    rep, inst, google = cloudsql["report"], cloudsql["inst"], cloudsql["google"]
    assert rep["proxy"]["ok"] and rep["proxy"]["instance"] == CONNECTION, rep["proxy"]
    (call,) = google.calls("projects.secrets.versions.access")
    assert call["params"] == {"projectsId": PROJECT, "secretsId": SECRET_ID, "versionsId": "latest"}
    assert call["headers"]["Authorization"] == f"Bearer {google.secrets.token}"
    root = inst.dir / "rootfs"
    secret_env = inst.dir / "data/secrets/mlflow.env"  # the data volume holds the secrets (agent's data.py)
    st = secret_env.stat()
    assert (st.st_mode & 0o777, st.st_uid) == (0o600, 0)
    quoted = urllib.parse.quote(PASSWORD, safe="")
    assert f"mysql+pymysql://mlflow:{quoted}@127.0.0.1:3309/mlflow" in secret_env.read_text()
    shared = (root / "etc/playground/mlflow.env").read_text()
    assert "127.0.0.1:3309/mlflow" in shared and PASSWORD not in shared and quoted not in shared
    # The proxy unit runs with the agent's env file, on the proxy's address, for the connection name.
    assert "listening on 127.0.0.1:3309 for " + CONNECTION in ssh(
        inst, ["sudo", "-n", "journalctl", "-b", "-u", "cloud-sql-proxy.service", "--no-pager"])
    journal = ssh(inst, ["sudo", "-n", "journalctl", "-b", "--no-pager"])
    assert PASSWORD not in journal and quoted not in journal
    argv = ssh(inst, ["ps", "-eo", "args"])
    assert "mysql+pymysql" not in argv and quoted not in argv


def test_mlflow_migrated_its_schema_on_mysql(cloudsql):
    db = cloudsql["db"]
    tables = set(db.sql("SHOW TABLES FROM mlflow").split())
    assert {"alembic_version", "experiments", "runs", "metrics", "params", "registered_models"} <= tables
    assert db.sql("SELECT version_num FROM mlflow.alembic_version").strip()


CLIENT = """
import sys, mlflow
from mlflow.tracking import MlflowClient
client = MlflowClient("http://127.0.0.1:%(port)d")
exp = client.get_experiment_by_name("cloudsql-check")
exp_id = exp.experiment_id if exp else client.create_experiment("cloudsql-check")
run = client.create_run(exp_id)
client.log_param(run.info.run_id, "backend", "cloudsql")
client.log_metric(run.info.run_id, "rmse", 0.25)
client.set_terminated(run.info.run_id)
print(run.info.run_id)
"""


def log_run(inst) -> str:
    env = ["env", "MLFLOW_DISABLE_TELEMETRY=true", "DO_NOT_TRACK=1"]
    return ssh(inst, [*env, "/opt/mlflow/bin/python", "-"], stdin=CLIENT % {"port": 5000}).strip().splitlines()[-1]


def test_a_run_logged_by_mlflow_client_lands_in_mysql(cloudsql):
    run_id = log_run(cloudsql["inst"])
    cloudsql["run_id"] = run_id
    db = cloudsql["db"]
    assert db.sql(f"SELECT `key`, value FROM mlflow.metrics WHERE run_uuid = '{run_id}'").split() == ["rmse", "0.25"]
    assert db.sql(f"SELECT status FROM mlflow.runs WHERE run_uuid = '{run_id}'").strip() == "FINISHED"


def test_the_proxy_down_is_reported_and_its_restart_recovers(cloudsql):
    inst = cloudsql["inst"]
    ssh(inst, ["sudo", "-n", "systemctl", "stop", "cloud-sql-proxy.service"])
    try:
        out = subprocess.run(instance.ssh_args(inst) + ["sudo", "-n", "playground-agent", "status", "--json"],
                             capture_output=True, text=True, timeout=60)
        rep = json.loads(out.stdout)
        assert out.returncode == 1 and not rep["healthy"] and rep["proxy"]["state"] == "inactive", rep["proxy"]
    finally:
        ssh(inst, ["sudo", "-n", "systemctl", "start", "cloud-sql-proxy.service"])
    assert log_run(inst)  # MLflow reaches MySQL again through the restarted proxy


def test_stop_and_start_keep_the_runs_and_read_the_secret_again(cloudsql):
    assert "run_id" in cloudsql, "needs the run of the earlier test"
    inst, db, google = cloudsql["inst"], cloudsql["db"], cloudsql["google"]
    instance.stop(NAME)
    db.stop()  # its namespace went with the instance
    inst, _ = instance.start(NAME, report=lambda s: None, wait=False)
    db.start(inst.net["netns"])
    assert wait_healthy(inst)["proxy"]["ok"]
    assert len(google.calls("projects.secrets.versions.access")) == 2  # every boot applies the metadata
    script = (f"from mlflow.tracking import MlflowClient\nr = MlflowClient('http://127.0.0.1:5000')"
              f".get_run('{cloudsql['run_id']}')\nprint(r.info.status, r.data.metrics['rmse'])\n")
    run = ssh(inst, ["env", "MLFLOW_DISABLE_TELEMETRY=true", "DO_NOT_TRACK=1", "/opt/mlflow/bin/python", "-"],
              stdin=script)
    assert run.split() == ["FINISHED", "0.25"]
