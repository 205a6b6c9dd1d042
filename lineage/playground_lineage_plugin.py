"""Airflow plugin that records every task instance in MLflow (installed into AIRFLOW_HOME/plugins)."""
from airflow.plugins_manager import AirflowPlugin
from playground_lineage import listener


class PlaygroundLineagePlugin(AirflowPlugin):
    name = "playground_lineage"
    listeners = [listener]
