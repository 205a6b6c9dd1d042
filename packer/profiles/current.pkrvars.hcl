// Debian 12 on GCE, the local profile's OS and versions (issue 20): the image built on Google runs the same
// Debian, Python 3.11 and wheels that every local test runs. Google's debian-cloud images carry Google's
// guest environment and are UEFI-compatible (Shielded VM).
profile                = "current"
source_image_family    = "debian-12"
source_image_project   = "debian-cloud"
python                 = "python3"
python_packages        = "python3 python3-venv"
airflow_version        = "2.11.2"
mlflow_version         = "3.17.2"
postgresql_major       = "15"
gcsfuse_version        = "2.5.1"
cloudsql_proxy_version = "2.14.3"
# From the v2.14.3 release notes (their sha256 table); the build verifies it.
cloudsql_proxy_sha256 = "75e7cc1f158ab6f97b7810e9d8419c55735cff40bc56d4f19673adfdf2406a59"
