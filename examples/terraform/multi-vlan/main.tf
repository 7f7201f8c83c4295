# Several VPCs as the VLANs of a traditional network, with a virtual router (firewall)
# workload attached to all of them. Each VPC hands out addresses by DHCP with the router as
# the default gateway. The router is customer-managed (ip_mode none): it configures its own
# gateway addresses, forwards between the segments, and its nftables firewall decides what may
# cross (router.nft: frontend may reach backend, backend may reach storage, nothing else).
#
#   l2vpc lab up --hosts 3
#   l2vpc tf -C examples/terraform/multi-vlan apply
#   l2vpc tf -C examples/terraform/multi-vlan output -raw router_setup | l2vpc lab exec router1 -- sh
#   l2vpc lab exec router1 -- nft -f - < examples/terraform/multi-vlan/router.nft
#   l2vpc lab exec web1 -- ping -c1 10.61.0.10      # frontend -> backend: allowed
#   l2vpc lab exec web1 -- ping -c1 10.62.0.10      # frontend -> storage: dropped

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

locals {
  # name => third octet of the segment's 10.x.0.0/24
  segments = {
    frontend = 60
    backend  = 61
    storage  = 62
  }
  # workload => segment, with a fixed address (a DHCP reservation)
  workloads = {
    web1  = "frontend"
    app1  = "backend"
    nas1  = "storage"
  }
}

resource "l2vpc_vpc" "segment" {
  for_each = local.segments

  name        = each.key
  description = "VLAN ${each.key}"
  cidr        = "10.${each.value}.0.0/24"
  mtu         = each.key == "storage" ? 9000 : 1500
  dhcp = {
    range_start = "10.${each.value}.0.100"
    range_end   = "10.${each.value}.0.199"
    gateway     = "10.${each.value}.0.1" # the router's address in this segment
  }
}

# The virtual router: one interface per segment; it owns each segment's gateway address .1.
resource "l2vpc_attachment" "router" {
  for_each = local.segments

  vpc_id   = l2vpc_vpc.segment[each.key].id
  workload = "router1"
  ip_mode  = "none"
}

resource "l2vpc_attachment" "workload" {
  for_each = local.workloads

  vpc_id     = l2vpc_vpc.segment[each.value].id
  workload   = each.key
  ip_mode    = "dhcp"
  ip_address = "10.${local.segments[each.value]}.0.10/24"
  # Workloads land on other hosts than the router where possible.
  depends_on = [l2vpc_attachment.router]
}

output "router_interfaces" {
  value = { for k, a in l2vpc_attachment.router : k => a.interface_name }
}

# Shell commands that give the router its gateway addresses and turn on forwarding.
output "router_setup" {
  value = join("\n", concat(
    ["sysctl -qw net.ipv4.ip_forward=1"],
    [for k, a in l2vpc_attachment.router : "ip addr replace 10.${local.segments[k]}.0.1/24 dev ${a.interface_name}"],
    [""],
  ))
}

output "workloads" {
  value = { for k, a in l2vpc_attachment.workload : k => "${a.host} ${a.ip_address}" }
}
