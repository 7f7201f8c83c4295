# Site-to-site VPN: workloads in a VPC reach an on-premises LAN through an IKEv2 tunnel.
#
#   l2vpc lab up --hosts 2 --edges 1 --premises        # premises VPN gateway at 203.0.113.10
#   TF_VAR_psk=demo.psk.2024 l2vpc tf -C examples/terraform/site-to-site-vpn apply
#   l2vpc lab exec app1 -- ping -c1 192.168.50.10        # the premises LAN host, through the tunnel
#
# The pre-shared key goes in write-only (never stored in Terraform state); bump psk_version to
# rotate it.

terraform {
  required_providers {
    l2vpc = {
      source = "l2vpc/l2vpc"
    }
  }
}

provider "l2vpc" {
  region = var.region
}

variable "region" {
  type    = string
  default = "us-east"
}

variable "psk" {
  description = "Pre-shared key of the tunnel (8-64 letters, digits, '_' and '.'); the lab's premises gateway accepts the one given to `l2vpc lab up --premises-psk` (default demo.psk.2024)."
  type        = string
  sensitive   = true
  ephemeral   = true
  default     = "demo.psk.2024"
}

variable "psk_version" {
  description = "Bump to install a new pre-shared key."
  type        = number
  default     = 1
}

variable "premises_gateway" {
  description = "Public address of the premises VPN gateway."
  type        = string
  default     = "203.0.113.10"
}

variable "premises_lan" {
  type    = list(string)
  default = ["192.168.50.0/24"]
}

resource "l2vpc_vpc" "app" {
  name = "app"
  cidr = "10.70.0.0/24"
}

resource "l2vpc_attachment" "app1" {
  vpc_id     = l2vpc_vpc.app.id
  workload   = "app1"
  ip_mode    = "static"
  ip_address = "10.70.0.10/24"
}

resource "l2vpc_vpn" "office" {
  name                      = "office"
  vpc_id                    = l2vpc_vpc.app.id
  peer_address              = var.premises_gateway
  pre_shared_key_wo         = var.psk
  pre_shared_key_wo_version = var.psk_version
  remote_cidrs              = var.premises_lan

  ike = {
    encryption = "aes256"
    integrity  = "sha256"
    dh_group   = "modp2048"
  }
  dpd = {
    interval = 10
    timeout  = 30
  }
}

output "vpn" {
  value = {
    status     = l2vpc_vpn.office.status
    public_ip  = l2vpc_vpn.office.public_ip
    gateway_ip = l2vpc_vpn.office.gateway_ip
  }
}
