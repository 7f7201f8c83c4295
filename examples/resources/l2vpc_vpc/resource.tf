# A single-region VPC with a managed DHCP server: workloads attached with
# ip_mode = "dhcp" get an address from 10.10.0.100-199 and 10.10.0.1 as gateway.
resource "l2vpc_vpc" "example" {
  name        = "web"
  description = "Web tier"
  region      = "us-east"
  mtu         = 9000
  cidr        = "10.10.0.0/24"

  dhcp = {
    range_start = "10.10.0.100"
    range_end   = "10.10.0.199"
    gateway     = "10.10.0.1"
    dns_servers = ["10.10.0.1", "10.10.0.2"]
    lease_time  = 86400
  }
}

# A VPC stretched across every region, addressed by the workloads themselves.
resource "l2vpc_vpc" "backbone" {
  name  = "backbone"
  scope = "multi_region"
}
