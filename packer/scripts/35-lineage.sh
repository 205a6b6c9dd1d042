#!/usr/bin/env bash
# Airflow -> MLflow lineage: a listener plugin (Airflow 2.3+) with an on-disk spool.
set -euo pipefail
# The file provisioner put lib.sh beside the sources.
# shellcheck source=packer/scripts/lib.sh
source "${PLAYGROUND_SRC:-/tmp/playground-src}/lib.sh"

install -d -m 0755 /opt/playground/lineage
rm -rf /opt/playground/lineage/playground_lineage
cp -r "$PLAYGROUND_SRC/lineage/playground_lineage" /opt/playground/lineage/
find /opt/playground/lineage -name __pycache__ -prune -exec rm -rf {} +
# Importable by every Airflow process (scheduler, task runners) and by the replay unit.
site="$(/opt/airflow/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo /opt/playground/lineage > "$site/playground-lineage.pth"
install -d -o airflow -g airflow -m 0755 /var/lib/airflow/plugins /var/lib/airflow/lineage-spool
# Airflow 2.3+: a listener plugin. 2.0-2.2 (seed) have no listeners: a cluster policy wraps task callbacks.
if /opt/airflow/bin/python -c 'import airflow.listeners' 2>/dev/null; then
  rm -f /var/lib/airflow/config/airflow_local_settings.py
  install -o airflow -g airflow -m 0644 "$PLAYGROUND_SRC/lineage/playground_lineage_plugin.py" /var/lib/airflow/plugins/
  /opt/airflow/bin/python -c 'import playground_lineage.listener, playground_lineage.tasks'
else
  rm -f /var/lib/airflow/plugins/playground_lineage_plugin.py
  install -d -o airflow -g airflow -m 0755 /var/lib/airflow/config
  install -o airflow -g airflow -m 0644 "$PLAYGROUND_SRC/lineage/airflow_local_settings.py" /var/lib/airflow/config/
  /opt/airflow/bin/python -c 'import playground_lineage.policy, playground_lineage.tasks'
fi

# An MLflow 1.x client (the seed's mlflow-skinny 1.19) cannot resolve the 2.x server's mlflow-artifacts:/
# URIs nor reach its model registry (1.x calls the preview routes 2.0 removed): a plugin gives it both.
if [[ "$(/opt/airflow/bin/python -c 'import mlflow; print(mlflow.__version__.split(".")[0])')" == 1 ]]; then
  pip_install /opt/airflow --no-deps --no-build-isolation "$PLAYGROUND_SRC/lineage/mlflow1_compat"
  MLFLOW_TRACKING_URI=http://127.0.0.1:5000 /opt/airflow/bin/python - <<'PY'
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.tracking._model_registry.utils import _get_store
assert type(get_artifact_repository("mlflow-artifacts:/0/r/artifacts")).__name__ == "MlflowArtifactsRepository"
assert type(_get_store()).__name__ == "RegistryRestStore"
PY
fi
