#!/usr/bin/env bash
# The agent, the units, and the manifest of what this image holds.
set -euo pipefail

install -d -m 0755 /opt/playground/agent
rm -rf /opt/playground/agent/playground_agent
cp -r "$PLAYGROUND_SRC/agent/playground_agent" /opt/playground/agent/
find /opt/playground/agent -name __pycache__ -prune -exec rm -rf {} +
cat > /usr/local/bin/playground-agent <<WRAP
#!/bin/sh
# The playground boot agent (standard-library Python on the image's interpreter).
PYTHONPATH=/opt/playground/agent exec /usr/bin/$PYTHON -m playground_agent "\$@"
WRAP
chmod 0755 /usr/local/bin/playground-agent

for unit in "$PLAYGROUND_SRC"/units/*; do
  install -m 0644 "$unit" /etc/systemd/system/
done
# systemd before 244 refuses to load a Type=oneshot unit with Restart= other than no (244 added it, with
# its TEST-41-ONESHOT-RESTART): the seed's Ubuntu 18.04 has 237. There the agent's own 10 minutes of
# patience is all; the next boot applies again.
systemd_version="$(systemctl --version | awk 'NR == 1 { print $2 }')"
if (( systemd_version < 244 )); then
  sed -i -e '/^Restart=/d' -e '/^RestartSec=/d' -e '/^RestartPreventExitStatus=/d' \
    /etc/systemd/system/playground-agent.service
fi
systemctl enable playground-data.service playground-agent.service playground-ssh-hostkeys.service ssh.service >/dev/null 2>&1
systemd-analyze verify /etc/systemd/system/playground.target /etc/systemd/system/playground-*.service \
  /etc/systemd/system/airflow-*.service /etc/systemd/system/mlflow-server.service 2>&1 \
  | grep -v -e 'Failed to determine' -e 'is not executable' -e 'ConditionPathExists' || true

pyver="$("/usr/bin/$PYTHON" -c 'import platform; print(platform.python_version())')"
pgver="$(psql --version | awk '{print $3}')"
osname="$(. /etc/os-release && echo "$PRETTY_NAME")"
"/usr/bin/$PYTHON" - "$pyver" "$pgver" "$osname" <<'PY'
import json, sys, time, importlib.metadata as m
def version(venv, dist):
    import subprocess
    return subprocess.run([venv + "/bin/python", "-c", "import importlib.metadata as m; print(m.version(%r))" % dist],
                          capture_output=True, text=True).stdout.strip()
tools = json.load(open("/etc/playground/google-tools.json"))
manifest = {
    "profile": __import__("os").environ["PLAYGROUND_PROFILE"],
    "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    "os": sys.argv[3],
    "components": {
        "python": sys.argv[1],
        "postgresql": sys.argv[2],
        "airflow": version("/opt/airflow", "apache-airflow"),
        "mlflow-skinny": version("/opt/airflow", "mlflow-skinny"),
        "mlflow": version("/opt/mlflow", "mlflow"),
        "gcsfuse": tools["gcsfuse"],
        "cloud-sql-proxy": tools["cloud-sql-proxy"],
    },
}
with open("/etc/playground/image-manifest.json", "w") as fh:
    json.dump(manifest, fh, indent=2, sort_keys=True)
    fh.write("\n")
PY
chmod 0644 /etc/playground/image-manifest.json
