#!/usr/bin/env bash
# Airflow in its own venv under /opt/airflow, pinned by the profile's lock file.
set -euo pipefail
# The file provisioner put lib.sh beside the sources.
# shellcheck source=packer/scripts/lib.sh
source "${PLAYGROUND_SRC:-/tmp/playground-src}/lib.sh"

make_venv /opt/airflow
pip_install /opt/airflow --upgrade pip setuptools wheel
pip_install /opt/airflow --no-deps -r "$PLAYGROUND_SRC/locks/airflow.txt"
installed="$(/opt/airflow/bin/python -c 'import importlib.metadata as m; print(m.version("apache-airflow"))')"
if [[ "$installed" != "$AIRFLOW_VERSION" ]]; then
  echo "30-airflow: lock installs Airflow $installed, profile asks for $AIRFLOW_VERSION" >&2
  exit 1
fi
# The lock holds the Google provider with only what its GCS task log handler imports (logs-bucket):
# prove that closure is whole here rather than at the first remote log write on a user's machine.
check_home="$(mktemp -d)"
if ! AIRFLOW_HOME="$check_home" /opt/airflow/bin/python -c \
    'from airflow.providers.google.cloud.log.gcs_task_handler import GCSTaskHandler' 2>"$check_home/err"; then
  echo "30-airflow: the lock does not carry what Airflow's GCS task log handler imports:" >&2
  tail -3 "$check_home/err" >&2
  exit 1
fi
# Where the lock carries the Celery provider (worker machines, issue 17), its executor must import too.
if grep -q '^apache-airflow-providers-celery==' "$PLAYGROUND_SRC/locks/airflow.txt" && \
    ! AIRFLOW_HOME="$check_home" /opt/airflow/bin/python -c \
    'from airflow.providers.celery.executors.celery_executor import CeleryExecutor; import kombu.transport.redis, redis' \
    2>"$check_home/err"; then
  echo "30-airflow: the lock does not carry what Airflow's CeleryExecutor imports:" >&2
  tail -3 "$check_home/err" >&2
  exit 1
fi
rm -rf "$check_home"

# Airflow 2.1+ schedulers serve task logs on [::]:8793 with no bind-address
# setting. With LocalExecutor the webserver reads the logs from disk, so the
# log server is only an open port: skip it (2.0 never starts one).
if [[ "$(printf '%s\n' 2.1.0 "$AIRFLOW_VERSION" | sort -V | head -1)" == 2.1.0 ]]; then
  echo 'AIRFLOW_SCHEDULER_FLAGS=--skip-serve-logs' > /etc/default/airflow-scheduler
else
  echo 'AIRFLOW_SCHEDULER_FLAGS=' > /etc/default/airflow-scheduler
fi
# The triggerer (2.2+) gained the same log server in 2.6 (triggerer_log_server_port, 8794): skip it too,
# the webserver reads trigger logs from the same disk.
if [[ "$(printf '%s\n' 2.6.0 "$AIRFLOW_VERSION" | sort -V | head -1)" == 2.6.0 ]]; then
  echo 'AIRFLOW_TRIGGERER_FLAGS=--skip-serve-logs' > /etc/default/airflow-triggerer
else
  echo 'AIRFLOW_TRIGGERER_FLAGS=' > /etc/default/airflow-triggerer
fi

# `airflow` for people on the machine: runs as the airflow user with the
# instance's config and secrets, the way the services see them.
cat > /usr/local/bin/airflow <<'WRAP'
#!/bin/sh
# Run the Airflow CLI as the airflow user with the services' environment.
set -a
. /etc/playground/airflow.env
. /var/lib/playground/secrets/airflow.env
[ -r /var/lib/playground/secrets/celery.env ] && . /var/lib/playground/secrets/celery.env
set +a
cd /var/lib/airflow || exit 1
exec runuser -u airflow -- /opt/airflow/bin/airflow "$@"
WRAP
chmod 0755 /usr/local/bin/airflow
install -d -o airflow -g airflow -m 0755 /var/lib/airflow/dags
cp -r "$PLAYGROUND_SRC"/dags/. /var/lib/airflow/dags/
chown -R airflow:airflow /var/lib/airflow/dags
