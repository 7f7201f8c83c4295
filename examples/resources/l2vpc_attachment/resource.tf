resource "l2vpc_vpc" "app" {
  name   = "app"
  region = "us-east"
  cidr   = "10.20.0.0/24"

  dhcp = {
    range_start = "10.20.0.100"
    range_end   = "10.20.0.199"
  }
}

# A virtual server with a fixed address; it sees the VPC as interface net1.
resource "l2vpc_attachment" "example" {
  vpc_id     = l2vpc_vpc.app.id
  workload   = "app-1"
  ip_mode    = "static"
  ip_address = "10.20.0.10/24"
}

# A pod that gets its address from the VPC's DHCP server.
resource "l2vpc_attachment" "worker" {
  vpc_id        = l2vpc_vpc.app.id
  workload      = "worker-0"
  workload_kind = "pod"
  ip_mode       = "dhcp"
}

output "app_interface" {
  value = "${l2vpc_attachment.example.host}/${l2vpc_attachment.example.interface_name} ${l2vpc_attachment.example.mac_address}"
}
