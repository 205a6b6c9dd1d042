"""Airflow 2.0-2.2 (no listeners): the playground's lineage as a cluster policy (AIRFLOW_HOME/config)."""
from playground_lineage.policy import dag_policy, task_policy  # noqa: F401
