#!/usr/bin/env bash
# The MLflow server in its own venv (its pins conflict with Airflow's over time).
set -euo pipefail
# The file provisioner put lib.sh beside the sources.
# shellcheck source=packer/scripts/lib.sh
source "${PLAYGROUND_SRC:-/tmp/playground-src}/lib.sh"

make_venv /opt/mlflow
pip_install /opt/mlflow --upgrade pip setuptools wheel
pip_install /opt/mlflow --no-deps -r "$PLAYGROUND_SRC/locks/mlflow.txt"
installed="$(/opt/mlflow/bin/python -c 'import importlib.metadata as m; print(m.version("mlflow"))')"
if [[ "$installed" != "$MLFLOW_VERSION" ]]; then
  echo "40-mlflow: lock installs MLflow $installed, profile asks for $MLFLOW_VERSION" >&2
  exit 1
fi
