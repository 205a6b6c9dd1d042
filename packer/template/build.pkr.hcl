// One build for both sources: the same scripts provision GCE and local images.

locals {
  src = "/tmp/playground-src"
  # A local profile names the Debian release its rootfs is debootstrapped from.
  target = var.debian_suite != "" ? "local" : "gce"
  family = var.image_family != "" ? var.image_family : "playground-${var.profile}"
  env = [
    "PLAYGROUND_PROFILE=${var.profile}",
    "PLAYGROUND_POSTGRESQL_MAJOR=${var.postgresql_major}",
    "PLAYGROUND_TARGET=${local.target}",
    "PLAYGROUND_SRC=/tmp/playground-src",
    "PYTHON=${var.python}",
    "PYTHON_PACKAGES=${var.python_packages}",
    "AIRFLOW_VERSION=${var.airflow_version}",
    "MLFLOW_VERSION=${var.mlflow_version}",
    "GCSFUSE_VERSION=${var.gcsfuse_version}",
    "GCSFUSE_SHA256=${var.gcsfuse_sha256}",
    "CLOUDSQL_PROXY_VERSION=${var.cloudsql_proxy_version}",
    "CLOUDSQL_PROXY_SHA256=${var.cloudsql_proxy_sha256}",
    "BUILD_PIP_CACHE_DIR=${var.pip_cache_dir}",
    "BUILD_CA_BUNDLE=${var.build_ca_bundle}",
    "BUILD_PIP_INDEX_URL=${var.pip_index_url}",
    "DEBIAN_FRONTEND=noninteractive",
  ]
}

build {
  sources = ["source.googlecompute.gce", "source.null.local"]

  provisioner "shell" {
    inline          = ["mkdir -p ${local.src}/agent ${local.src}/units ${local.src}/locks ${local.src}/dags ${local.src}/lineage"]
    execute_command = "sudo -E sh -c '{{ .Vars }} {{ .Path }}'"
  }

  provisioner "file" {
    source      = "${path.root}/../../agent/"
    destination = "${local.src}/agent"
  }

  provisioner "file" {
    source      = "${path.root}/../scripts/lib.sh"
    destination = "${local.src}/lib.sh"
  }

  provisioner "file" {
    source      = "${path.root}/../../units/"
    destination = "${local.src}/units"
  }

  provisioner "file" {
    source      = "${path.root}/../locks/${var.profile}/"
    destination = "${local.src}/locks"
  }

  provisioner "file" {
    source      = "${path.root}/../../dags/"
    destination = "${local.src}/dags"
  }

  provisioner "file" {
    source      = "${path.root}/../../lineage/"
    destination = "${local.src}/lineage"
  }

  provisioner "shell" {
    environment_vars = local.env
    execute_command  = "chmod +x {{ .Path }}; sudo -E env {{ .Vars }} bash {{ .Path }}"
    scripts = [
      "${path.root}/../scripts/10-base.sh",
      "${path.root}/../scripts/15-boot.sh",
      "${path.root}/../scripts/20-postgresql.sh",
      "${path.root}/../scripts/25-redis.sh",
      "${path.root}/../scripts/30-airflow.sh",
      "${path.root}/../scripts/35-lineage.sh",
      "${path.root}/../scripts/40-mlflow.sh",
      "${path.root}/../scripts/50-google-tools.sh",
      "${path.root}/../scripts/60-agent-units.sh",
      "${path.root}/../scripts/65-database.sh",
      "${path.root}/../scripts/90-hygiene.sh",
    ]
  }
}
