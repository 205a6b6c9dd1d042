#!/usr/bin/env bash
# PostgreSQL for Airflow's (and by default MLflow's) metadata: socket and 127.0.0.1 only.
set -euo pipefail
# The file provisioner put lib.sh beside the sources.
# shellcheck source=packer/scripts/lib.sh
source "${PLAYGROUND_SRC:-/tmp/playground-src}/lib.sh"

apt_install postgresql postgresql-client
# The profile says which major this release installs (a label on GCE images, read by `playground upgrade`).
installed_major="$(psql --version | awk '{print $3}' | cut -d. -f1)"
if [[ "$installed_major" != "$PLAYGROUND_POSTGRESQL_MAJOR" ]]; then
  echo "20-postgresql: this release installed PostgreSQL $installed_major, the profile says" \
    "postgresql_major = \"$PLAYGROUND_POSTGRESQL_MAJOR\": correct the profile" >&2
  exit 1
fi
for confd in /etc/postgresql/*/main/conf.d; do
  cat > "$confd/10-playground.conf" <<'CONF'
# playground: local only, sized for a 2-8 vCPU machine running LocalExecutor.
listen_addresses = '127.0.0.1'
max_connections = 200
shared_buffers = 256MB
effective_cache_size = 1GB
work_mem = 8MB
synchronous_commit = off
# No TLS: clients come over the socket and 127.0.0.1 only, where it protects nothing, and Debian's
# default certificate is the snakeoil key, the same in every machine made from the image (removed
# by 90-hygiene.sh).
ssl = off
CONF
done
# Airflow and MLflow connect over the socket as their own OS users (peer auth):
# no database password exists to leak. Roles are created by the agent.
systemctl enable postgresql >/dev/null 2>&1 || true
# Debian's postgresql.service is a oneshot wrapper that stays "active" whatever the cluster does, and the
# cluster unit (postgresql@VERSION-main) has no Restart=: a postmaster killed stayed down. Restart the
# cluster when it dies; the agent's health checks the cluster unit and the postmaster's socket.
install -d /etc/systemd/system/postgresql@.service.d
cat > /etc/systemd/system/postgresql@.service.d/50-playground-restart.conf <<'UNIT'
# The clusters live on the data volume (playground-data.service binds it over /var/lib/postgresql): never
# start on the image's own folder, nor on a volume that service refused.
[Unit]
Requires=playground-data.service
After=playground-data.service

[Service]
Restart=on-failure
RestartSec=2
UNIT
