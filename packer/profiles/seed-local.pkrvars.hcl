// The seed's stack as close as this machine allows: Debian 11 (its Python 3.9) booted
// with systemd-nspawn, Airflow 2.0.2 and the seed's MLflow pins. Built and tested here.
profile          = "seed-local"
debian_suite     = "bullseye"
python           = "python3"
python_packages  = "python3 python3-venv"
airflow_version  = "2.0.2"
mlflow_version   = "2.17.2"
postgresql_major = "13"
