# A VPC managed by another configuration (another team), looked up by name.
data "l2vpc_vpc" "shared" {
  name = "shared-services"
}

resource "l2vpc_attachment" "monitoring" {
  vpc_id   = data.l2vpc_vpc.shared.id
  workload = "monitoring-1"
  ip_mode  = "dhcp"
}

output "shared_services" {
  value = {
    cidr = data.l2vpc_vpc.shared.cidr
    mtu  = data.l2vpc_vpc.shared.mtu
  }
}
