# A direct connect into an L2VPC, in the style of Megaport provisioning modules: say where,
# how fast and how (layer3 with BGP, or layer2 with an optional VLAN), get the status and the
# peering addresses to configure on your router.

terraform {
  required_providers {
    l2vpc = {
      source = "l2vpc/l2vpc"
    }
  }
}

variable "name" {
  description = "Name of the connection."
  type        = string
}

variable "vpc_id" {
  description = "The VPC to connect."
  type        = string
}

variable "location" {
  description = "On-ramp location code, e.g. nyc1."
  type        = string
}

variable "bandwidth_mbps" {
  description = "1000-100000, in steps of 1000."
  type        = number
  default     = 1000
}

variable "mode" {
  description = "layer3 (BGP, default) or layer2 (the VPC extended flat to the premises)."
  type        = string
  default     = "layer3"
  validation {
    condition     = contains(["layer3", "layer2"], var.mode)
    error_message = "mode must be layer3 or layer2."
  }
}

variable "customer_asn" {
  description = "Your ASN (layer3)."
  type        = number
  default     = 65010
}

variable "peering_cidr" {
  description = "The /30 or /31 between the routers (layer3); default: allocated from 169.254.0.0/16."
  type        = string
  default     = null
}

variable "customer_ip" {
  description = "Your router's address in peering_cidr (layer3); default: allocated."
  type        = string
  default     = null
}

variable "provider_ip" {
  description = "Our router's address in peering_cidr (layer3); default: allocated."
  type        = string
  default     = null
}

variable "md5_key" {
  description = "Optional BGP MD5 password (layer3)."
  type        = string
  default     = null
  sensitive   = true
}

variable "vlan" {
  description = "Optional 802.1Q tag on the hand-off (layer2)."
  type        = number
  default     = null
}

variable "megaport_service_key" {
  description = "Set to order the circuit through Megaport instead of a cross-connect."
  type        = string
  default     = null
  sensitive   = true
}

resource "l2vpc_direct_connect" "this" {
  name           = var.name
  vpc_id         = var.vpc_id
  location       = var.location
  bandwidth_mbps = var.bandwidth_mbps
  mode           = var.mode
  partner        = var.megaport_service_key == null ? "cross_connect" : "megaport"
  service_key    = var.megaport_service_key
  vlan           = var.mode == "layer2" ? var.vlan : null
  bgp = var.mode == "layer3" ? {
    customer_asn = var.customer_asn
    peering_cidr = var.peering_cidr
    customer_ip  = var.customer_ip
    provider_ip  = var.provider_ip
    md5_key      = var.md5_key
  } : null
}

output "id" {
  value = l2vpc_direct_connect.this.id
}

output "status" {
  description = "provisioning, active, or down."
  value       = l2vpc_direct_connect.this.status
}

output "peering" {
  description = "Addresses and ASNs to configure on the customer router (layer3)."
  value = var.mode == "layer3" ? {
    customer_ip  = l2vpc_direct_connect.this.bgp.customer_ip
    provider_ip  = l2vpc_direct_connect.this.bgp.provider_ip
    peering_cidr = l2vpc_direct_connect.this.bgp.peering_cidr
    provider_asn = l2vpc_direct_connect.this.bgp.provider_asn
    customer_asn = var.customer_asn
  } : null
}

output "gateway_ip" {
  description = "Next hop inside the VPC towards the premises (layer3)."
  value       = l2vpc_direct_connect.this.gateway_ip
}
