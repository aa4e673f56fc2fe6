"""The fleet read from the cloud itself: servers tagged with the stack, grouped by their ``govcloud-role``.

For when Pulumi's outputs are not at hand (another operator's laptop, a lost state, a cloud changed by
hand). It gives the same ``Fleet`` as ``fleet_from_outputs``, so the inventory has the same shape:
the bastion's public address is the floating IP on its port, nodes are reached on their fixed address
in their tier, the Kubernetes API is the internal load balancer's VIP (Octavia), or, on a cloud without
Octavia, the first control-plane node.
"""

from __future__ import annotations

from ipaddress import IPv4Address, ip_address
from typing import TYPE_CHECKING, Any

from infra.cloud.tags import Tagger, backup_containers
from infra.hosts.fleet import Fleet, Host
from infra.model import StackError, StackModel
from infra.ops.openstack_api import cloud_errors, has_service
from infra.ops.sweep import Marks

if TYPE_CHECKING:
    from openstack.connection import Connection

GROUP_OF_ROLE = {"bastion": "bastion", "control-plane": "control_plane", "worker": "workers"}
API_BALANCER = "kube-api"


def _fixed_address(conn: Connection, server: Any) -> tuple[str, IPv4Address | None]:
    """(port id, first IPv4 fixed address) of the server's port."""
    for port in conn.network.ports(device_id=server.id):
        for fixed in port.fixed_ips or []:
            addr = ip_address(fixed["ip_address"])
            if isinstance(addr, IPv4Address):
                return port.id, addr
    return "", None


def fleet_from_cloud(model: StackModel, conn: Connection) -> Fleet:
    """Servers marked with the stack; one line per problem (a host without role or address)."""
    from infra.cloud.loadbalancers import balancer_specs

    source = f"cloud {model.cloud.cloud!r} (servers tagged govcloud-stack={model.name})"
    marks = Marks(model.name)
    hosts: list[Host] = []
    problems: list[str] = []
    with cloud_errors(model.cloud.cloud):
        servers = sorted((s for s in conn.compute.servers(details=True) if marks.any(s)), key=lambda s: s.name)
        for server in servers:
            meta = server.metadata or {}
            role, pool = meta.get("govcloud-role"), meta.get("govcloud-pool", "")
            if role not in GROUP_OF_ROLE:
                problems.append(f"{source}: server {server.name}: metadata govcloud-role is {role!r} "
                                f"(expected one of {', '.join(GROUP_OF_ROLE)})")
                continue
            port_id, private = _fixed_address(conn, server)
            if private is None:
                problems.append(f"{source}: server {server.name}: no IPv4 address on any port")
                continue
            address = private
            if role == "bastion":
                ips = list(conn.network.ips(port_id=port_id))
                if not ips:
                    problems.append(f"{source}: bastion {server.name}: no floating IP on its port (nothing to reach)")
                    continue
                address = IPv4Address(ips[0].floating_ip_address)
            hosts.append(Host(server.name, GROUP_OF_ROLE[role], address, private, pool or role))
        if problems:
            raise StackError(problems)
        port = next(s.port for s in balancer_specs(model) if s.key == API_BALANCER)
        vip: IPv4Address | None = None
        if has_service(conn, "load-balancer"):
            name = Tagger.from_model(model).name(API_BALANCER)
            lb = next(iter(conn.load_balancer.load_balancers(name=name)), None)
            vip = IPv4Address(lb.vip_address) if lb else None
        if vip is None:  # no Octavia: kubeadm's endpoint is the first control-plane node
            first = next((h for h in hosts if h.group == "control_plane"), None)
            vip = first.private_address if first else None
    endpoint = f"https://{vip}:{port}" if vip else ""
    return Fleet(source, hosts, endpoint, backup_containers(Tagger.from_model(model)))
