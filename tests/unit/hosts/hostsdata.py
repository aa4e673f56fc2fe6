"""Test data for the hosts tests: Pulumi outputs of each stack, the same hosts as a plain hosts file.

OpenStack stacks get their outputs from the real Pulumi program run under mocks (the cloud tests'
machinery), so these tests also pin the outputs contract between the cloud and hosts layers.
Local-target stacks have no Pulumi program: their hosts come from a generated hosts file.
"""

from __future__ import annotations

import json
import sys
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from infra.model import StackModel
from infra.model.loader import REPO_ROOT, parse_stack

sys.path.insert(0, str(Path(__file__).parents[1] / "cloud"))

STACKS = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in (REPO_ROOT / "stacks").glob("Pulumi.*.yaml"))
_OUTPUTS: dict[str, dict[str, Any]] = {}


def model_of(stack: str) -> StackModel:
    return parse_stack(stack, REPO_ROOT / "stacks" / f"Pulumi.{stack}.yaml")


def pulumi_outputs(stack: str) -> dict[str, Any]:
    """What 'pulumi stack output --json' prints for the stack (the program under mocks, JSON round trip)."""
    if stack not in _OUTPUTS:
        from cloud_mocks import construct

        _OUTPUTS[stack] = json.loads(json.dumps(construct(stack).outputs))
    return json.loads(json.dumps(_OUTPUTS[stack]))


def synthetic_outputs(model: StackModel) -> dict[str, Any]:
    """Outputs-shaped hosts for a model the Pulumi program refuses (local target): addresses in its tiers."""
    app = list(IPv4Network(model.network.app).hosts())
    mgmt = list(IPv4Network(model.network.mgmt).hosts())
    dmz = list(IPv4Network(model.network.dmz).hosts())
    n = iter(app[10:])
    name = f"govcloud-{model.name}"
    nodes = {
        "control-plane": [
            {"name": f"{name}-control-plane-{i}", "address": str(next(n)), "role": "control-plane"}
            for i in range(1, model.cluster.control_plane.count + 1)
        ]
    }
    for pool in model.cluster.workers:
        nodes[pool.name] = [
            {"name": f"{name}-{pool.name}-{i}", "address": str(next(n)), "role": "worker"}
            for i in range(1, max(pool.count, 1) + 1)
        ]
    cl = model.cluster
    return {
        "stack": model.name,
        "bastion": {"name": f"{name}-bastion-1", "address": "203.0.113.7", "private_address": str(mgmt[4])},
        "nodes": nodes,
        "kubernetes": {
            "api_endpoint": f"https://{dmz[-2]}:6443",
            "version": cl.kubernetes_version,
            "pod_cidr": str(cl.pod_cidr),
            "service_cidr": str(cl.service_cidr),
            "domain": model.domain,
        },
    }


def outputs_for(stack: str) -> dict[str, Any]:
    model = model_of(stack)
    return pulumi_outputs(stack) if model.target == "openstack" else synthetic_outputs(model)


def hosts_file_for(outputs: dict[str, Any]) -> str:
    """The same hosts written the way a data centre hands them over."""
    b = outputs["bastion"]
    lines = ["# handed-over VMs", "[bastion]", f"{b['name']} {b['address']} private={b['private_address']}", ""]
    for group, role in (("control_plane", "control-plane"), ("workers", "worker")):
        lines.append(f"[{group}]")
        for pool, hosts in outputs["nodes"].items():
            for h in hosts:
                if h["role"] == role:
                    lines.append(f"{h['name']}  {h['address']}  pool={pool}   # {role}")
        lines.append("")
    lines += ["[kubernetes]", f"api_endpoint = {outputs['kubernetes']['api_endpoint']}", ""]
    containers = outputs.get("backup_containers") or {}
    if containers:
        lines.append("[backup_containers]")
        lines += [f"{k} = {v}" for k, v in containers.items()]
    return "\n".join(lines) + "\n"
