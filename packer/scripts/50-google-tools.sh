#!/usr/bin/env bash
# gcsfuse and the Cloud SQL Auth Proxy v2: pinned and checksummed on GCE
# profiles (gcsfuse: a pinned .deb sha256, or else Google's signed apt
# repository at the pinned version); local profiles record them as absent
# (Google serves them only).
set -euo pipefail

record=/etc/playground/google-tools.json
if [[ "$PLAYGROUND_TARGET" == "local" ]]; then
  printf '{"gcsfuse": "absent", "cloud-sql-proxy": "absent"}\n' > "$record"
  exit 0
fi

fetch_checked() { # url sha256 dest
  if [[ -z "$2" ]]; then
    echo "50-google-tools: no sha256 pinned for $1 (set it in the profile)" >&2
    exit 1
  fi
  curl -fsSL --retry 3 -o "$3" "$1"
  echo "$2  $3" | sha256sum -c - >/dev/null || { echo "50-google-tools: checksum mismatch for $1" >&2; exit 1; }
}

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
if [[ -n "$GCSFUSE_SHA256" ]]; then
  # The release .deb, checked against the sha256 the profile (or -var gcsfuse_sha256) pins.
  fetch_checked "https://github.com/GoogleCloudPlatform/gcsfuse/releases/download/v${GCSFUSE_VERSION}/gcsfuse_${GCSFUSE_VERSION}_amd64.deb" \
    "$GCSFUSE_SHA256" "$tmp/gcsfuse.deb"
  apt-get install -y -q "$tmp/gcsfuse.deb"
else
  # Google's signed apt repository, the documented install: apt checks the package's sha256 against
  # the repository's signed index, and the version is pinned (a missing version fails the build).
  codename="$(sed -n 's/^VERSION_CODENAME=//p' /etc/os-release)"
  install -d -m 0755 /usr/share/keyrings
  curl -fsSL --retry 3 https://packages.cloud.google.com/apt/doc/apt-key.gpg \
    | gpg --dearmor --yes -o /usr/share/keyrings/gcsfuse.gpg
  echo "deb [signed-by=/usr/share/keyrings/gcsfuse.gpg] https://packages.cloud.google.com/apt gcsfuse-${codename} main" \
    > /etc/apt/sources.list.d/gcsfuse.list
  apt-get update -q
  apt-get install -y -q "gcsfuse=${GCSFUSE_VERSION}"
  apt-mark hold gcsfuse >/dev/null
fi
fetch_checked "https://storage.googleapis.com/cloud-sql-connectors/cloud-sql-proxy/v${CLOUDSQL_PROXY_VERSION}/cloud-sql-proxy.linux.amd64" \
  "$CLOUDSQL_PROXY_SHA256" "$tmp/cloud-sql-proxy"
install -m 0755 "$tmp/cloud-sql-proxy" /usr/local/bin/cloud-sql-proxy
printf '{"gcsfuse": "%s", "cloud-sql-proxy": "%s"}\n' "$GCSFUSE_VERSION" "$CLOUDSQL_PROXY_VERSION" > "$record"
