#!/usr/bin/env bash
# Nothing per-instance or secret leaves the build: the agent makes it at boot.
set -euo pipefail

if [[ -z "${BUILD_PIP_CACHE_DIR:-}" ]]; then
  apt-get clean
fi
rm -rf /var/lib/apt/lists/* /root/.cache /var/lib/airflow/.cache /var/lib/mlflow/.cache
# apt's package caches (about 77 MB), whether or not the archives above were kept for the next build.
rm -f /var/cache/apt/*.bin
# What build-time commands left behind: AIRFLOW_HOME defaulting to root's home.
rm -rf /root/airflow
# A private key baked into an image is the same in every machine: ssl-cert's snakeoil pair goes
# (PostgreSQL runs with ssl = off, 20-postgresql.sh).
rm -f /etc/ssl/private/ssl-cert-snakeoil.key /etc/ssl/certs/ssl-cert-snakeoil.pem
rm -f /root/.bash_history /home/*/.bash_history /root/.python_history
rm -rf /var/lib/playground/secrets/* /var/lib/playground/state.json /var/lib/playground/config*.json
rm -f /etc/playground/*.env
rm -rf /tmp/playground-src
# Bytecode is compiled here, once, not left out: no service may write under /opt (root's, and
# ProtectSystem), so without it every start of the webserver, a scheduler, MLflow or the agent compiled
# each module it imports from source, and MLflow came back from a crash in 19 s instead of under 15.
# checked-hash, not timestamps: the .pyc stays valid whatever the copies of the rootfs do to mtimes
# (PEP 552); what pip compiled with timestamps is removed first. A file that is not Python for this
# interpreter (templates, other versions' test data) is skipped, as pip skips it.
find /opt/airflow /opt/mlflow /opt/playground -name __pycache__ -prune -exec rm -rf {} + 2>/dev/null || true
for venv in /opt/airflow /opt/mlflow; do
  "$venv/bin/python" -m compileall -q -j 0 --invalidation-mode checked-hash "$venv" >/dev/null || true
done
"/usr/bin/$PYTHON" -m compileall -q --invalidation-mode checked-hash /opt/playground/agent >/dev/null
/opt/airflow/bin/python -m compileall -q --invalidation-mode checked-hash /opt/playground/lineage >/dev/null
# Host keys and machine-id are per instance (GCE's guest agent or our
# playground-ssh-hostkeys.service make new ones at first boot).
rm -f /etc/ssh/ssh_host_*
truncate -s 0 /etc/machine-id
# The build machine's name and resolver are not the instance's: GCE's DHCP and
# guest agent, or systemd-nspawn, provide them at boot.
rm -f /etc/hostname
: > /etc/resolv.conf
rm -f /var/lib/dbus/machine-id
journalctl --rotate >/dev/null 2>&1 || true
rm -rf /var/log/journal/*/* /var/log/*.log /var/log/apt/* 2>/dev/null || true
# The build's logins and boots, and debconf's backups of its answers.
truncate -s 0 /var/log/wtmp /var/log/btmp /var/log/lastlog 2>/dev/null || true
rm -f /var/cache/debconf/*-old
rm -rf /tmp/* /var/tmp/* 2>/dev/null || true
