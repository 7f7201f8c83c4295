# Quickstart: one VPC with a managed DHCP server, three workloads and a Pod on it.
#
#   l2vpc lab up --hosts 3          # simulated hosts with real agents (as root)
#   l2vpc tf -C examples/terraform/quickstart apply
#   l2vpc lab pod run cache --vpc quickstart   # the Pod default/cache starts (containerd)
#   l2vpc lab check                 # every workload reaches the others
#   l2vpc tf -C examples/terraform/quickstart destroy

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
  description = "Region of the hosts (the lab's default is us-east)."
  type        = string
  default     = "us-east"
}

variable "workloads" {
  description = "Workloads to attach; the first gets a fixed DHCP reservation."
  type        = list(string)
  default     = ["web1", "web2", "db1"]
}

resource "l2vpc_vpc" "main" {
  name        = "quickstart"
  description = "One flat layer-2 segment with DHCP"
  mtu         = 9000
  cidr        = "10.50.0.0/24"
  dhcp = {
    range_start = "10.50.0.100"
    range_end   = "10.50.0.199"
    gateway     = "10.50.0.1"
    dns_servers = ["10.50.0.1"]
    lease_time  = 3600
  }
}

resource "l2vpc_attachment" "workload" {
  for_each = toset(var.workloads)

  vpc_id   = l2vpc_vpc.main.id
  workload = each.key
  ip_mode  = "dhcp"
  # A fixed reservation for the first workload, dynamic leases for the others.
  ip_address = each.key == var.workloads[0] ? "10.50.0.10/24" : null
}

output "vpc" {
  value = {
    id   = l2vpc_vpc.main.id
    vni  = l2vpc_vpc.main.vni
    dhcp = l2vpc_vpc.main.dhcp.server_ip
  }
}

# A Kubernetes Pod (namespace "default", name "cache") on the VPC. Its interface appears when the
# Pod starts on its host and the l2vpc-cni plugin adds it; until then the attachment is pending.
resource "l2vpc_attachment" "pod" {
  vpc_id        = l2vpc_vpc.main.id
  workload      = "default-cache"
  workload_kind = "pod"
  ip_mode       = "dhcp"
}

output "interfaces" {
  description = "Where each workload runs and its interface on the VPC."
  value = {
    for name, a in l2vpc_attachment.workload : name => "${a.host}/${a.interface_name} ${a.mac_address}"
  }
}

output "pod" {
  description = "Where the Pod default/cache gets its interface, and whether it runs yet."
  value       = "${l2vpc_attachment.pod.host}/${l2vpc_attachment.pod.interface_name} ${l2vpc_attachment.pod.status}"
}
