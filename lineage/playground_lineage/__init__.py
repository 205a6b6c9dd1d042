"""Airflow -> MLflow lineage: every task instance recorded as an MLflow run, with no change to DAG code.

listener.py builds events from Airflow's listener hooks, spool.py keeps them on
disk until delivered, mlflow_rest.py delivers them idempotently. Standard library
only: it runs inside every task process and must never hurt a task.
"""
