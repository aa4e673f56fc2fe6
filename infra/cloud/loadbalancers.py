"""Octavia load balancers: the internal one for the Kubernetes API, the public one for HTTPS ingress.

Both listeners are TCP (TLS passes through: the API servers and the ingress controller terminate it).
``allowed_cidrs`` is the load balancers' own firewall: the API listener admits ``mgmt`` and ``app``
only; the public 443 listener is the single place in the stack open to 0.0.0.0/0.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network

import pulumi
import pulumi_openstack as openstack

from infra.cloud.nodes import Host
from infra.cloud.security import HTTPS, INGRESS_NODE_PORT, KUBE_API
from infra.cloud.tags import Tagger
from infra.model import StackModel

COMPONENT = "loadbalancers"
WORLD = "0.0.0.0/0"


@dataclass(frozen=True)
class BalancerSpec:
    key: str
    subnet: str
    port: int
    member_port: int
    allowed_cidrs: tuple[str, ...]
    monitor: str
    url_path: str | None
    members: str  # which hosts: "control-plane" or "workers"


def balancer_specs(model: StackModel) -> list[BalancerSpec]:
    net = model.network
    internal_cidrs: tuple[IPv4Network, ...] = (net.mgmt, net.app)
    return [
        BalancerSpec(
            "kube-api",
            "dmz-internal",
            KUBE_API,
            KUBE_API,
            tuple(map(str, internal_cidrs)),
            "HTTPS",
            "/readyz",
            "control-plane",
        ),
        BalancerSpec("ingress", "dmz-public", HTTPS, INGRESS_NODE_PORT, (WORLD,), "TCP", None, "workers"),
    ]


class Balancer(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        spec: BalancerSpec,
        subnet_id: pulumi.Input[str],
        hosts: list[Host],
        model: StackModel,
        tagger: Tagger,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("govcloud:cloud:Balancer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = tagger.tags(COMPONENT)
        region = model.cloud.region
        self.lb = openstack.loadbalancer.LoadBalancer(
            spec.key,
            name=tagger.name(spec.key),
            description=tagger.describe(COMPONENT, f"{spec.key} load balancer"),
            vip_subnet_id=subnet_id,
            region=region,
            tags=tags,
            opts=child,
        )
        self.listener = openstack.loadbalancer.Listener(
            f"{spec.key}-listener",
            name=tagger.name(spec.key, str(spec.port)),
            description=tagger.describe(COMPONENT, f"{spec.key} on {spec.port}"),
            loadbalancer_id=self.lb.id,
            protocol="TCP",
            protocol_port=spec.port,
            allowed_cidrs=list(spec.allowed_cidrs),
            region=region,
            tags=tags,
            opts=child,
        )
        self.pool = openstack.loadbalancer.Pool(
            f"{spec.key}-pool",
            name=tagger.name(spec.key),
            description=tagger.describe(COMPONENT, f"{spec.key} members"),
            listener_id=self.listener.id,
            protocol="TCP",
            lb_method="LEAST_CONNECTIONS",
            region=region,
            tags=tags,
            opts=child,
        )
        openstack.loadbalancer.Monitor(
            f"{spec.key}-monitor",
            name=tagger.name(spec.key, "monitor"),
            pool_id=self.pool.id,
            type=spec.monitor,
            url_path=spec.url_path,
            expected_codes="200" if spec.url_path else None,
            delay=5,
            timeout=3,
            max_retries=3,
            max_retries_down=3,
            region=region,
            opts=child,
        )
        for host in hosts:
            openstack.loadbalancer.Member(
                f"{spec.key}-{host.name}",
                name=host.name,
                pool_id=self.pool.id,
                address=host.address,
                protocol_port=spec.member_port,
                region=region,
                tags=tags,
                opts=child,
            )
        self.vip: pulumi.Output[str] = self.lb.vip_address
        self.register_outputs({"vip": self.vip, "port": spec.port})


class LoadBalancers(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        model: StackModel,
        tagger: Tagger,
        subnet_ids: dict[str, pulumi.Output[str]],
        members: dict[str, list[Host]],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("govcloud:cloud:LoadBalancers", name, None, opts)
        self.specs = {s.key: s for s in balancer_specs(model)}
        self.balancers = {
            s.key: Balancer(
                s.key, s, subnet_ids[s.subnet], members[s.members], model, tagger, pulumi.ResourceOptions(parent=self)
            )
            for s in self.specs.values()
        }
        self.register_outputs({k: b.vip for k, b in self.balancers.items()})
