"""Plain Python beside the DAGs: Airflow puts the DAG folder on sys.path, so `orders.summary` imports. It uses
humanize, a package of the project's requirements.txt, which the image does not have."""
from __future__ import annotations

import humanize


def describe(host: str, port: int, has_password: bool, region: str) -> dict:
    return {"host": host, "port": port, "has_password": has_password, "region": region,
            "orders": humanize.intcomma(1234567)}
