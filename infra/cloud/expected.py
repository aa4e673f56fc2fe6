"""What a stack's Pulumi program creates, by name, computed with the program's own naming functions.

The cloud layer of ``govcloud health`` and the inventory read from the cloud compare against this,
so "what should exist" is stated once: in the model and the functions the program builds from.
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.cloud.bastion import bastion_spec
from infra.cloud.loadbalancers import balancer_specs
from infra.cloud.network import subnet_plan
from infra.cloud.nodes import PoolSpec, host_names, pool_specs
from infra.cloud.security import GROUPS
from infra.cloud.tags import Tagger, backup_containers
from infra.model import StackModel
from infra.model.stack import TIERS


@dataclass(frozen=True)
class ExpectedHost:
    name: str
    pool: PoolSpec


@dataclass(frozen=True)
class ExpectedBalancer:
    key: str
    name: str                 # the load balancer's and its pool's name
    listener: str
    port: int
    members: tuple[str, ...]  # the hosts behind it (member names are host names)


@dataclass(frozen=True)
class Expected:
    networks: tuple[str, ...]
    subnets: tuple[str, ...]
    routers: tuple[str, ...]
    security_groups: tuple[str, ...]
    hosts: tuple[ExpectedHost, ...]
    floating_ips: int  # the bastion's, the stack's only one
    containers: tuple[str, ...]
    balancers: tuple[ExpectedBalancer, ...]


def expected(model: StackModel) -> Expected:
    t = Tagger.from_model(model)
    specs = [bastion_spec(model), *pool_specs(model)]
    hosts = tuple(ExpectedHost(name, spec) for spec in specs for name in host_names(t, spec))
    behind = {"control-plane": tuple(h.name for h in hosts if h.pool.role == "control-plane"),
              "workers": tuple(h.name for h in hosts if h.pool.role == "worker")}
    return Expected(
        networks=tuple(t.name(tier) for tier in TIERS),
        subnets=tuple(t.name(key) for key in subnet_plan(model.network)),
        routers=(t.name("router"),),
        security_groups=tuple(t.name(tier, key) for key, tier in GROUPS.items()),
        hosts=hosts,
        floating_ips=1,
        containers=tuple(backup_containers(t).values()),
        balancers=tuple(ExpectedBalancer(b.key, t.name(b.key), t.name(b.key, str(b.port)), b.port, behind[b.members])
                        for b in balancer_specs(model)),
    )
