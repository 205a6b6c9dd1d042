// Every input of the build. A profile (profiles/*.pkrvars.hcl) sets these;
// the lock files under locks/<profile>/ pin every Python package.

variable "profile" {
  type        = string
  description = "Image profile: seed, current, local or seed-local."
}

variable "debian_suite" {
  type        = string
  description = "Local profiles only: the Debian release the CLI debootstraps (bookworm, bullseye). Empty on GCE profiles."
  default     = ""
}

variable "python" {
  type        = string
  description = "The interpreter the venvs are made with (python3, python3.8)."
  default     = "python3"
}

variable "python_packages" {
  type        = string
  description = "Debian/Ubuntu packages that provide that interpreter and its venv module."
  default     = "python3 python3-venv"
}

variable "airflow_version" {
  type = string
}

variable "mlflow_version" {
  type = string
}

variable "postgresql_major" {
  type        = string
  description = "The PostgreSQL major version the OS release installs (Debian 11: 13, Debian 12: 15, Ubuntu 18.04: 10). 20-postgresql.sh checks it; GCE images carry it as a label, so `playground upgrade` refuses a change of major before anything changes."
}

variable "image_family" {
  type        = string
  description = "GCE image family the built image joins; empty means playground-PROFILE, the family `playground launch` takes."
  default     = ""
}

variable "image_version" {
  type        = string
  description = "Suffix that makes the image name unique (the CLI passes a timestamp)."
  default     = "dev"
}

// --- googlecompute source ---

variable "project_id" {
  type        = string
  description = "GCE project the build VM runs in and the image is stored in (required for the googlecompute source)."
  default     = ""
}

variable "zone" {
  type    = string
  default = "europe-west2-b"
}

variable "source_image_family" {
  type        = string
  description = "Base image family on GCE (ubuntu-pro-1804-lts for seed, debian-12 for current)."
  default     = "ubuntu-2404-lts-amd64"
}

variable "source_image_project" {
  type        = string
  description = "Project of the base family (ubuntu-os-pro-cloud for Ubuntu Pro, debian-cloud for Debian)."
  default     = "ubuntu-os-cloud"
}

variable "machine_type" {
  type    = string
  default = "e2-standard-2"
}

variable "network" {
  type    = string
  default = "default"
}

variable "subnetwork" {
  type    = string
  default = ""
}

variable "use_iap" {
  type        = bool
  description = "Reach the build VM through IAP TCP forwarding (it has no external IP)."
  default     = true
}

variable "gcsfuse_version" {
  type    = string
  default = ""
}

variable "gcsfuse_sha256" {
  type    = string
  default = ""
}

variable "cloudsql_proxy_version" {
  type    = string
  default = ""
}

variable "cloudsql_proxy_sha256" {
  type    = string
  default = ""
}

// --- local source: a Debian rootfs booted with systemd-nspawn, reached over SSH ---

variable "ssh_host" {
  type    = string
  default = "127.0.0.1"
}

variable "ssh_port" {
  type    = number
  default = 2222
}

variable "ssh_private_key_file" {
  type    = string
  default = "/dev/null"
}

// Build-time only inputs (never written into the image): where the build
// container's pip cache is mounted, and the host's CA bundle.
variable "pip_cache_dir" {
  type    = string
  default = ""
}

variable "build_ca_bundle" {
  type    = string
  default = ""
}

variable "pip_index_url" {
  type      = string
  default   = ""
  sensitive = true
}
