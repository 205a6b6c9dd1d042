"""Backup and restore on real instances (issue 16): a machine with DAG runs, MLflow runs with artifacts, a
registered model version, warehouse rows and an encrypted connection is backed up while it runs, through
`playground backup`; `playground restore` onto a fresh instance gives every count again, and what they
count works there: the artifact is served by MLflow, the connection's password decrypts with the new
machine's key, the new machine's own admin password logs in. Then bad backups: one line each, and the
machine as it was."""
from __future__ import annotations

import io
import json
import shlex
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from playground.local import instance
from support import airflow_api, eventually, instance_ssh, remove_instance

pytestmark = pytest.mark.image
CLI = str(Path(sys.executable).with_name("playground"))
SOURCE, TARGET = "pgtest-backup-a", "pgtest-backup-b"
PASSWORD = "s3cr3t-pw"

SEED = r"""
set -e
sudo -n airflow connections add demo_conn --conn-uri 'postgres://u:%(pw)s@db.example/x' >/dev/null 2>&1
sudo -n airflow variables set demo_var 42 >/dev/null 2>&1
sudo -n setpriv --reuid=airflow --regid=airflow --init-groups psql -qtAX -d warehouse \
  -c "CREATE TABLE sales AS SELECT g AS id FROM generate_series(1, 250) g"
MLFLOW_TRACKING_URI=http://127.0.0.1:5000 /opt/mlflow/bin/python3 - <<'PY'
import mlflow
from mlflow.tracking import MlflowClient
mlflow.set_experiment("backup")
ids = []
for i in range(5):
    with mlflow.start_run() as run:
        mlflow.log_param("i", i)
        mlflow.log_metric("m", i * 1.5)
        mlflow.log_text("hello %%d" %% i, "notes/hello.txt")
        ids.append(run.info.run_id)
client = MlflowClient()
client.create_registered_model("backup-model")
client.create_model_version("backup-model", "runs:/%%s/notes" %% ids[0], ids[0])
print(ids[0])
PY
""" % {"pw": PASSWORD}


def cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args, "--provider", "local"], capture_output=True, text=True, timeout=timeout)


def counts(inst) -> dict:
    """The machine's counts as the agent's own backup code reads them."""
    code = ("import json; from playground_agent import backup; print(json.dumps({r: backup.counts(r, d) "
            "for r, (d, o) in backup.databases(backup.machine_config()).items()}))")
    return json.loads(instance_ssh(inst, ["sudo", "-n", "env", "PYTHONPATH=/opt/playground/agent", "python3", "-c",
                                          shlex.quote(code)]))


@pytest.fixture(scope="module")
def machines(image, image_profile):
    for name in (SOURCE, TARGET):
        remove_instance(name)
    made = []
    try:
        for name in (SOURCE, TARGET):
            inst, _ = instance.launch(name, "playground-test", {}, image, image_profile, report=lambda s: None,
                                      timeout=300)
            made.append(inst)
        yield made
    finally:
        for inst in made:
            instance.destroy(inst.name)


@pytest.fixture(scope="module")
def seeded(machines):
    source = machines[0]
    run_id = instance_ssh(source, ["bash", "-s"], stdin=SEED, timeout=300).strip().splitlines()[-1]
    instance_ssh(source, ["sudo", "-n", "airflow", "dags", "unpause", "lineage_demo"])
    for n in (1, 2):
        instance_ssh(source, ["sudo", "-n", "airflow", "dags", "trigger", "lineage_demo", "-r", f"backup-{n}"])

    def finished():
        out = instance_ssh(source, ["sudo", "-n", "setpriv", "--reuid=airflow", "--regid=airflow", "--init-groups",
                                    "psql", "-qtAX", "-d", "airflow", "-c",
                                    shlex.quote("SELECT count(*) FROM dag_run WHERE state IN ('success', 'failed')")])
        return int(out.strip()) == 2

    assert eventually(finished, 300, every=2), "the two DAG runs did not finish"
    return {"run_id": run_id, "counts": counts(source)}


