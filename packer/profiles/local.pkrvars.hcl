// Debian 12 rootfs booted with systemd-nspawn: built and tested end to end here.
profile          = "local"
debian_suite     = "bookworm"
python           = "python3"
python_packages  = "python3 python3-venv"
airflow_version  = "2.11.2"
mlflow_version   = "3.17.2"
postgresql_major = "15"
