// The original set-up: Ubuntu 18.04 with Python 3.8, Airflow 2.0.2, MLflow 2.17.2
// (the last MLflow for Python 3.8). Built on GCE only.
# Canonical's Pro family: ubuntu-os-cloud's ubuntu-1804-lts answers nothing since 18.04 left standard
# support (2023-05-31), and Pro keeps 18.04 patched (ESM). A premium image: its licence, and the hourly
# charge on top of the machine, carry into every image built from it (README, "The image").
profile                = "seed"
source_image_family    = "ubuntu-pro-1804-lts"
source_image_project   = "ubuntu-os-pro-cloud"
python                 = "python3.8"
python_packages        = "python3.8 python3.8-venv python3.8-dev"
airflow_version        = "2.0.2"
mlflow_version         = "2.17.2"
postgresql_major       = "10"
gcsfuse_version        = "2.5.1"
cloudsql_proxy_version = "2.14.3"
# From the v2.14.3 release notes (their sha256 table); the build verifies it.
cloudsql_proxy_sha256 = "75e7cc1f158ab6f97b7810e9d8419c55735cff40bc56d4f19673adfdf2406a59"
