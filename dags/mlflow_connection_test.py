"""The original set-up's MLflow connection test: one task logs a run to the MLflow server.

Baked into every image. Works on Airflow 2.0 (seed) through 2.x: it uses
`schedule_interval` and the classic PythonOperator import on purpose.
"""
import os
from datetime import datetime

from airflow import DAG
from airflow.operators.python import PythonOperator


def log_to_mlflow(**context):
    import mlflow  # mlflow-skinny, in the Airflow venv; MLFLOW_TRACKING_URI comes from the env file

    mlflow.set_experiment("playground-connection-test")
    with mlflow.start_run(run_name="connection-test") as run:
        mlflow.set_tag("airflow.dag_id", context["dag"].dag_id)
        mlflow.set_tag("airflow.run_id", context["run_id"])
        mlflow.log_param("project", os.environ.get("PLAYGROUND_PROJECT", "unknown"))
        mlflow.log_metric("connection_ok", 1.0)
        # Proxied by the server (--serve-artifacts): the task needs no bucket credentials.
        mlflow.log_text("hello from the playground\n", "hello.txt")
    return run.info.run_id


with DAG(
    dag_id="mlflow_connection_test",
    start_date=datetime(2024, 1, 1),
    schedule_interval=None,
    catchup=False,
    tags=["playground", "mlflow"],
) as dag:
    PythonOperator(task_id="log_to_mlflow", python_callable=log_to_mlflow)
