"""A team's own pipeline, deployed with `playground deploy examples/project`.

It waits with a deferrable sensor (the triggerer holds the wait, no worker slot does), then reads the
connection and the variable that airflow_settings.yaml gives it. The password is never printed: only whether
one is set.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from airflow import DAG
from airflow.hooks.base import BaseHook
from airflow.models import Variable
from airflow.operators.python import PythonOperator
from airflow.sensors.time_delta import TimeDeltaSensorAsync
from orders.summary import describe  # a module of the project: the DAG folder is on Airflow's sys.path


def read_settings() -> dict:
    shop = BaseHook.get_connection("shop_api")
    return describe(shop.host, shop.port, bool(shop.password), Variable.get("region"))


with DAG("orders_pipeline", start_date=datetime(2024, 1, 1), schedule=None, catchup=False,
         tags=["example", "project"]) as dag:
    wait = TimeDeltaSensorAsync(task_id="wait_for_orders", delta=timedelta(seconds=5))
    settings = PythonOperator(task_id="read_settings", python_callable=read_settings)
    wait >> settings
