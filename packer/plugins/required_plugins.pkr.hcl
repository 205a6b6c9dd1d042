// For Packer 1.7 and newer only: `packer init packer/plugins` installs these.
// Kept outside packer/template/ because Packer 1.6.6 (Debian's package) rejects
// a `packer { required_plugins }` block and has both builders built in.
packer {
  required_version = ">= 1.6.6"
  required_plugins {
    googlecompute = {
      source  = "github.com/hashicorp/googlecompute"
      version = ">= 1.1.0"
    }
  }
}
