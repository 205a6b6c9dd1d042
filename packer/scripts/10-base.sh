#!/usr/bin/env bash
# Base packages, the service users and their folders.
set -euo pipefail
# The file provisioner put lib.sh beside the sources.
# shellcheck source=packer/scripts/lib.sh
source "${PLAYGROUND_SRC:-/tmp/playground-src}/lib.sh"

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086 # PYTHON_PACKAGES is a list
apt_install $PYTHON_PACKAGES ca-certificates openssh-server sudo tzdata curl \
  libpq5 procps iproute2 less libnss-myhostname

for user in airflow mlflow; do
  if ! id "$user" >/dev/null 2>&1; then
    useradd --system --create-home --home-dir "/var/lib/$user" --shell /usr/sbin/nologin "$user"
  fi
done

# Users the agent creates from the `ssh-keys` attribute (images without
# Google's guest agent) join this group, as the guest agent's google-sudoers.
getent group playground-sudoers >/dev/null || groupadd --system playground-sudoers
echo '%playground-sudoers ALL=(ALL:ALL) NOPASSWD:ALL' > /etc/sudoers.d/playground-sudoers
chmod 0440 /etc/sudoers.d/playground-sudoers

install -d -o root -g airflow -m 0750 /etc/playground
install -d -o root -g root -m 0755 /var/lib/playground
install -d -o root -g root -m 0700 /var/lib/playground/secrets
install -d -o airflow -g airflow -m 0755 /var/lib/airflow /var/lib/airflow/dags /var/log/airflow
# The artifact folder the original set-up had to create by hand.
install -d -o mlflow -g mlflow -m 0755 /var/lib/playground/mlflow-artifacts
install -d -o airflow -g airflow -m 0755 /mnt/playground-bucket

# The journal is capped (issue 16): journald's own default is 10% of the filesystem up to 4 GiB
# (journald.conf(5), SystemMaxUse=), 2 GiB of a 20 GB boot disk; 500 MB holds weeks of the services' lines.
install -d -m 0755 /etc/systemd/journald.conf.d
cat > /etc/systemd/journald.conf.d/playground.conf <<'CONF'
[Journal]
SystemMaxUse=500M
RuntimeMaxUse=100M
CONF

# Nothing phones home (README, Telemetry). Ubuntu's images on GCE fetch "news" for the login banner and
# for apt from motd.ubuntu.com, sending the release, the CPU and the uptime in the request
# (/etc/default/motd-news documents ENABLED=0; `pro config set apt_news=false` is the Pro client's own
# switch); popularity-contest would report the installed packages. Debian's minbase has none of these.
if [[ -f /etc/default/motd-news ]]; then
  sed -i 's/^ENABLED=.*/ENABLED=0/' /etc/default/motd-news
  systemctl mask motd-news.timer >/dev/null 2>&1 || true
fi
if command -v pro >/dev/null 2>&1; then
  pro config set apt_news=false
fi
if dpkg-query -W -f='${Status}' popularity-contest 2>/dev/null | grep -q "ok installed"; then
  apt-get purge -y -q popularity-contest
fi
