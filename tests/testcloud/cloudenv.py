"""A small cloud environment on the test cloud, built the way the Pulumi program builds it.

There is no Pulumi CLI on our machines (the program itself is tested with Pulumi's mocks), so this
creates the same resources through openstacksdk, named, tagged and labelled by the program's own
functions (``Tagger``, ``subnet_plan``, ``host_labels``, ``expected``). The operations under test
(sweep, cloud health, inventory from the cloud) only ever see the cloud, never this module.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

import yaml

from infra.cloud.expected import expected
from infra.cloud.loadbalancers import COMPONENT as BALANCERS
from infra.cloud.loadbalancers import balancer_specs
from infra.cloud.network import COMPONENT as NETWORK
from infra.cloud.network import subnet_plan
from infra.cloud.nodes import host_component, host_labels
from infra.cloud.security import COMPONENT as SECURITY
from infra.cloud.security import GROUPS
from infra.cloud.storage import COMPONENT as STORAGE
from infra.cloud.tags import Tagger, backup_containers
from infra.model import StackModel, load_stack, state_root
from infra.model.loader import REPO_ROOT
from infra.model.stack import TIERS


def cloud_stack(conn: Any, prefix: str = "tc", workers: int = 1, **config: Any) -> StackModel:
    """An openstack-target stack file in the state's envs folder, sized for the test cloud."""
    name = f"{prefix}-{secrets.token_hex(3)}"
    flavor = min(conn.compute.flavors(), key=lambda f: (f.vcpus, f.ram)).name
    image = next(iter(conn.image.images())).name
    doc = yaml.safe_load((REPO_ROOT / "stacks/Pulumi.staging.yaml").read_text())
    cfg = doc["config"]
    cfg["govcloud:domain"] = f"{name}.test"
    cfg["govcloud:cloud"] = {"region": "RegionOne", "cloud": "testcloud"}
    cfg["govcloud:cluster"] = {
        "kubernetesVersion": "1.31.4", "image": image, "bastionFlavor": flavor,
        "controlPlane": {"count": 1, "flavor": flavor},
        "workers": [{"name": "general", "count": workers, "flavor": flavor}],
    }
    cfg.update({f"govcloud:{k}": v for k, v in config.items()})
    envs = state_root() / "envs"
    envs.mkdir(parents=True, exist_ok=True)
    (envs / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump(doc))
    return load_stack(name)


@dataclass
class CloudEnv:
    model: StackModel
    networks: dict[str, Any] = field(default_factory=dict)
    subnets: dict[str, Any] = field(default_factory=dict)
    groups: dict[str, Any] = field(default_factory=dict)
    ports: dict[str, Any] = field(default_factory=dict)
    servers: dict[str, Any] = field(default_factory=dict)
    router: Any = None
    floating_ip: Any = None
    balancers: dict[str, Any] = field(default_factory=dict)  # key -> load balancer (Octavia)
    pools: dict[str, Any] = field(default_factory=dict)


