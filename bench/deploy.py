"""`playground deploy` figures (issue 15): a 50-file DAG folder onto a fresh local instance, over SSH.

    sudo .venv/bin/python bench/deploy.py

The first deploy (50 files written, the image's example DAGs removed), then a deploy with nothing changed
and one with one file changed, each --repeat times. Every deploy ends with the machine's own Airflow parse of
the whole folder (DagBag: the DAG ids and import errors it answers), which is most of the time; the files
themselves are a few KiB. Settings are in the folder too (one connection, one variable): unchanged, they
start no Airflow process. Then a 5-package requirements.txt: resolved here, the wheels sent and installed
into a new layer, against the same file again (its layer kept: nothing resolved, sent or installed).
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from common import Row, bench_instance, print_rows
from playground import deploy, project
from playground.local import instance

FILES = 50
DAG = '''from datetime import datetime
from airflow import DAG
from airflow.operators.bash import BashOperator

with DAG("bench_dag_{i:02d}", start_date=datetime(2024, 1, 1), schedule=None, catchup=False) as dag:
    BashOperator(task_id="hello", bash_command="echo {i} {rev}")
'''
SETTINGS = """airflow:
  connections:
    - {conn_id: bench_api, conn_type: http, conn_host: api.internal, conn_password: not-a-real-one}
  variables:
    - {variable_name: bench_region, variable_value: eu}
"""


def folder(root: Path) -> Path:
    (root / "dags").mkdir(parents=True)
    for i in range(FILES):
        (root / "dags" / f"bench_dag_{i:02d}.py").write_text(DAG.format(i=i, rev=0))
    (root / "airflow_settings.yaml").write_text(SETTINGS)
    return root


# Five packages the image's venv does not have (pure Python wheels: the figure is the transfer and install).
PACKAGES = "toolz\nhumanize\nemoji\npyfiglet\nschedule\n"


def measure(repeat: int = 3) -> list[Row]:
    rows = {k: Row(f"deploy {FILES} files: {k} (s)", []) for k in ("first", "nothing changed", "one file changed")}
    rows["packages"] = Row("deploy with a 5-package requirements.txt, new (s)", [])
    rows["cached"] = Row("deploy with the same requirements.txt (s)", [])
    with tempfile.TemporaryDirectory() as tmp, bench_instance("pgbench-deploy") as (inst, _):
        root = folder(Path(tmp) / "project")
        target = instance.target(inst)

        def once(key: str, expect_written: int) -> None:
            t0 = time.monotonic()
            done = deploy.deploy(target, project.load(root), lambda s: None, lambda p: None)
            rows[key].values.append(time.monotonic() - t0)
            written = len(done.added) + len(done.changed)
            if written != expect_written or done.import_errors or len(done.dags) != FILES:
                raise RuntimeError(f"deploy {key}: {written} written, {len(done.dags)} DAGs, "
                                   f"errors {done.import_errors}")

        once("first", FILES)
        for rev in range(1, repeat + 1):
            once("nothing changed", 0)
            (root / "dags" / "bench_dag_07.py").write_text(DAG.format(i=7, rev=rev))
            once("one file changed", 1)
        for rev in range(repeat):
            # A new file each round (a comment changes its hash): resolved, sent and installed afresh.
            (root / "requirements.txt").write_text(PACKAGES + f"# round {rev}\n")
            t0 = time.monotonic()
            done = deploy.deploy(target, project.load(root), lambda s: None, lambda p: None)
            rows["packages"].values.append(time.monotonic() - t0)
            if not (done.packages or {}).get("installed"):
                raise RuntimeError(f"requirements.txt round {rev}: not installed ({done.packages})")
            t0 = time.monotonic()
            done = deploy.deploy(target, project.load(root), lambda s: None, lambda p: None)
            rows["cached"].values.append(time.monotonic() - t0)
            if done.packages is not None:
                raise RuntimeError(f"the same requirements.txt was sent again: {done.packages}")
    return list(rows.values())


if __name__ == "__main__":
    print_rows(measure(), "deploy (issue 15)")
