"""The hosts layer: Ansible inventory from the stack model plus Pulumi outputs or a hosts file, and runs.

``inventory`` builds one inventory shape whatever the source (``outputs`` for Pulumi-provisioned VMs,
``hostsfile`` for VMs handed over by a data centre); ``firewall`` derives each group's host firewall
from the model; ``runner`` runs the playbooks through ansible-runner with a per-host summary.
"""

from infra.hosts.inventory import Inventory, build_inventory

__all__ = ["Inventory", "build_inventory"]
