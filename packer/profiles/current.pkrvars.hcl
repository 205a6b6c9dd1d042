// Ubuntu 24.04 on GCE, same versions as local.
profile                = "current"
source_image_family    = "ubuntu-2404-lts-amd64"
python                 = "python3"
python_packages        = "python3 python3-venv"
airflow_version        = "2.11.2"
mlflow_version         = "3.17.2"
gcsfuse_version        = "2.5.1"
cloudsql_proxy_version = "2.14.1"
