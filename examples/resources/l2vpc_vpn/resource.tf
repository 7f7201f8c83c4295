resource "l2vpc_vpc" "office" {
  name   = "office"
  region = "us-east"
  cidr   = "10.40.0.0/24"
}

# An ephemeral variable can feed a write-only argument: the key reaches the provider
# but is never written to the plan or the state (Terraform 1.11 or later).
variable "vpn_pre_shared_key" {
  description = "Pre-shared key agreed with the branch office (8-64 letters, digits, '_' and '.')."
  type        = string
  sensitive   = true
  ephemeral   = true
}

# A site-to-site IKEv2 VPN to a branch office: workloads in the VPC reach
# 192.168.10.0/24 through gateway_ip.
resource "l2vpc_vpn" "example" {
  name         = "branch-office"
  vpc_id       = l2vpc_vpc.office.id
  peer_address = "203.0.113.10"
  remote_cidrs = ["192.168.10.0/24"]

  pre_shared_key_wo = var.vpn_pre_shared_key
  # Bump to install a new key; the tunnel renegotiates.
  pre_shared_key_wo_version = 1

  ike = {
    encryption = "aes256gcm16"
    integrity  = "sha384"
    dh_group   = "ecp384"
  }
  dpd = {
    interval = 10
    timeout  = 60
  }
}

output "vpn_endpoints" {
  value = {
    public_ip  = l2vpc_vpn.example.public_ip  # configure it as the peer on the branch gateway
    gateway_ip = l2vpc_vpn.example.gateway_ip # next hop inside the VPC
  }
}
