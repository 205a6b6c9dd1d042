"""What differs between the Airflow versions the profiles bake: one table, used by render and bootstrap.

The seed profile runs Airflow 2.0.2, local and current 2.11.2; anything from 2.0 on is handled. Each row
says from which version a behaviour holds, and the value before and from then. Sources: Airflow's own
configuration reference (`airflow/config_templates/config.yml` of each release; the unit tests check every
key the agent renders against the locked wheel's copy) and its release notes.
"""
from __future__ import annotations

import json
import re
from typing import Any, Dict, List, NamedTuple, Tuple

from . import paths

Version = Tuple[int, int, int]


class Change(NamedTuple):
    since: Version
    before: Any
    after: Any
    why: str


CHANGES: Dict[str, Change] = {
    # [database] was split out of [core] in 2.3; before it, sql_alchemy_conn lives in [core].
    "sql_alchemy_conn": Change((2, 3, 0), "AIRFLOW__CORE__SQL_ALCHEMY_CONN", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
                               "the metadata database's URI"),
    # `airflow db migrate` arrived in 2.7 (`db upgrade` deprecated then); 2.0-2.6 have only `db upgrade`.
    "migrate": Change((2, 7, 0), ["db", "upgrade"], ["db", "migrate"], "the schema migration command"),
    # [api] auth_backends (a list, 2.3); 2.0-2.2 read auth_backend, whose default denies every API call.
    "auth_backends": Change((2, 3, 0), ("AIRFLOW__API__AUTH_BACKEND", "airflow.api.auth.backend.basic_auth"),
                            ("AIRFLOW__API__AUTH_BACKENDS",
                             "airflow.api.auth.backend.basic_auth,airflow.api.auth.backend.session"),
                            "REST API authentication: basic auth for scripts"),
    # [scheduler] processor_poll_interval was renamed scheduler_idle_sleep_time in 2.2.
    "idle_sleep": Change((2, 2, 0), "AIRFLOW__SCHEDULER__PROCESSOR_POLL_INTERVAL",
                         "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME", "how soon an idle scheduler looks again"),
    # [metrics] timer_unit_consistency (2.11): Airflow 2.11 warns in every process until it is set.
    "timer_unit_consistency": Change((2, 11, 0), False, True, "silence 2.11's RemovedInAirflow3Warning"),
    # The REST API scripts use (airflow_api.py): v1 with basic auth; v2 with a JWT from FAB's /auth/token.
    "rest_api": Change((3, 0, 0), ("/api/v1", "basic"), ("/api/v2", "jwt"), "the REST API's root and its auth"),
    # Listener plugins (2.3); before, the lineage hooks ride on a cluster policy's task callbacks.
    "lineage_hook": Change((2, 3, 0), "cluster-policy", "listener", "how lineage sees task instances"),
    # The triggerer (deferrable operators) exists from 2.2.
    "triggerer": Change((2, 2, 0), False, True, "airflow triggerer for deferrable tasks"),
    # `airflow db clean` (purge old rows) came in 2.3; its --skip-archive (no _airflow_deleted__ copies) in 2.6.
    "db_clean": Change((2, 3, 0), False, True, "retention of Airflow's run history"),
    "db_clean_skip_archive": Change((2, 6, 0), False, True, "purged rows not kept in archive tables"),
}


def parse(version: str) -> Version:
    """'2.0.2' -> (2, 0, 2); pre-release tails ('2.11.0rc1') count as the release."""
    found = re.match(r"^(\d+)\.(\d+)(?:\.(\d+))?", version.strip())
    if not found:
        raise ValueError("not an Airflow version: %r" % version)
    return int(found.group(1)), int(found.group(2)), int(found.group(3) or 0)


# When the image's manifest does not say (a tree under test, an image before manifests): the newest baked.
NEWEST = "2.11.2"


class Airflow:
    """The behaviours of one Airflow version, from the table."""

    def __init__(self, version: str = "") -> None:
        self.version = version or NEWEST
        self._v = parse(self.version)

    def get(self, name: str) -> Any:
        change = CHANGES[name]
        return change.after if self._v >= change.since else change.before

    @property
    def sql_alchemy_conn_key(self) -> str:
        return str(self.get("sql_alchemy_conn"))

    @property
    def migrate_args(self) -> List[str]:
        return list(self.get("migrate"))

    @property
    def auth_backends(self) -> Tuple[str, str]:
        key, value = self.get("auth_backends")
        return str(key), str(value)

    @property
    def idle_sleep_key(self) -> str:
        return str(self.get("idle_sleep"))

    @property
    def has_triggerer(self) -> bool:
        return bool(self.get("triggerer"))

    @property
    def has_db_clean(self) -> bool:
        return bool(self.get("db_clean"))

    @property
    def db_clean_skips_archive(self) -> bool:
        return bool(self.get("db_clean_skip_archive"))

    @property
    def lineage_hook(self) -> str:
        return str(self.get("lineage_hook"))


def installed_version() -> str:
    """The image's Airflow version, from its manifest ("" when there is none)."""
    try:
        with open(paths.MANIFEST, encoding="utf-8") as fh:
            return str(json.load(fh).get("components", {}).get("airflow", ""))
    except (OSError, ValueError):
        return ""


def installed() -> Airflow:
    return Airflow(installed_version())
