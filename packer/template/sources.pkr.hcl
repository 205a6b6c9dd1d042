// Two sources, one build (build.pkr.hcl).

// GCE: no external IP on the build VM, reached through IAP; Shielded VM.
source "googlecompute" "gce" {
  project_id              = var.project_id
  zone                    = var.zone
  source_image_family     = var.source_image_family
  source_image_project_id = [var.source_image_project]
  machine_type            = var.machine_type
  network                 = var.network
  subnetwork              = var.subnetwork
  omit_external_ip        = true
  use_internal_ip         = true
  use_iap                 = var.use_iap
  # The tag `playground image build --gce` opens port 22 to IAP for (cli/playground/gce/iap_firewall.py).
  tags              = ["playground-build", "allow-iap-ssh"]
  ssh_username      = "packer"
  disk_size         = 30
  image_name        = "playground-${var.profile}-${var.image_version}"
  image_family      = local.family
  image_description = "playground ${var.profile}: Airflow ${var.airflow_version}, MLflow ${var.mlflow_version}"
  image_labels = {
    playground-profile = var.profile
    airflow            = replace(var.airflow_version, ".", "-")
    mlflow             = replace(var.mlflow_version, ".", "-")
    postgresql         = var.postgresql_major
  }
  enable_secure_boot          = true
  enable_vtpm                 = true
  enable_integrity_monitoring = true
}

// Local: the CLI (`playground image build --local`) boots a Debian 12 rootfs
// with systemd-nspawn and an sshd on ssh_host:ssh_port for the build only.
source "null" "local" {
  communicator         = "ssh"
  ssh_host             = var.ssh_host
  ssh_port             = var.ssh_port
  ssh_username         = "root"
  ssh_private_key_file = var.ssh_private_key_file
  ssh_timeout          = "2m"
}
