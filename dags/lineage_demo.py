"""A small pipeline for lineage: extract -> enrich -> load, a branch that skips, tables as inlets/outlets.

Plain DAG code: the playground's lineage plugin records every task in MLflow
(experiment `airflow/lineage_demo`) without this file knowing. Trigger with
conf {"fail": true} to see a failed task recorded as FAILED. Airflow 2.0+.
"""
from datetime import datetime

from airflow import DAG
from airflow.lineage.entities import Table
from airflow.operators.python import BranchPythonOperator, PythonOperator

POLICIES = Table(database="public", cluster="postgres_default", name="policies")
CLAIMS = Table(database="public", cluster="postgres_default", name="claims")
ENRICHED = Table(database="public", cluster="postgres_default", name="claims_enriched")


def extract(**context):
    return [{"policy": i, "premium": 100.0 + i} for i in range(10)]


def enrich(**context):
    rows = context["ti"].xcom_pull(task_ids="extract")
    return [dict(r, risk=round(r["premium"] / 110.0, 3)) for r in rows]


def load(**context):
    if (context["dag_run"].conf or {}).get("fail"):
        raise RuntimeError("asked to fail (conf fail=true)")
    return len(context["ti"].xcom_pull(task_ids="enrich"))


with DAG(
    dag_id="lineage_demo",
    start_date=datetime(2024, 1, 1),
    schedule_interval=None,
    catchup=False,
    tags=["playground", "lineage"],
    params={"lineage_tags": ["insurance", "claims"]},
    default_args={"retries": 0},
) as dag:
    get = PythonOperator(task_id="extract", python_callable=extract, inlets=[POLICIES, CLAIMS])
    mix = PythonOperator(task_id="enrich", python_callable=enrich, inlets=[CLAIMS], outlets=[ENRICHED])
    put = PythonOperator(task_id="load", python_callable=load, inlets=[ENRICHED])
    branch = BranchPythonOperator(task_id="choose_report", python_callable=lambda: "daily_report")
    daily = PythonOperator(task_id="daily_report", python_callable=lambda: "daily")
    monthly = PythonOperator(task_id="monthly_report", python_callable=lambda: "monthly")  # always skipped
    get >> mix >> put >> branch >> [daily, monthly]
