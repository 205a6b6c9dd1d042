"""Table metadata for lineage: row count, size, created and modified time, where the source can say.

PostgreSQL through the Airflow connection the Table names as its cluster (the
local instance's own database works); BigQuery when the Google provider is
installed. Each is best effort and bounded by a statement timeout.
"""
from __future__ import annotations

from typing import Any, Dict


def collect(table: Dict[str, str]) -> Dict[str, Any]:
    if table["source_type"] == "postgres":
        return postgres(table)
    if table["source_type"] == "bigquery":
        return bigquery(table)
    return {}


def postgres(table: Dict[str, str]) -> Dict[str, Any]:
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    schema, _, name = table["name"].rpartition(".")
    hook = PostgresHook(postgres_conn_id=table["conn_id"] or "postgres_default")
    with hook.get_conn() as conn, conn.cursor() as cur:
        cur.execute("SET LOCAL statement_timeout = 500")
        relation = '"%s"."%s"' % ((schema or "public").replace('"', '""'), name.replace('"', '""'))
        cur.execute("SELECT count(*), pg_total_relation_size(%s::regclass) FROM " + relation, (relation,))
        rows, size = cur.fetchone()
        # PostgreSQL keeps no creation time; the last write is the newest of the statistics' timestamps.
        cur.execute("SELECT greatest(last_vacuum, last_autovacuum, last_analyze, last_autoanalyze) "
                    "FROM pg_stat_user_tables WHERE relid = %s::regclass", (relation,))
        found = cur.fetchone()
    facts: Dict[str, Any] = {"rowCount": int(rows), "size": int(size)}
    if found and found[0] is not None:
        facts["modifiedAt"] = found[0].isoformat()
    return facts


def bigquery(table: Dict[str, str]) -> Dict[str, Any]:
    from airflow.providers.google.cloud.hooks.bigquery import BigQueryHook

    got = BigQueryHook(gcp_conn_id=table["conn_id"] or "google_cloud_default").get_client().get_table(table["name"])
    return {"rowCount": int(got.num_rows or 0), "size": int(got.num_bytes or 0),
            "createdAt": got.created.isoformat() if got.created else None,
            "modifiedAt": got.modified.isoformat() if got.modified else None}
