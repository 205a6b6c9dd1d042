"""Plain Python beside the DAGs: Airflow puts the DAG folder on sys.path, so `orders.summary` imports."""
from __future__ import annotations


def describe(host: str, port: int, has_password: bool, region: str) -> dict:
    return {"host": host, "port": port, "has_password": has_password, "region": region}