def build(conn: Any, model: StackModel, wait: bool = True) -> CloudEnv:
    """Networks, subnets, router with gateway and interfaces, security groups, ports, servers, the bastion's
    floating IP and the backup containers, as ``pulumi up`` would leave them."""
    t = Tagger.from_model(model)
    net = conn.network
    env = CloudEnv(model)
    public = net.find_network(model.network.external_network, ignore_missing=False)
    for tier in TIERS:
        env.networks[tier] = net.create_network(name=t.name(tier), description=t.describe(NETWORK, f"{tier} tier"))
        net.set_tags(env.networks[tier], t.tags(NETWORK))
    env.router = net.create_router(name=t.name("router"), external_gateway_info={"network_id": public.id})
    net.set_tags(env.router, t.tags(NETWORK))
    for key, (tier, cidr) in subnet_plan(model.network).items():
        env.subnets[key] = net.create_subnet(name=t.name(key), network_id=env.networks[tier].id, cidr=str(cidr),
                                             ip_version=4, enable_dhcp=False)
        net.set_tags(env.subnets[key], t.tags(NETWORK))
        net.add_interface_to_router(env.router, subnet_id=env.subnets[key].id)
    for key, tier in GROUPS.items():
        env.groups[key] = net.create_security_group(name=t.name(tier, key), description=t.describe(SECURITY, key))
        net.set_tags(env.groups[key], t.tags(SECURITY))
    flavors = {f.name: f.id for f in conn.compute.flavors()}
    image = conn.image.find_image(model.cluster.image, ignore_missing=False)
    for host in expected(model).hosts:
        spec = host.pool
        port = net.create_port(name=host.name, network_id=env.networks[subnet_plan(model.network)[spec.subnet][0]].id,
                               fixed_ips=[{"subnet_id": env.subnets[spec.subnet].id}],
                               security_group_ids=[env.groups[g].id for g in spec.security_groups])
        net.set_tags(port, t.tags(host_component(spec)))
        env.ports[host.name] = port
        env.servers[host.name] = conn.compute.create_server(
            name=host.name, flavor_id=flavors[spec.flavor], image_id=image.id, networks=[{"port": port.id}],
            metadata=host_labels(t, model, spec))
    bastion = next(h.name for h in expected(model).hosts if h.pool.role == "bastion")
    env.floating_ip = net.create_ip(floating_network_id=public.id, port_id=env.ports[bastion].id)
    net.set_tags(env.floating_ip, t.tags("bastion"))
    for key, container in backup_containers(t).items():
        conn.object_store.create_container(name=container)
        conn.object_store.set_container_metadata(container, **t.metadata(STORAGE, **{"govcloud-backup-of": key}))
    if conn.has_service("load-balancer"):
        _balancers(conn, env, t)
    if wait:
        for name, server in env.servers.items():
            env.servers[name] = conn.compute.wait_for_server(server, status="ACTIVE", wait=180)
    return env


def _balancers(conn: Any, env: CloudEnv, t: Tagger) -> None:
    """The kube-api and ingress load balancers with listener, pool, monitor and members, as ``Balancer`` makes them
    (Octavia takes one change at a time per load balancer: each step waits for ACTIVE)."""
    lbs, tags = conn.load_balancer, t.tags(BALANCERS)
    members = {b.key: b.members for b in expected(env.model).balancers}
    for spec in balancer_specs(env.model):
        lb = lbs.create_load_balancer(name=t.name(spec.key), description=t.describe(BALANCERS, f"{spec.key} load balancer"),
                                      vip_subnet_id=env.subnets[spec.subnet].id, tags=tags)

        def settled(lb: Any = lb) -> Any:
            return lbs.wait_for_load_balancer(lb.id, status="ACTIVE", failures=["ERROR"], interval=0.5, wait=120)

        settled()
        listener = lbs.create_listener(name=t.name(spec.key, str(spec.port)), load_balancer_id=lb.id, protocol="TCP",
                                       protocol_port=spec.port, allowed_cidrs=list(spec.allowed_cidrs), tags=tags)
        settled()
        pool = lbs.create_pool(name=t.name(spec.key), listener_id=listener.id, protocol="TCP",
                               lb_algorithm="LEAST_CONNECTIONS", tags=tags)
        settled()
        lbs.create_health_monitor(name=t.name(spec.key, "monitor"), pool_id=pool.id, type=spec.monitor,
                                  delay=5, timeout=3, max_retries=3, max_retries_down=3,
                                  **({"url_path": spec.url_path, "expected_codes": "200"} if spec.url_path else {}))
        settled()
        for name in members[spec.key]:
            lbs.create_member(pool, name=name, address=env.ports[name].fixed_ips[0]["ip_address"],
                              protocol_port=spec.member_port, tags=tags)
            settled()
        env.balancers[spec.key], env.pools[spec.key] = settled(), pool
