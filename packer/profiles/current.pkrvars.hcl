// Ubuntu 24.04 on GCE, same versions as local.
profile                = "current"
source_image_family    = "ubuntu-2404-lts-amd64"
python                 = "python3"
python_packages        = "python3 python3-venv"
airflow_version        = "2.11.2"
mlflow_version         = "3.17.2"
gcsfuse_version        = "2.5.1"
cloudsql_proxy_version = "2.14.3"
# From the v2.14.3 release notes (their sha256 table); the build verifies it.
cloudsql_proxy_sha256 = "75e7cc1f158ab6f97b7810e9d8419c55735cff40bc56d4f19673adfdf2406a59"
