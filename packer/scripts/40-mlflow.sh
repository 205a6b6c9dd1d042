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

# MLflow 3.x's home page shows "MLflow collects usage data to improve the product" whatever the server's
# telemetry setting: its TelemetryInfoAlert renders until the browser's localStorage says the user closed
# it (mlflow/mlflow#19351). A playground sends no usage data unless the team sets `telemetry = on`
# (README, Telemetry), so the notice would be false: its render is made to return nothing. Every chunk
# that holds the component must match once, so a rebuilt bundle of a newer MLflow fails the build
# rather than bringing the notice back unseen.
/opt/mlflow/bin/python - <<'PY'
import importlib.util, pathlib, re, sys

package = pathlib.Path(importlib.util.find_spec("mlflow").submodule_search_locations[0])
build = package / "server" / "js" / "build" / "static" / "js"
alert = re.compile(r'return (\w+)\?null:(\(0,\w+\.\w+\)\(\w+\.Alert,\{componentId:"mlflow\.home\.telemetry-alert")')
patched = 0
for chunk in sorted(build.glob("*.js")):
    text = chunk.read_text(encoding="utf-8")
    if '"mlflow.home.telemetry-alert"' not in text:
        continue
    new, count = alert.subn(r"return !0||\1?null:\2", text)
    if count != 1:
        sys.exit("40-mlflow: %s holds the telemetry notice in a shape this build does not know" % chunk.name)
    chunk.write_text(new, encoding="utf-8")
    patched += 1
print("40-mlflow: telemetry notice removed from %d chunk(s)" % patched)
PY
