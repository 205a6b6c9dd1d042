"""Config -> env files and unit drop-ins, written atomically; unchanged files are left alone."""
from __future__ import annotations

import json
import os
import subprocess
from typing import Dict, Optional

from . import cluster, paths
from .config import Config
from .files import FileSpec, env_text
from .versions import Airflow, installed


def no_telemetry(cfg: Config) -> Dict[str, str]:
    """Telemetry off unless the team turns it on (attribute telemetry): MLflow 3.2+ sends usage data from
    its server, its UI (in the user's own browser) and its clients; MLFLOW_DISABLE_TELEMETRY stops all three
    (https://mlflow.org/docs/latest/community/usage-tracking). DO_NOT_TRACK is the common opt-out that MLflow
    and other tools honour; SCARF_ANALYTICS is Airflow's (2.10's usage data collection)."""
    if cfg.telemetry == "on":
        return {}
    return {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "SCARF_ANALYTICS": "false"}


def dags_folder(cfg: Config) -> str:
    return paths.BUCKET_MOUNT + "/dags" if cfg.dags_bucket else paths.LOCAL_DAGS


def emulated() -> bool:
    """A VM of software emulation: QEMU's TCG, where systemd-detect-virt says "qemu" (under KVM it says "kvm",
    on GCE "google"; in a container --vm says "none") and Python runs about 12x slower than on hardware."""
    try:
        proc = subprocess.run(["systemd-detect-virt", "--vm"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.stdout.strip() == "qemu"


def airflow_env(cfg: Config, cpus: int, airflow: Airflow, slow: bool = False) -> Dict[str, str]:
    """Airflow's settings as environment variables, with the section and key names of that version.
    slow: software emulation (emulated())."""
    auth_key, auth_value = airflow.auth_backends
    env = {
        "AIRFLOW_HOME": "/var/lib/airflow",
        "AIRFLOW__CORE__DAGS_FOLDER": dags_folder(cfg).replace(paths.ROOT, "", 1),
        "AIRFLOW__CORE__EXECUTOR": cfg.airflow_executor,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DEFAULT_TIMEZONE": cfg.timezone,
        "AIRFLOW__CORE__PARALLELISM": str(cfg.airflow_parallelism),
        airflow.sql_alchemy_conn_key: "postgresql+psycopg2://airflow@/airflow?host=/var/run/postgresql",
        "AIRFLOW__WEBSERVER__WEB_SERVER_HOST": "127.0.0.1",
        "AIRFLOW__WEBSERVER__WEB_SERVER_PORT": str(cfg.airflow_port),
        # Two gunicorn workers are plenty for one team and keep idle memory low.
        "AIRFLOW__WEBSERVER__WORKERS": "2",
        "AIRFLOW__WEBSERVER__EXPOSE_CONFIG": "False",
        auth_key: auth_value,
        "AIRFLOW__SCHEDULER__PARSING_PROCESSES": str(max(1, min(cpus, 2))),
        # A new DAG file shows up within 30 s, not Airflow's 5 minutes: a playground is where DAGs are written.
        "AIRFLOW__SCHEDULER__DAG_DIR_LIST_INTERVAL": "30",
        # The scheduler looks again 0.2 s after an idle loop, not 1 s: freed executor slots are refilled
        # sooner (60 independent tasks: 15.6 s instead of 24 s here) for about 2.5% more of 2 idle cores.
        airflow.idle_sleep_key: "0.2",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": "/var/log/airflow",
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:%d" % cfg.mlflow_port,
        # The instance's own data warehouse for pipelines (the example DAGs' tables): a database on the
        # local PostgreSQL owned by airflow, reached over the socket with peer authentication (no password).
        "AIRFLOW_CONN_WAREHOUSE": "postgres://airflow@%2Fvar%2Frun%2Fpostgresql/warehouse",
        "PLAYGROUND_LINEAGE": cfg.lineage,
        "PLAYGROUND_PROJECT": cfg.project_id,
        "GOOGLE_CLOUD_PROJECT": cfg.project_id,
    }
    env.update(no_telemetry(cfg))  # tasks use MLflow's client
    if cfg.airflow_executor == "CeleryExecutor":
        env["AIRFLOW__CELERY__WORKER_CONCURRENCY"] = str(cfg.worker_concurrency)
        # A worker machine that dies leaves its running tasks without a heartbeat (every 5 s): failed and
        # retried per their retries after 90 s, not Airflow's 5 minutes.
        env["AIRFLOW__SCHEDULER__SCHEDULER_ZOMBIE_TASK_THRESHOLD"] = "90"
        # The tasks it had taken from the broker but not yet started stay queued: Airflow revokes them and
        # queues them again (twice, then fails them) after task_queued_timeout, checked every 30 s instead
        # of 120. 300 s, not Airflow's 600: a lost task is back within about 5.5 minutes. A task waits in the
        # broker for a free slot only when airflow-parallelism exceeds the live workers' slots, and the
        # launcher keeps it at their slots (providers/local.py). The visibility timeout stays Airflow's
        # (84600 s): a shorter one hands a task that runs longer a second time, and that second `airflow
        # tasks run` records its own hostname on the task instance, which makes the first one kill its task
        # ("Hostname of job runner does not match", airflow/jobs/local_task_job_runner.py).
        env["AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT"] = "300"
        env["AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL"] = "30"
    if airflow.get("timer_unit_consistency"):
        # Airflow 2.11 warns in every process until this is set (Airflow 3's behaviour: timers in ms). No
        # metrics are sent, so it changes nothing else.
        env["AIRFLOW__METRICS__TIMER_UNIT_CONSISTENCY"] = "True"
    if slow:
        # Under software emulation the webserver's gunicorn master did not answer within Airflow's 120 s
        # (measured: the webserver gave up and restarted in a loop), so both waits are minutes there.
        env["AIRFLOW__WEBSERVER__WEB_SERVER_MASTER_TIMEOUT"] = "900"
        env["AIRFLOW__WEBSERVER__WEB_SERVER_WORKER_TIMEOUT"] = "600"
    if cfg.airflow_secrets == "secret-manager":
        # The Google provider's backend: connection ID -> secret airflow-connections-ID (a URI or, provider
        # 10+, JSON), variable KEY -> airflow-variables-KEY, in the instance's project, with the VM's
        # credentials; a miss falls through to the environment and the metastore (airflow_settings.yaml).
        # https://airflow.apache.org/docs/apache-airflow-providers-google/stable/secrets-backends/google-cloud-secret-manager-backend.html
        # The VM needs the cloud-platform scope, which launch gives it (Secret Manager accepts no other).
        env["AIRFLOW__SECRETS__BACKEND"] = ("airflow.providers.google.cloud.secrets.secret_manager."
                                            "CloudSecretManagerBackend")
        env["AIRFLOW__SECRETS__BACKEND_KWARGS"] = json.dumps({
            "connections_prefix": "airflow-connections", "variables_prefix": "airflow-variables",
            "project_id": cfg.project_id}, sort_keys=True)
    if cfg.logs_bucket:
        env["AIRFLOW__LOGGING__REMOTE_LOGGING"] = "True"
        env["AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER"] = "gs://%s/logs" % cfg.logs_bucket
    return env


def mlflow_env(cfg: Config) -> Dict[str, str]:
    if cfg.mlflow_backend == "cloudsql":
        # Without the password: the full URI is in the root-only secrets/mlflow.env (secrets.py),
        # which the unit reads after this file.
        backend = "mysql+pymysql://%s@127.0.0.1:%d/%s" % (
            cfg.mlflow_db_user, cfg.cloudsql_proxy_port, cfg.mlflow_db_name)
    else:
        backend = "postgresql+psycopg2://%s@/%s?host=/var/run/postgresql" % (cfg.mlflow_db_user, cfg.mlflow_db_name)
    return dict(no_telemetry(cfg), **{
        "MLFLOW_BACKEND_STORE_URI": backend,
        "MLFLOW_ARTIFACTS_DESTINATION": cfg.artifacts_root,
        "MLFLOW_HOST": "127.0.0.1",
        "MLFLOW_PORT": str(cfg.mlflow_port),
        # MLflow 3's server job runner (GenAI evaluation jobs) idles at ~1.2 GiB in
        # seven huey consumers; the playground's tracking and registry do not use it.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "GOOGLE_CLOUD_PROJECT": cfg.project_id,
    })


def render(cfg: Config, cpus: int = 0, airflow: Optional[Airflow] = None,
           slow: Optional[bool] = None) -> Dict[str, FileSpec]:
    """Every file the config makes; airflow: the image's version (default: read from its manifest); slow:
    software emulation (default: detected)."""
    cpus = cpus or (os.cpu_count() or 1)
    airflow = airflow or installed()
    slow = emulated() if slow is None else slow
    files = {
        paths.ETC + "/airflow.env": FileSpec(env_text(airflow_env(cfg, cpus, airflow, slow)), 0o640, "airflow"),
        paths.ETC + "/mlflow.env": FileSpec(env_text(mlflow_env(cfg)), 0o640, "airflow"),
        paths.ETC + "/cloudsql-proxy.env": FileSpec(env_text({
            "CLOUDSQL_INSTANCE": cfg.cloudsql_instance,
            "CLOUDSQL_PROXY_PORT": str(cfg.cloudsql_proxy_port),
        }), 0o640, "airflow"),
        paths.ETC + "/bucket-mount.env": FileSpec(env_text({
            "BUCKET": cfg.dags_bucket,
            "MOUNT_POINT": paths.BUCKET_MOUNT.replace(paths.ROOT, "", 1),
        }), 0o640, "airflow"),
    }
    wants = ["airflow-scheduler@%d.service" % i for i in range(1, cfg.airflow_schedulers + 1)]
    if airflow.has_triggerer:
        wants.append("airflow-triggerer.service")  # deferrable tasks: without it they stay deferred
    if cfg.dags_bucket:
        # One of the two runs: the mount where the image has gcsfuse, the sync where it has not.
        wants += ["playground-bucket-mount.service", "playground-bucket-sync.service"]
    if cfg.cloudsql_instance:
        wants.append("cloud-sql-proxy.service")
    if cfg.backup_to:
        wants.append("playground-backup.timer")
    wants += cluster.units(cfg)  # a main with workers: the broker and MLflow's forward
    files[paths.SYSTEMD_DIR + "/playground.target.d/10-agent.conf"] = FileSpec(
        "# written by playground-agent: the units this instance's settings ask for\n[Unit]\n"
        + "".join("Wants=%s\n" % w for w in wants), 0o644, "")
    # The timer's calendar, always (its unit's own default is the same as the attribute's).
    files[paths.SYSTEMD_DIR + "/playground-backup.timer.d/10-agent.conf"] = FileSpec(
        "# written by playground-agent: attribute backup-at\n[Timer]\nOnCalendar=\nOnCalendar=%s\n" % cfg.backup_at,
        0o644, "")
    return files
