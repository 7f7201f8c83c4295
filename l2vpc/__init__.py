"""l2vpc: Layer 2 VPCs as Terraform resources, a plan engine and host agents."""

__version__ = "0.1.0"
