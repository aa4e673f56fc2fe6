"""Each inventory group's host firewall (nftables input rules), derived from the model.

The rules mirror the cloud's security groups (``infra.cloud.security.plan_rules``): the same ports
from the same places, with a remote security group resolved to its tier's CIDR. Security groups
exist only on OpenStack; handed-over VMs get the same protection from this host firewall alone.
Pods reach the API server and kubelets from the pod network, so the node groups also admit that.
"""

from __future__ import annotations

from ipaddress import IPv4Network
from typing import TypedDict

from infra.model import StackModel

#: security group key -> inventory group
SG_GROUP = {"bastion": "bastion", "control-plane": "control_plane", "worker": "workers"}


class FirewallRule(TypedDict):
    proto: str
    ports: str
    sources: list[str]
    comment: str


def _merge(rules: list[tuple[str, tuple[int, int], IPv4Network, str]]) -> list[FirewallRule]:
    merged: dict[tuple[str, tuple[int, int]], tuple[list[IPv4Network], list[str]]] = {}
    for proto, ports, source, why in rules:
        sources, whys = merged.setdefault((proto, ports), ([], []))
        if source not in sources:
            sources.append(source)
        if why not in whys:
            whys.append(why)
    out: list[FirewallRule] = []
    for (proto, (lo, hi)), (sources, whys) in sorted(merged.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        out.append(
            FirewallRule(
                proto=proto,
                ports=str(lo) if lo == hi else f"{lo}-{hi}",
                sources=[str(s) for s in sorted(sources, key=lambda n: (int(n.network_address), n.prefixlen))],
                comment="; ".join(whys)[:120],
            )
        )
    return out


def host_rules(model: StackModel) -> dict[str, list[FirewallRule]]:
    """Inventory group -> its input rules (everything else is dropped; loopback and replies pass)."""
    from infra.cloud.security import GROUPS, KUBE_API, KUBELET, plan_rules  # late: imports pulumi

    net = model.network
    raw: dict[str, list[tuple[str, tuple[int, int], IPv4Network, str]]] = {g: [] for g in SG_GROUP.values()}
    for rule in plan_rules(model):
        if rule.direction != "ingress" or rule.group not in SG_GROUP:
            continue
        source = rule.remote_cidr if rule.remote_cidr is not None else net.tier(GROUPS[rule.remote_group or ""])
        raw[SG_GROUP[rule.group]].append((rule.protocol, rule.ports, source, rule.why))
    pods = model.cluster.pod_cidr
    raw["control_plane"].append(("tcp", (KUBE_API, KUBE_API), pods, "Kubernetes API from pods"))
    for group in ("control_plane", "workers"):
        raw[group].append(("tcp", (KUBELET, KUBELET), pods, "kubelet API from pods (metrics)"))
    return {group: _merge(rules) for group, rules in raw.items()}
