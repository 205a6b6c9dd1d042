#!/usr/bin/env bash
# Airflow's metadata database, created and migrated once here: a new machine's first boot copies the
# image's PostgreSQL cluster to its data volume and finds the schema at this image's revisions, instead of
# running the whole migration (agent/playground_agent/database.py). No user, connection or key is in it.
set -euo pipefail

/usr/local/bin/playground-agent bake-database
