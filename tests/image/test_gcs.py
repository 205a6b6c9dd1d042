"""GCS the way the image uses it, on a real local instance, against a storage emulator.

What stands in for Google: gcp-storage-emulator (PyPI), which speaks GCS's JSON API (with GCS's own
answer to a missing object's download, `standin_storage_emulator.py`), run in the
instance's own network namespace on its 127.0.0.1:9023. The services reach it the way Google's client
libraries allow, through STORAGE_EMULATOR_HOST, set by drop-ins placed in this instance's own layer
(nothing in the image knows about it). The emulator accepts any credentials, so what Google's IAM would
refuse is not checked here.

What runs for real: MLflow's server storing a run's artifacts under `artifacts-root = gs://...` with
MLflow's own GCS artifact repository (google-cloud-storage), the object seen in the emulated bucket and
read back through MLflow's client; `logs-bucket`: a task's log written to the bucket by Airflow's own GCS
task handler (the Google provider in the image's lock) with the instance's credentials, which Google's auth
library finds through the metadata server as on GCE, and read back from there by the webserver; and
`dags-bucket` on an image without gcsfuse: a DAG put in the bucket synced into Airflow's DAG folder, parsed
and listed by Airflow's REST API, and removed when deleted; `backup-to`: the nightly backup's timer on the
calendar of `backup-at` (systemd's own next elapse), and its service's file in the bucket, whole.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest
import support
from playground.local import instance, store
from support import instance_ssh as ssh
from support import need_local, remove_instance, service_accounts, stop_process

pytestmark = pytest.mark.image

NAME = "pggcs"
PROJECT = "playground-gcs"
BUCKET = "pg-artifacts"
DAGS_BUCKET = "pg-dags"
LOGS_BUCKET = "pg-logs"
BACKUPS_BUCKET = "pg-backups"
BACKUP_AT = "mon-fri 20:45 Europe/London"
PORT = 9023
# gcp-storage-emulator with GCS's text on a missing object's download (the launcher says why).
EMULATOR = [sys.executable, str(Path(__file__).with_name("standin_storage_emulator.py"))]
# The units whose processes talk to GCS: MLflow's server, every Airflow process (tasks included), and
# the bucket sync that stands for gcsfuse on images without it.
UNITS = ("mlflow-server.service", "airflow-webserver.service", "airflow-scheduler@.service",
         "playground-bucket-sync.service", "playground-backup.service")


class StorageEmulator:
    """gcp-storage-emulator in a local instance's network namespace, queried with curl from inside it."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.proc: subprocess.Popen | None = None
        self.namespace = ""

    def start(self, namespace: str, *buckets: str) -> None:
        self.namespace = namespace
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", namespace, *EMULATOR, "start", "--host", "127.0.0.1", "--port", str(PORT),
                 "--in-memory", "--default-bucket", buckets[0]],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"the storage emulator exited: {self.log.read_text()[-2000:]}")
            if self._curl("GET", f"/storage/v1/b/{buckets[0]}").returncode == 0:
                break
            time.sleep(0.3)
        else:
            pytest.fail("the storage emulator did not answer within 30 s")
        for bucket in buckets[1:]:
            self.request("POST", "/storage/v1/b?project=" + PROJECT, {"name": bucket})

    def _curl(self, method: str, path: str, body: bytes | None = None, ctype: str = "application/json"):
        cmd = ["ip", "netns", "exec", self.namespace, "curl", "-sfS", "-X", method,
               f"http://127.0.0.1:{PORT}{path}"]
        if body is not None:
            cmd += ["-H", f"Content-Type: {ctype}", "--data-binary", "@-"]
        return subprocess.run(cmd, input=body, capture_output=True, timeout=30)

    def request(self, method: str, path: str, doc: dict | None = None) -> dict:
        proc = self._curl(method, path, None if doc is None else json.dumps(doc).encode())
        assert proc.returncode == 0, f"{method} {path}: {proc.stderr.decode()}"
        return json.loads(proc.stdout or b"{}")

    def objects(self, bucket: str, prefix: str = "") -> list[str]:
        query = "?prefix=" + urllib.parse.quote(prefix, safe="") if prefix else ""
        return [o["name"] for o in self.request("GET", f"/storage/v1/b/{bucket}/o{query}").get("items", [])]

    def read(self, bucket: str, name: str) -> bytes:
        proc = self._curl("GET", f"/storage/v1/b/{bucket}/o/{urllib.parse.quote(name, safe='')}?alt=media")
        assert proc.returncode == 0, proc.stderr.decode()
        return proc.stdout

    def upload(self, bucket: str, name: str, data: bytes) -> None:
        proc = self._curl("POST", f"/upload/storage/v1/b/{bucket}/o?uploadType=media&name="
                          + urllib.parse.quote(name, safe=""), data, "application/octet-stream")
        assert proc.returncode == 0, proc.stderr.decode()

    def stop(self) -> None:
        stop_process(self.proc, 15)


