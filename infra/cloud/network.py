"""Network tiers: one Neutron network per tier, subnets from the model, one router with the external gateway.

The ``dmz`` tier is split in two halves: ``dmz-public`` holds the public (ingress) load balancer,
``dmz-internal`` the internal Kubernetes API load balancer. Octavia amphorae talk to their members
from an address of their VIP subnet, so the halves let security rules tell the two balancers apart.
"""

from __future__ import annotations

from ipaddress import IPv4Network

import pulumi
import pulumi_openstack as openstack

from infra.cloud.tags import Tagger
from infra.model.stack import TIERS
from infra.model.stack import Network as NetworkModel

COMPONENT = "network"


def subnet_plan(net: NetworkModel) -> dict[str, tuple[str, IPv4Network]]:
    """Subnet key -> (tier, CIDR). Derived from the model only."""
    plan: dict[str, tuple[str, IPv4Network]] = {}
    for tier in TIERS:
        cidr = net.tier(tier)
        if tier == "dmz":
            public, internal = cidr.subnets(prefixlen_diff=1)
            plan["dmz-public"] = (tier, public)
            plan["dmz-internal"] = (tier, internal)
        else:
            plan[tier] = (tier, cidr)
    return plan


class Network(pulumi.ComponentResource):
    """Networks, subnets, router and router interfaces of one stack."""

    def __init__(
        self, name: str, net: NetworkModel, tagger: Tagger, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("govcloud:cloud:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = tagger.tags(COMPONENT)
        self.plan = subnet_plan(net)
        external = openstack.networking.get_network_output(
            name=net.external_network, external=True, opts=pulumi.InvokeOutputOptions(parent=self)
        )
        self.router = openstack.networking.Router(
            "router",
            name=tagger.name("router"),
            description=tagger.describe(COMPONENT, "router with the external gateway (SNAT for egress)"),
            external_network_id=external.id,
            enable_snat=True,
            tags=tags,
            opts=child,
        )
        self.networks: dict[str, openstack.networking.Network] = {}
        for tier in TIERS:
            self.networks[tier] = openstack.networking.Network(
                f"net-{tier}",
                name=tagger.name(tier),
                description=tagger.describe(COMPONENT, f"{tier} tier"),
                admin_state_up=True,
                port_security_enabled=True,
                tags=tags,
                opts=child,
            )
        self.subnets: dict[str, openstack.networking.Subnet] = {}
        for key, (tier, cidr) in self.plan.items():
            subnet = openstack.networking.Subnet(
                f"subnet-{key}",
                name=tagger.name(key),
                description=tagger.describe(COMPONENT, f"{key} subnet"),
                network_id=self.networks[tier].id,
                cidr=str(cidr),
                ip_version=4,
                enable_dhcp=True,
                dns_nameservers=[str(ip) for ip in net.dns_nameservers],
                tags=tags,
                opts=child,
            )
            self.subnets[key] = subnet
            openstack.networking.RouterInterface(
                f"router-{key}", router_id=self.router.id, subnet_id=subnet.id, opts=child
            )
        self.register_outputs({"router_id": self.router.id, "subnet_ids": {k: s.id for k, s in self.subnets.items()}})

    def network_id(self, key: str) -> pulumi.Output[str]:
        return self.networks[self.plan[key][0]].id

    def cidr(self, key: str) -> IPv4Network:
        return self.plan[key][1]
