"""Pods on VPCs: the `l2vpc-cni` plugin (plugin.py) and the CNI protocol it speaks (spec.py).

The plugin is a thin client of the host agent's local socket; the agent does the work
(l2vpc.agent.pods). Imports here stay light: a runtime starts the plugin once per VPC of a Pod.
"""
