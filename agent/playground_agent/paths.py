"""Where the agent reads and writes. PLAYGROUND_ROOT prefixes every path (tests)."""
from __future__ import annotations

import os

ROOT = os.environ.get("PLAYGROUND_ROOT", "")


def p(path: str) -> str:
    return ROOT + path


ETC = p("/etc/playground")
STATE_DIR = p("/var/lib/playground")
SECRETS_DIR = p("/var/lib/playground/secrets")
STATE_FILE = p("/var/lib/playground/state.json")
GOOD_CONFIG = p("/var/lib/playground/config.json")
RUN_DIR = p("/run/playground")
STATUS_FILE = p("/run/playground/status.json")
RETENTION_STATE = p("/var/lib/playground/retention.json")  # retention.py's last round
CONFIG_STATE = p("/var/lib/playground/config-state.json")  # the last apply: ok or the error (main.py)
AUTOSTOP_STATE = p("/run/playground/autostop.json")  # autostop.py's last check (root only: SSH peers)
NIGHTLY_STATE = p("/var/lib/playground/backup-nightly.json")  # nightly.py's last backup
SYSTEMD_DIR = p("/etc/systemd/system")
AIRFLOW_HOME = p("/var/lib/airflow")
LOCAL_DAGS = p("/var/lib/airflow/dags")
LINEAGE_SPOOL = p("/var/lib/airflow/lineage-spool")  # playground_lineage.spool.DEFAULT_DIR
BUCKET_MOUNT = p("/mnt/playground-bucket")
GCSFUSE = p("/usr/bin/gcsfuse")  # GCE images only; elsewhere the bucket is synced (bucket_sync.py)
AIRFLOW_VENV = "/opt/airflow"
MLFLOW_VENV = "/opt/mlflow"
MANIFEST = p("/etc/playground/image-manifest.json")