@pytest.fixture(scope="module")
def backup_file(machines, seeded, tmp_path_factory):
    folder = tmp_path_factory.mktemp("backups")
    out = cli("backup", "--name", SOURCE, "--to", str(folder), "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    return Path(doc["path"]), doc


def test_the_backup_is_one_private_file_whose_manifest_counts_what_the_machine_holds(backup_file, seeded):
    path, doc = backup_file
    assert path.is_file() and path.stat().st_mode & 0o777 == 0o600
    assert not list(path.parent.glob("*.part"))
    # The machine keeps working meanwhile (lineage adds MLflow runs for each finished task, up to a minute
    # later): what it held when seeded is a lower bound of what the manifest counts.
    got = {db: v["counts"] for db, v in doc["manifest"]["databases"].items()}
    assert got["airflow"]["dag_runs"] == 2 and got["airflow"]["connections"] == got["airflow"]["variables"] == 1
    assert got["mlflow"]["runs"] >= seeded["counts"]["mlflow"]["runs"] >= 5, got
    assert got["mlflow"]["model_versions"] == got["mlflow"]["registered_models"] == 1
    assert got["warehouse"] == {"tables": 1, "rows": 250}
    with tarfile.open(path) as tar:
        names = tar.getnames()
    assert names[0] == "manifest.json" and "db/airflow.dump" in names and "secrets/fernet-key" in names
    assert any(n.endswith(f"{seeded['run_id']}/artifacts/notes/hello.txt") for n in names), names
    assert PASSWORD.encode() not in path.read_bytes(), "the connection's password is in the file unencrypted"


def test_restore_onto_a_fresh_instance_gives_every_count_and_working_data(machines, backup_file, seeded):
    target = machines[1]
    path, doc = backup_file
    in_backup = {db: v["counts"] for db, v in doc["manifest"]["databases"].items()}
    out = cli("restore", "--name", TARGET, "--from", str(path), "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["ok"] and result["found"] == in_backup, result
    assert counts(target) == in_backup

    conn = json.loads(instance_ssh(target, ["sudo", "-n", "airflow", "connections", "get", "demo_conn", "-o", "json"]))
    assert conn[0]["password"] == PASSWORD, "the connection does not decrypt with this machine's key"
    run = json.loads(instance_ssh(target, ["curl", "-sf", "http://127.0.0.1:5000/api/2.0/mlflow/runs/get?run_id="
                                           + seeded["run_id"]]))
    uri = run["run"]["info"]["artifact_uri"]  # mlflow-artifacts:/EXPERIMENT/RUN/artifacts, served by the server
    assert uri.startswith("mlflow-artifacts:/"), uri
    artifact = instance_ssh(target, ["curl", "-sf", "http://127.0.0.1:5000/api/2.0/mlflow-artifacts/artifacts/"
                                     + uri.removeprefix("mlflow-artifacts:/") + "/notes/hello.txt"])
    assert artifact == "hello 0"

    def runs_listed():
        return airflow_api(target, "GET", "dags/lineage_demo/dagRuns").get("total_entries") == 2

    assert eventually(runs_listed, 120, every=1), "the target's admin does not see the two DAG runs"
    assert eventually(lambda: (instance.health(target) or {}).get("healthy"), 180, every=2)


def _rewritten(path: Path, dest: Path, change) -> Path:
    """A copy of the backup with its manifest changed by change(manifest)."""
    with tarfile.open(path) as src, tarfile.open(dest, "w") as out:
        for member in src.getmembers():
            data = src.extractfile(member).read() if member.isfile() else None
            if member.name == "manifest.json":
                doc = json.loads(data)
                change(doc)
                data = json.dumps(doc).encode()
                member.size = len(data)
            out.addfile(member, io.BytesIO(data) if data is not None else None)
    return dest


def test_bad_backups_are_one_line_and_change_nothing(machines, backup_file, seeded, tmp_path):
    target = machines[1]
    path, _ = backup_file
    before = counts(target)
    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    newer = _rewritten(path, tmp_path / "newer.tar", lambda m: m["versions"].update(airflow="9.0.0"))
    cases = {
        truncated: "truncated",
        newer: "a downgrade is refused",
        tmp_path / "missing.tar": "--from:",
        path: "pass --replace",  # the target has runs now
    }
    (tmp_path / "not-a-backup.tar").write_bytes(b"not a tar at all" * 100)
    cases[tmp_path / "not-a-backup.tar"] = "not a readable tar stream"
    for bad, said in cases.items():
        out = cli("restore", "--name", TARGET, "--from", str(bad))
        assert out.returncode == 1, (bad.name, out.stdout, out.stderr)
        error = [line for line in out.stderr.splitlines() if line.startswith("error:")]
        assert len(error) == 1 and said in error[0], (bad.name, out.stderr)
    assert counts(target) == before
    assert eventually(lambda: (instance.health(target) or {}).get("healthy"), 180, every=2)
    out = cli("backup", "--name", TARGET, "--to", str(tmp_path / "nowhere"))
    assert out.returncode == 1 and "--to:" in out.stderr and "is not a folder" in out.stderr


def test_a_backup_to_cloud_storage_restores_the_same_and_bad_urls_are_one_line(machines, seeded, tmp_path,
                                                                                  monkeypatch):
    """`--to gs://BUCKET/PREFIX` uploads the same file (to gcp-storage-emulator here, through
    google-cloud-storage as against Google) and `--from gs://...` restores it; the temporary copies are
    gone after."""
    import urllib.request

    from support import storage_emulator

    with storage_emulator(tmp_path, "playground-test") as endpoint:
        monkeypatch.setenv("PLAYGROUND_STORAGE_ENDPOINT", endpoint)
        monkeypatch.setenv("PLAYGROUND_GOOGLE_ANONYMOUS", "1")
        req = urllib.request.Request(f"{endpoint}/storage/v1/b?project=playground-test", method="POST",
                                     data=json.dumps({"name": "team-backups"}).encode(),
                                     headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=10)
        out = cli("backup", "--name", SOURCE, "--to", "gs://team-backups/nightly", "--json")
        assert out.returncode == 0, out.stdout + out.stderr
        done = json.loads(out.stdout)
        assert done["path"].startswith(f"gs://team-backups/nightly/{SOURCE}-") and done["path"].endswith(".tar")
        with urllib.request.urlopen(f"{endpoint}/storage/v1/b/team-backups/o") as resp:
            stored = {o["name"]: int(o["size"]) for o in json.load(resp).get("items", [])}
        assert stored == {done["path"].removeprefix("gs://team-backups/"): done["bytes"]}
        assert not list(Path("/tmp").glob("playground-backup-*")), "the temporary copy was left behind"

        out = cli("restore", "--name", TARGET, "--from", done["path"], "--replace", "--json")
        assert out.returncode == 0, out.stdout + out.stderr
        result = json.loads(out.stdout)
        in_backup = {db: v["counts"] for db, v in done["manifest"]["databases"].items()}
        assert result["ok"] and result["found"] == in_backup
        for args, said in ((["backup", "--name", SOURCE, "--to", "gs://Bad_Bucket"], "--to: expected gs://BUCKET"),
                           (["backup", "--name", SOURCE, "--to", "gs://no-such-bucket/x"], "not found"),
                           (["restore", "--name", TARGET, "--from", "gs://team-backups/none.tar"], "not found")):
            out = cli(*args)
            errors = [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("error:")]
            assert out.returncode == 1 and len(errors) == 1 and said in errors[0], (args, out.stdout, out.stderr)
