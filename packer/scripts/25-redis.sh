#!/usr/bin/env bash
# Redis, the Celery broker of a playground with worker machines (airflow-executor=CeleryExecutor), and socat,
# which carries MLflow's port between the main machine and its workers. Neither runs unless the agent asks:
# Debian's own redis-server.service is masked; playground-redis.service runs it on the agent's config.
set -euo pipefail
# The file provisioner put lib.sh beside the sources.
# shellcheck source=packer/scripts/lib.sh
source "${PLAYGROUND_SRC:-/tmp/playground-src}/lib.sh"

apt_install redis-server socat
systemctl disable redis-server.service >/dev/null 2>&1 || true
systemctl mask redis-server.service >/dev/null 2>&1 || true
# Debian's config listens on 127.0.0.1 with no password: ours (written by the agent, with a generated
# password) is the only one any unit reads.
install -d -o redis -g redis -m 0750 /var/lib/redis
