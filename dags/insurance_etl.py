"""An insurance-style ETL on the instance's own PostgreSQL, ending in a small model registered in MLflow.

generate_policies, generate_claims -> enrich_claims -> summarise_regions
                                                   -> train_severity_model (registers `claim_severity`)

The data is made up here, reproducibly from the run's logical date. Tables live in the `warehouse`
database that the playground agent creates (Airflow connection `warehouse`, set by the agent) and are
declared as Airflow inlets/outlets, so the lineage plugin records them for every task; the model
version points at the training task's lineage run, so `playground lineage --model claim_severity`
walks back to the DAG run and its tables. Plain Python and SQL: no numpy needed. Airflow 2.0+.
"""
import json
import random
from datetime import datetime

from airflow import DAG
from airflow.lineage.entities import Table
from airflow.operators.python import PythonOperator

CONN = "warehouse"
MODEL = "claim_severity"
POLICIES = Table(database="public", cluster=CONN, name="policies")
CLAIMS = Table(database="public", cluster=CONN, name="claims")
ENRICHED = Table(database="public", cluster=CONN, name="claims_enriched")
REGIONS = Table(database="public", cluster=CONN, name="region_summary")


def _hook():
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    return PostgresHook(postgres_conn_id=CONN)


def _rng(context, salt: str) -> random.Random:
    return random.Random("%s/%s" % (context["ds"], salt))


def generate_policies(**context):
    rng = _rng(context, "policies")
    rows = [(i, rng.randint(18, 80), rng.choice(["north", "south", "east", "west"]),
             round(rng.uniform(300, 2000), 2)) for i in range(1, 501)]
    hook = _hook()
    hook.run(["DROP TABLE IF EXISTS policies CASCADE",
              "CREATE TABLE policies (policy_id int PRIMARY KEY, holder_age int, region text, premium numeric)"])
    hook.insert_rows("policies", rows, target_fields=["policy_id", "holder_age", "region", "premium"])
    return len(rows)


def generate_claims(**context):
    rng = _rng(context, "claims")
    rows = []
    for claim_id in range(1, 1201):
        policy = rng.randint(1, 500)
        rows.append((claim_id, policy, round(rng.uniform(50, 400) + rng.gauss(0, 40), 2)))
    hook = _hook()
    hook.run(["DROP TABLE IF EXISTS claims CASCADE",
              "CREATE TABLE claims (claim_id int PRIMARY KEY, policy_id int, base_amount numeric)"])
    hook.insert_rows("claims", rows, target_fields=["claim_id", "policy_id", "base_amount"])
    return len(rows)


def enrich_claims(**context):
    # The claim amount grows with the holder's age and premium: the relation the model learns back.
    _hook().run(["DROP TABLE IF EXISTS claims_enriched",
                 """CREATE TABLE claims_enriched AS
                    SELECT c.claim_id, p.policy_id, p.region, p.holder_age, p.premium,
                           round(c.base_amount + 6.5 * p.holder_age + 0.35 * p.premium, 2) AS amount,
                           round((c.base_amount + 6.5 * p.holder_age + 0.35 * p.premium) / p.premium, 4)
                             AS loss_ratio
                    FROM claims c JOIN policies p USING (policy_id)"""])


def summarise_regions(**context):
    _hook().run(["DROP TABLE IF EXISTS region_summary",
                 """CREATE TABLE region_summary AS
                    SELECT region, count(*) AS claims, round(avg(amount), 2) AS mean_amount,
                           round(avg(loss_ratio), 4) AS mean_loss_ratio
                    FROM claims_enriched GROUP BY region"""])


def _least_squares(xs, ys):
    """Coefficients of y ~ b0 + b1*x1 + b2*x2 by the normal equations (Gauss-Jordan on 3x3)."""
    rows = [[1.0] + [float(v) for v in x] for x in xs]
    k = len(rows[0])
    a = [[sum(r[i] * r[j] for r in rows) for j in range(k)] + [sum(r[i] * float(y) for r, y in zip(rows, ys))]
         for i in range(k)]
    for col in range(k):
        pivot = max(range(col, k), key=lambda r: abs(a[r][col]))
        a[col], a[pivot] = a[pivot], a[col]
        for r in range(k):
            if r != col:
                f = a[r][col] / a[col][col]
                a[r] = [x - f * y for x, y in zip(a[r], a[col])]
    return [a[i][k] / a[i][i] for i in range(k)]


def train_severity_model(**context):
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient  # also where MLflow 1.x (the seed's client) has it

    data = _hook().get_records("SELECT holder_age, premium, amount FROM claims_enriched ORDER BY claim_id")
    xs, ys = [(r[0], r[1]) for r in data], [float(r[2]) for r in data]
    coef = _least_squares(xs, ys)
    predict = [coef[0] + coef[1] * float(a) + coef[2] * float(p) for a, p in xs]
    rmse = (sum((y - f) ** 2 for y, f in zip(ys, predict)) / len(ys)) ** 0.5
    model = {"kind": "linear", "target": "amount", "features": ["holder_age", "premium"],
             "intercept": coef[0], "coefficients": {"holder_age": coef[1], "premium": coef[2]}}

    try:  # log into this task's own lineage run, so the model is linked to the pipeline's tables
        from playground_lineage.tasks import task_run_id

        run_id = task_run_id(context["ti"])
    except ImportError:  # not on a playground: a run of its own
        import mlflow

        mlflow.set_experiment("airflow/%s" % context["dag"].dag_id)
        run_id = mlflow.start_run(run_name=context["ti"].task_id).info.run_id
        mlflow.end_run()
    client = MlflowClient()
    client.log_metric(run_id, "model.rmse", rmse)
    client.log_metric(run_id, "model.training_rows", len(ys))
    client.log_text(run_id, json.dumps(model, indent=2), "model/model.json")
    try:
        client.create_registered_model(MODEL, description="Claim amount from holder age and premium "
                                       "(example pipeline insurance_etl)")
    except MlflowException as exc:
        if "RESOURCE_ALREADY_EXISTS" not in str(exc) and "already exists" not in str(exc):
            raise
    source = client.get_run(run_id).info.artifact_uri + "/model"
    version = client.create_model_version(MODEL, source, run_id=run_id, tags={
        "airflow.dag_id": context["dag"].dag_id, "airflow.run_id": context["run_id"]})
    return {"model": MODEL, "version": version.version, "rmse": round(rmse, 2)}


with DAG(
    dag_id="insurance_etl",
    start_date=datetime(2024, 1, 1),
    schedule_interval=None,
    catchup=False,
    tags=["playground", "insurance", "example"],
    params={"lineage_tags": ["claims", "pricing"]},
    default_args={"retries": 0},
) as dag:
    policies = PythonOperator(task_id="generate_policies", python_callable=generate_policies, outlets=[POLICIES])
    claims = PythonOperator(task_id="generate_claims", python_callable=generate_claims, outlets=[CLAIMS])
    enrich = PythonOperator(task_id="enrich_claims", python_callable=enrich_claims, inlets=[POLICIES, CLAIMS],
                            outlets=[ENRICHED])
    summary = PythonOperator(task_id="summarise_regions", python_callable=summarise_regions, inlets=[ENRICHED],
                             outlets=[REGIONS])
    train = PythonOperator(task_id="train_severity_model", python_callable=train_severity_model,
                           inlets=[ENRICHED])
    [policies, claims] >> enrich >> [summary, train]
