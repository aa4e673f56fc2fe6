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


PLAYBOOKS = REPO_ROOT / "playbooks"


class HostVars:
    """A host's variables as Ansible would see them for templates: role defaults < group_vars/all <
    inventory all vars < group vars < host vars, with string values templated until they settle."""

    def __init__(self, inventory: dict[str, Any], host: str, roles: list[str]) -> None:
        import jinja2
        import yaml

        inv = inventory["all"]
        groups: dict[str, list[str]] = {}
        group_vars: dict[str, dict[str, Any]] = {}
        host_vars: dict[str, Any] = {}

        def walk(name: str, node: dict[str, Any], parents: list[str]) -> None:
            group_vars[name] = node.get("vars") or {}
            for h, hv in (node.get("hosts") or {}).items():
                for g in [*parents, name]:
                    groups.setdefault(g, []).append(h)
                if h == host:
                    host_vars.update(hv or {})
                    self.group_names = sorted({*parents, name} - {"all"})
                    self.chain = [*parents, name]
            for child, sub in (node.get("children") or {}).items():
                walk(child, sub, [*parents, name])

        walk("all", inv, [])
        values: dict[str, Any] = {}
        for role in roles:
            values.update(yaml.safe_load((PLAYBOOKS / "roles" / role / "defaults" / "main.yml").read_text()) or {})
        values.update(yaml.safe_load((PLAYBOOKS / "group_vars" / "all" / "mirror.yml").read_text()))
        for g in self.chain:
            values.update(group_vars.get(g, {}))
        values.update(host_vars)
        values.update(
            inventory_hostname=host, group_names=self.group_names, groups=groups,
            ansible_managed="Ansible managed", ansible_distribution_release="bookworm",
        )
        self.env = jinja2.Environment(trim_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
        self.env.filters["to_json"] = json.dumps
        self.env.filters["to_nice_yaml"] = lambda v, indent=2: yaml.safe_dump(v, indent=indent, sort_keys=True)
        self.env.filters["bool"] = lambda v: str(v).strip().lower() in ("true", "yes", "1")
        self.values = values
        for _ in range(10):
            before = json.dumps(self.values, sort_keys=True, default=str)
            self.values = {k: self._resolve(v) for k, v in self.values.items()}
            if json.dumps(self.values, sort_keys=True, default=str) == before:
                break

    def _resolve(self, value: Any) -> Any:
        if isinstance(value, str) and "{{" in value:
            try:
                return self.env.from_string(value).render(self.values)
            except Exception:  # depends on a value not settled yet (or a fact): keep for the next round
                return value
        if isinstance(value, list):
            return [self._resolve(v) for v in value]
        if isinstance(value, dict):
            return {k: self._resolve(v) for k, v in value.items()}
        return value

    def render(self, role: str, template: str, **extra: Any) -> str:
        path = PLAYBOOKS / "roles" / role / "templates" / template
        return self.env.from_string(path.read_text(encoding="utf-8")).render({**self.values, **extra})