@pytest.fixture(scope="module")
def gcs(request, image_profile, tmp_path_factory):
    if request.config.getoption("hosts"):
        pytest.skip("needs a local instance (the emulator runs in its namespace)")
    need_local()
    img = request.getfixturevalue("image")
    remove_instance(NAME)
    upper = instance.paths.instances_dir() / NAME / "upper"  # the instance's own layer over the image
    for unit in UNITS:
        dropin = upper / "etc/systemd/system" / (unit + ".d") / "50-storage-emulator.conf"
        dropin.parent.mkdir(parents=True)
        dropin.write_text(f"[Service]\nEnvironment=STORAGE_EMULATOR_HOST=http://127.0.0.1:{PORT}\n")
    emulator = StorageEmulator(tmp_path_factory.mktemp("gcs") / "emulator.log")
    attrs = {"artifacts-root": f"gs://{BUCKET}/mlflow", "dags-bucket": DAGS_BUCKET, "logs-bucket": LOGS_BUCKET,
             "backup-to": f"gs://{BACKUPS_BUCKET}/nightly", "backup-at": BACKUP_AT, "backup-keep": "1"}
    # The instance's service account, as GCE serves it: Airflow's GCS handler asks Google's auth library
    # for credentials, which reads them from the metadata server (the emulator accepts any token).
    patch = pytest.MonkeyPatch()
    plain = store.metadata_document
    patch.setattr(store, "metadata_document", lambda inst: {
        **plain(inst), "instance": {**plain(inst)["instance"], "serviceAccounts": service_accounts("ya29.gcs")}})
    try:
        inst, _ = instance.launch(NAME, PROJECT, attrs, img, image_profile, report=lambda s: None, wait=False)
        emulator.start(inst.net["netns"], BUCKET, DAGS_BUCKET, LOGS_BUCKET, BACKUPS_BUCKET)
        emulator.upload(DAGS_BUCKET, "dags/gcs_hello.py", HELLO_DAG.encode())
        emulator.upload(DAGS_BUCKET, "dags/gcs_logged.py", LOGGED_DAG.encode())
        rep = instance.wait_healthy(inst, 300, report=lambda s: None)
        yield {"inst": inst, "emulator": emulator, "report": rep}
    finally:
        remove_instance(NAME)
        patch.undo()
        emulator.stop()


HELLO_DAG = """
from datetime import datetime

from airflow import DAG
from airflow.operators.bash import BashOperator

with DAG("gcs_hello", start_date=datetime(2024, 1, 1), schedule_interval=None, catchup=False) as dag:
    BashOperator(task_id="hello", bash_command="echo hello")
"""


LOGGED_DAG = HELLO_DAG.replace('"gcs_hello"', '"gcs_logged"').replace(
    'task_id="hello", bash_command="echo hello"', 'task_id="say", bash_command="echo logged-in-the-bucket"')


