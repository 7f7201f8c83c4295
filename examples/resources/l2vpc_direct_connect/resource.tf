resource "l2vpc_vpc" "prod" {
  name   = "prod"
  region = "us-east"
  cidr   = "10.30.0.0/24"
}

variable "bgp_md5_key" {
  description = "TCP MD5 password agreed with the network team of the premises."
  type        = string
  sensitive   = true
}

# Routed (layer3, the default): a 10 Gbps cross-connect at nyc1, with a BGP session
# between our edge router and the customer's router. The peering /31, the addresses
# and our ASN are allocated; the VPC cidr is announced to the premises.
resource "l2vpc_direct_connect" "example" {
  name           = "prod-nyc1"
  vpc_id         = l2vpc_vpc.prod.id
  location       = "nyc1"
  bandwidth_mbps = 10000

  bgp = {
    customer_asn = 65010
    md5_key      = var.bgp_md5_key
  }
}

variable "megaport_service_key" {
  description = "Service key of the Megaport circuit ordered for the premises."
  type        = string
  sensitive   = true
}

# Flat (layer2): the VPC extended to the premises over a 1 Gbps Megaport circuit,
# tagged with VLAN 120 on the hand-off; premises hosts join the VPC's subnet.
resource "l2vpc_direct_connect" "flat" {
  name           = "prod-flat"
  vpc_id         = l2vpc_vpc.prod.id
  location       = "nyc1"
  bandwidth_mbps = 1000
  partner        = "megaport"
  service_key    = var.megaport_service_key
  mode           = "layer2"
  vlan           = 120
}

output "bgp_peering" {
  description = "What the premises' router needs to configure its side of the session."
  value = {
    our_asn     = l2vpc_direct_connect.example.bgp.provider_asn
    our_ip      = l2vpc_direct_connect.example.bgp.provider_ip
    customer_ip = l2vpc_direct_connect.example.bgp.customer_ip
  }
}
