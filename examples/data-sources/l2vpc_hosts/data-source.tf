# The edge hosts of a region: where direct connects can land.
data "l2vpc_hosts" "edges" {
  region = "us-east"
  role   = "edge"
}

output "onramp_locations" {
  value = distinct([for h in data.l2vpc_hosts.edges.hosts : h.location if h.status == "up"])
}
