// The original set-up: Ubuntu 18.04 with Python 3.8, Airflow 2.0.2, MLflow 2.17.2
// (the last MLflow for Python 3.8). Built on GCE only.
profile                = "seed"
source_image_family    = "ubuntu-1804-lts"
python                 = "python3.8"
python_packages        = "python3.8 python3.8-venv python3.8-dev"
airflow_version        = "2.0.2"
mlflow_version         = "2.17.2"
gcsfuse_version        = "2.5.1"
cloudsql_proxy_version = "2.14.1"
