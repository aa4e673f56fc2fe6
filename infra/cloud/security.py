"""Least-privilege security groups, one per role and tier, all rules explicit (default rules deleted).

What the rules allow (every rule names a remote CIDR or group; none is open to the world —
the one world-facing port is the public load balancer's 443 listener, see loadbalancers.py):

- SSH (22) into hosts only from the bastion group; into the bastion only from ``network.adminCidrs``.
- The Kubernetes API (6443) on control-plane nodes only from the ``mgmt`` subnet and the internal
  load balancer's half of the dmz (``dmz-internal``).
- The ingress node port on workers only from the public load balancer's half (``dmz-public``).
- etcd and kubelet only between the node groups that need them; the pod overlay (VXLAN) between nodes.
- Egress: DNS to the model's nameservers, HTTPS to ``network.egressCidrs``, and the ports above.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network
from typing import Literal

import pulumi
import pulumi_openstack as openstack

from infra.cloud.network import subnet_plan
from infra.cloud.tags import Tagger
from infra.model import StackModel

COMPONENT = "security"

SSH = 22
DNS = 53
HTTPS = 443
KUBE_API = 6443
ETCD = (2379, 2380)
KUBELET = 10250
VXLAN = 4789  # the pod overlay (Calico VXLAN); pod-to-pod and pod-to-node traffic is encapsulated in it
INGRESS_NODE_PORT = 30443  # the ingress controller's HTTPS NodePort (fixed; the public LB targets it)
POSTGRES = 5432

#: security group key -> tier it protects
GROUPS: dict[str, str] = {"bastion": "mgmt", "control-plane": "app", "worker": "app", "data": "data"}
NODE_GROUPS = ("control-plane", "worker")


@dataclass(frozen=True)
class Rule:
    group: str
    direction: Literal["ingress", "egress"]
    protocol: Literal["tcp", "udp"]
    ports: tuple[int, int]
    remote_cidr: IPv4Network | None = None
    remote_group: str | None = None
    why: str = ""

    def __post_init__(self) -> None:
        if (self.remote_cidr is None) == (self.remote_group is None):
            raise ValueError(f"rule {self}: exactly one of remote_cidr/remote_group (a rule without one is open)")

    @property
    def key(self) -> str:
        remote = self.remote_group or str(self.remote_cidr).replace("/", "_")
        lo, hi = self.ports
        port = str(lo) if lo == hi else f"{lo}-{hi}"
        return f"{self.group}-{self.direction[:2]}-{self.protocol}{port}-{remote}"


def _one(port: int) -> tuple[int, int]:
    return (port, port)


def plan_rules(model: StackModel) -> list[Rule]:
    """Every security group rule of the stack, derived from the model."""
    net = model.network
    plan = subnet_plan(net)
    mgmt, lb_internal, lb_public = net.mgmt, plan["dmz-internal"][1], plan["dmz-public"][1]
    rules: list[Rule] = []

    def add(
        group: str,
        direction: Literal["ingress", "egress"],
        proto: Literal["tcp", "udp"],
        ports: tuple[int, int],
        why: str,
        *,
        cidr: IPv4Network | None = None,
        to: str | None = None,
    ) -> None:
        rules.append(Rule(group, direction, proto, ports, cidr, to, why))

    # bastion (mgmt): the only way in from outside
    for cidr in net.admin_cidrs:
        add("bastion", "ingress", "tcp", _one(SSH), "operators reach the bastion", cidr=cidr)
    for target in ("control-plane", "worker", "data"):
        add("bastion", "egress", "tcp", _one(SSH), f"bastion to {target} hosts", to=target)
    add("bastion", "egress", "tcp", _one(KUBE_API), "kubectl to the API servers", to="control-plane")
    add("bastion", "egress", "tcp", _one(KUBE_API), "kubectl via the internal API LB", cidr=lb_internal)

    # every host behind the bastion: SSH only from the bastion
    for group in ("control-plane", "worker", "data"):
        add(group, "ingress", "tcp", _one(SSH), "SSH only from the bastion", to="bastion")

    # control plane: the API only from mgmt and the internal LB; etcd and kubelet among themselves
    add("control-plane", "ingress", "tcp", _one(KUBE_API), "Kubernetes API from mgmt", cidr=mgmt)
    add("control-plane", "ingress", "tcp", _one(KUBE_API), "Kubernetes API from the internal LB", cidr=lb_internal)
    add("control-plane", "ingress", "tcp", ETCD, "etcd peers and clients", to="control-plane")
    add("control-plane", "egress", "tcp", ETCD, "etcd peers and clients", to="control-plane")
    for group in NODE_GROUPS:
        add(group, "ingress", "tcp", _one(KUBELET), "kubelet API from the API servers", to="control-plane")
        add("control-plane", "egress", "tcp", _one(KUBELET), f"API server to {group} kubelets", to=group)
        add(group, "egress", "tcp", _one(KUBE_API), "kubelets and pods to the internal API LB", cidr=lb_internal)
        for peer in NODE_GROUPS:
            add(group, "ingress", "udp", _one(VXLAN), f"pod overlay from {peer}", to=peer)
            add(group, "egress", "udp", _one(VXLAN), f"pod overlay to {peer}", to=peer)

    # workers: the ingress node port only from the public LB
    add("worker", "ingress", "tcp", _one(INGRESS_NODE_PORT), "ingress node port from the public LB", cidr=lb_public)

    # data tier: database traffic only from the workers
    add("data", "ingress", "tcp", _one(POSTGRES), "databases from the workers", to="worker")
    add("worker", "egress", "tcp", _one(POSTGRES), "workers to the data tier", to="data")

    # explicit egress every host needs: DNS to the model's nameservers, HTTPS to the allowed ranges
    for group in GROUPS:
        for ns in net.dns_nameservers:
            add(group, "egress", "udp", _one(DNS), "DNS", cidr=IPv4Network(f"{ns}/32"))
            add(group, "egress", "tcp", _one(DNS), "DNS", cidr=IPv4Network(f"{ns}/32"))
        for cidr in net.egress_cidrs:
            add(group, "egress", "tcp", _one(HTTPS), "HTTPS to mirrors, registry, OpenStack APIs", cidr=cidr)
    return rules


class SecurityGroups(pulumi.ComponentResource):
    """One security group per role (``GROUPS``), default rules deleted, then ``plan_rules``."""

    def __init__(
        self, name: str, model: StackModel, tagger: Tagger, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("govcloud:cloud:SecurityGroups", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.groups: dict[str, openstack.networking.SecGroup] = {}
        for key, tier in GROUPS.items():
            self.groups[key] = openstack.networking.SecGroup(
                f"sg-{key}",
                name=tagger.name(tier, key),
                description=tagger.describe(COMPONENT, f"{key} hosts in the {tier} tier"),
                delete_default_rules=True,
                stateful=True,
                tags=tagger.tags(COMPONENT),
                opts=child,
            )
        self.rules = plan_rules(model)
        for rule in self.rules:
            lo, hi = rule.ports
            openstack.networking.SecGroupRule(
                rule.key,
                security_group_id=self.groups[rule.group].id,
                description=tagger.describe(COMPONENT, rule.why),
                direction=rule.direction,
                ethertype="IPv4",
                protocol=rule.protocol,
                port_range_min=lo,
                port_range_max=hi,
                remote_ip_prefix=str(rule.remote_cidr) if rule.remote_cidr else None,
                remote_group_id=self.groups[rule.remote_group].id if rule.remote_group else None,
                opts=child,
            )
        self.register_outputs({"group_ids": {k: g.id for k, g in self.groups.items()}})

    def group_id(self, key: str) -> pulumi.Output[str]:
        return self.groups[key].id
