# Direct connect from the nyc1 on-ramp into a VPC, through the reusable module in
# modules/direct-connect.
#
#   l2vpc lab up --hosts 2 --edges 1 --premises      # a customer router (AS 65010) at nyc1
#   l2vpc tf -C examples/terraform/direct-connect apply
#   l2vpc lab exec db1 -- ping -c1 192.168.50.10      # the premises LAN, routed over BGP

terraform {
  required_providers {
    l2vpc = {
      source = "l2vpc/l2vpc"
    }
  }
}

provider "l2vpc" {
  region = "us-east"
}

resource "l2vpc_vpc" "prod" {
  name = "prod"
  cidr = "10.80.0.0/24"
  dhcp = {
    range_start = "10.80.0.100"
    range_end   = "10.80.0.199"
  }
}

resource "l2vpc_attachment" "db1" {
  vpc_id     = l2vpc_vpc.prod.id
  workload   = "db1"
  ip_mode    = "static"
  ip_address = "10.80.0.10/24"
}

module "nyc1" {
  source = "./modules/direct-connect"

  name           = "prod-nyc1"
  vpc_id         = l2vpc_vpc.prod.id
  location       = "nyc1"
  bandwidth_mbps = 1000
  mode           = "layer3"
  customer_asn   = 65010
  # The addresses the customer router already has on the cross-connect (the lab's premises
  # router uses these by default).
  peering_cidr = "169.254.10.0/30"
  customer_ip  = "169.254.10.2"
  provider_ip  = "169.254.10.1"
}

output "direct_connect" {
  value = {
    status  = module.nyc1.status
    peering = module.nyc1.peering
  }
}