def wait_for(what: str, check, timeout: float, every: float = 3.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    pytest.fail(f"{what}: not within {timeout:.0f} s (last: {last!r})")


def airflow_api(inst, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    """(HTTP status, answer) of a call to Airflow's REST API as the admin, made on the instance by its agent."""
    answer = support.airflow_api(inst, method, path, body)
    return answer.get("http_status", 200), answer


def airflow_dag(inst, dag_id: str) -> int:
    """The HTTP status of Airflow's REST API for the DAG."""
    return airflow_api(inst, "GET", f"dags/{dag_id}")[0]


def test_a_dag_put_in_the_bucket_is_synced_parsed_and_removed_when_deleted(gcs):
    inst, emulator = gcs["inst"], gcs["emulator"]
    assert gcs["report"]["mount"]["ok"] and gcs["report"]["mount"]["bucket"] == DAGS_BUCKET
    synced = inst.dir / "rootfs/mnt/playground-bucket/dags/gcs_hello.py"
    wait_for("the DAG synced from the bucket", synced.is_file, 90)
    assert synced.read_text() == HELLO_DAG
    wait_for("Airflow listing the DAG from the bucket", lambda: airflow_dag(inst, "gcs_hello") == 200, 120)
    emulator.request("DELETE", f"/storage/v1/b/{DAGS_BUCKET}/o/dags%2Fgcs_hello.py")
    wait_for("the deleted DAG removed from the folder", lambda: not synced.exists(), 90)


CLIENT = """
import mlflow
from mlflow.tracking import MlflowClient
client = MlflowClient("http://127.0.0.1:5000")
exp = client.get_experiment_by_name("gcs-check")
exp_id = exp.experiment_id if exp else client.create_experiment("gcs-check")
run = client.create_run(exp_id)
client.log_text(run.info.run_id, "rows,42\\n", "report/summary.csv")
client.set_terminated(run.info.run_id)
path = client.download_artifacts(run.info.run_id, "report/summary.csv", "/tmp")
print(run.info.experiment_id, run.info.run_id, open(path).read().strip())
"""


def test_mlflow_artifacts_land_in_the_bucket_and_read_back(gcs):
    inst, emulator = gcs["inst"], gcs["emulator"]
    # MLFLOW_TRACKING_URI as well: MLflow 2.x resolves mlflow-artifacts:/ URIs against it, not the client's.
    out = ssh(inst, ["env", "MLFLOW_DISABLE_TELEMETRY=true", "DO_NOT_TRACK=1", "MLFLOW_TRACKING_URI=http://127.0.0.1:5000",
                     "/opt/mlflow/bin/python", "-"], stdin=CLIENT).split()
    exp_id, run_id, content = out[-3:]
    assert content == "rows,42"  # read back through the server, from the bucket
    name = f"mlflow/{exp_id}/{run_id}/artifacts/report/summary.csv"
    assert name in emulator.objects(BUCKET, "mlflow/")
    assert emulator.read(BUCKET, name) == b"rows,42\n"


def test_task_logs_land_in_the_logs_bucket_and_are_read_back_from_it(gcs):
    """Airflow's own GCS task handler (remote logging to gs://LOGS_BUCKET/logs) writes the log when the task
    ends, with the instance's credentials; the webserver serves it from the bucket."""
    inst, emulator = gcs["inst"], gcs["emulator"]
    wait_for("Airflow listing the DAG from the bucket", lambda: airflow_dag(inst, "gcs_logged") == 200, 120)
    assert airflow_api(inst, "PATCH", "dags/gcs_logged", {"is_paused": False})[0] == 200
    code, answer = airflow_api(inst, "POST", "dags/gcs_logged/dagRuns", {"dag_run_id": "logs-1"})
    assert code == 200, answer

    def run_state():
        state = airflow_api(inst, "GET", "dags/gcs_logged/dagRuns/logs-1")[1].get("state")
        assert state != "failed", "the DAG run failed"
        return state == "success"

    wait_for("the DAG run to succeed", run_state, 180)
    deadline = time.monotonic() + 60
    while not (logs := emulator.objects(LOGS_BUCKET, "logs/")) and time.monotonic() < deadline:
        time.sleep(1)
    if not logs:  # say why: the task's local log and what the handler logged
        local = ssh(inst, ["sudo", "-n", "bash", "-s"], stdin=(
            "tail -n 30 \"$(find /var/log/airflow -path '*gcs_logged*' -name '*.log' | head -1)\"\n"
            "journalctl -u 'airflow-scheduler@*' --no-pager | grep -iE 'gcs|remote log' | tail -n 20\n"))
        pytest.fail(f"no task log in gs://{LOGS_BUCKET}/logs/ within 60 s:\n{local}")
    assert len(logs) == 1 and "gcs_logged" in logs[0] and "say" in logs[0], logs
    assert b"logged-in-the-bucket" in emulator.read(LOGS_BUCKET, logs[0])
    code, answer = airflow_api(inst, "GET", "dags/gcs_logged/dagRuns/logs-1/taskInstances/say/logs/1"
                                            "?full_content=true")
    text = str(answer.get("content"))
    assert code == 200, answer
    assert f"gs://{LOGS_BUCKET}/logs/" in text and "logged-in-the-bucket" in text, text[-1500:]


def test_the_nightly_backup_is_on_its_calendar_and_lands_whole_in_the_bucket(gcs):
    import io
    import tarfile

    inst, emulator = gcs["inst"], gcs["emulator"]
    shown = ssh(inst, ["systemctl", "show", "playground-backup.timer", "-p", "ActiveState", "-p", "TimersCalendar"])
    assert "ActiveState=active" in shown and "OnCalendar=Mon..Fri *-*-* 20:45:00 Europe/London" in shown, shown
    # systemd's own next elapse, against the same calendar computed here.
    nxt = ssh(inst, ["systemd-analyze", "calendar", "'Mon..Fri *-*-* 20:45:00 Europe/London'"])  # one word there
    assert ssh(inst, ["systemctl", "show", "playground-backup.timer", "-p", "NextElapseUSecRealtime",
                      "--value"]).strip() in nxt, nxt
    for _ in range(2):  # twice: backup-keep 1 leaves the newer one only
        out = ssh(inst, ["sudo", "-n", "systemctl", "start", "playground-backup.service"])
        time.sleep(1.1)  # the objects are named to the second
    names = emulator.objects(BACKUPS_BUCKET, "nightly/")
    assert len(names) == 1 and names[0].startswith(f"nightly/{NAME}-nightly-"), (names, out)
    with tarfile.open(fileobj=io.BytesIO(emulator.read(BACKUPS_BUCKET, names[0])), mode="r|") as tar:
        members = {m.name: (tar.extractfile(m).read() if m.isfile() else b"") for m in tar}
    manifest = json.loads(members["manifest.json"])
    assert {"db/airflow.dump", "db/warehouse.dump", "db/mlflow.dump", "secrets/fernet-key", "end.json"} <= set(members)
    assert manifest["instance"] == NAME and manifest["databases"]["airflow"]["counts"]["dag_runs"] >= 0
    rep = json.loads(ssh(inst, ["sudo", "-n", "playground-agent", "status", "--json"]))
    assert rep["backup"]["ok"] and rep["backup"]["object"] == f"gs://{BACKUPS_BUCKET}/{names[0]}", rep["backup"]
