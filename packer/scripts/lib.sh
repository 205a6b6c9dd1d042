#!/usr/bin/env bash
# Shared helpers for the numbered provisioning scripts (sourced, not run).

# pip with the build's inputs: a cache that outlives the build (local builds
# mount it) and the host's CA bundle and index, none of which stay in the image.
pip_install() {
  local venv="$1"
  shift
  local args=(--no-input --disable-pip-version-check)
  if [[ -n "${BUILD_PIP_CACHE_DIR:-}" ]]; then args+=(--cache-dir "$BUILD_PIP_CACHE_DIR"); else args+=(--no-cache-dir); fi
  if [[ -n "${BUILD_CA_BUNDLE:-}" ]]; then args+=(--cert "$BUILD_CA_BUNDLE"); fi
  if [[ -n "${BUILD_PIP_INDEX_URL:-}" ]]; then args+=(--index-url "$BUILD_PIP_INDEX_URL"); fi
  PIP_CONFIG_FILE=/dev/null "$venv/bin/pip" install "${args[@]}" "$@"
}

apt_install() {
  apt-get install -y -q --no-install-recommends "$@"
}

# A venv made with the profile's Python, once (idempotent).
make_venv() {
  local venv="$1"
  if [[ ! -x "$venv/bin/python" ]]; then
    "$PYTHON" -m venv "$venv"
  fi
}
