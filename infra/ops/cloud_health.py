"""The cloud layer of ``govcloud health``: the stack's OpenStack resources, found by their tags.

Compares what the cloud holds (resources tagged ``govcloud-stack=<stack>``) with what the Pulumi
program creates for the model (``infra.cloud.expected``): servers not ACTIVE, networks, subnets,
routers or security groups missing, a router without its external gateway, floating IPs not attached
to a port, backup containers missing, load balancers not ACTIVE or missing their listener or members.
Resources tagged with the stack that the program would not create are reported too (drift or leftovers of
a failed run).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from infra.model import StackModel
from infra.ops.health import DEGRADED, DOWN, OK, Check
from infra.ops.openstack_api import CloudError, cloud_errors, connect
from infra.ops.sweep import Marks

if TYPE_CHECKING:
    from openstack.connection import Connection

LAYER = "cloud"


def _presence(kind: str, want: tuple[str, ...], have: dict[str, Any], status: str = DOWN) -> Check:
    missing = [n for n in want if n not in have]
    extra = sorted(set(have) - set(want))
    if missing:
        return Check(LAYER, kind, status, f"missing: {', '.join(missing)}")
    detail = f"{len(want)}/{len(want)} present"
    if extra:
        return Check(LAYER, kind, DEGRADED, f"{detail}; not created by the program: {', '.join(extra)}")
    return Check(LAYER, kind, OK, detail)


def cloud_layer(model: StackModel, conn: Connection | None = None) -> list[Check]:
    """One check per kind of resource, and one per server."""
    from infra.cloud.expected import expected

    start = time.monotonic()
    want = expected(model)
    try:
        conn = conn or connect(model)
        with cloud_errors(model.cloud.cloud):
            checks = _checks(model, conn, want)
    except CloudError as exc:
        return [Check(LAYER, "api", DOWN, str(exc), time.monotonic() - start)]
    for c in checks:
        c.seconds = round(time.monotonic() - start, 3)
    return checks


def _checks(model: StackModel, conn: Connection, want: Any) -> list[Check]:
    marks = Marks(model.name)
    tag = marks.tag
    net = conn.network
    networks = {n.name: n for n in net.networks(tags=tag)}
    subnets = {s.name: s for s in net.subnets(tags=tag)}
    routers = {r.name: r for r in net.routers(tags=tag)}
    groups = {g.name: g for g in net.security_groups(tags=tag)}
    checks = [
        _presence("networks", want.networks, networks),
        _presence("subnets", want.subnets, subnets),
        _presence("security groups", want.security_groups, groups),
        _router_check(want.routers, routers),
    ]
    servers = {s.name: s for s in conn.compute.servers(details=True) if marks.any(s)}
    for host in want.hosts:
        server = servers.get(host.name)
        if server is None:
            checks.append(Check(LAYER, f"server {host.name}", DOWN, f"missing ({host.pool.role})"))
        elif server.status != "ACTIVE":
            fault = (server.fault or {}).get("message", "") if isinstance(server.fault, dict) else ""
            checks.append(Check(LAYER, f"server {host.name}", DOWN,
                                f"status {server.status}" + (f": {fault}" if fault else "")))
        else:
            checks.append(Check(LAYER, f"server {host.name}", OK, f"ACTIVE ({host.pool.role})"))
    extra = sorted(set(servers) - {h.name for h in want.hosts})
    if extra:
        checks.append(Check(LAYER, "servers", DEGRADED, f"not created by the program: {', '.join(extra)}"))
    checks.append(_floating_ips(list(net.ips(tags=tag)), want.floating_ips))
    if conn.has_service("object-store"):
        containers = {}
        for name in want.containers:
            try:
                containers[name] = conn.object_store.get_container_metadata(name)
            except Exception as exc:
                from openstack import exceptions as sdk

                if not isinstance(exc, sdk.NotFoundException):
                    raise
        checks.append(_presence("backup containers", want.containers, containers))
    if conn.has_service("load-balancer"):
        balancers = {b.name: b for b in conn.load_balancer.load_balancers() if marks.any(b)}
        checks += [_balancer_check(conn, b, balancers.get(b.name)) for b in want.balancers]
    return checks


def _balancer_check(conn: Connection, want: Any, lb: Any) -> Check:
    """Provisioning (the cloud's side) decides the status; operating status is the members' health, i.e. the
    cluster's, and is only reported."""
    name = f"load balancer {want.key}"
    if lb is None:
        return Check(LAYER, name, DOWN, f"{want.name} missing")
    if lb.provisioning_status == "ERROR":
        return Check(LAYER, name, DOWN, f"{want.name} provisioning ERROR")
    if lb.provisioning_status != "ACTIVE":
        return Check(LAYER, name, DEGRADED, f"{want.name} {lb.provisioning_status} (being changed)")
    listeners = {li.name: li for li in conn.load_balancer.listeners(load_balancer_id=lb.id)}
    listener = listeners.get(want.listener)
    if listener is None or listener.protocol_port != want.port:
        return Check(LAYER, name, DOWN, f"{want.name}: no listener on port {want.port} (the VIP {lb.vip_address} "
                                        "answers nothing)")
    pool_id = listener.default_pool_id
    members = {m.name for m in conn.load_balancer.members(pool_id)} if pool_id else set()
    missing = [m for m in want.members if m not in members]
    if missing and len(missing) == len(want.members):
        return Check(LAYER, name, DOWN, f"{want.name}: no members (expected {', '.join(want.members)})")
    detail = f"ACTIVE, {lb.vip_address}:{want.port}, operating {lb.operating_status}"
    if missing:
        return Check(LAYER, name, DEGRADED, f"{detail}; members missing: {', '.join(missing)}")
    return Check(LAYER, name, OK, f"{detail}, {len(want.members)} members")


def _router_check(want: tuple[str, ...], have: dict[str, Any]) -> Check:
    check = _presence("routers", want, have)
    if check.status == DOWN:
        return check
    problems = []
    for name in want:
        router = have[name]
        if not router.external_gateway_info:
            problems.append(f"{name} has no external gateway (no egress)")
        elif router.status != "ACTIVE":
            problems.append(f"{name} is {router.status}")
    return Check(LAYER, "routers", DOWN, "; ".join(problems)) if problems else check


def _floating_ips(ips: list[Any], expected_count: int) -> Check:
    loose = [ip.floating_ip_address for ip in ips if not ip.port_id]
    if loose:
        return Check(LAYER, "floating ips", DEGRADED, f"not attached to any port: {', '.join(loose)} (billed, unused)")
    if len(ips) < expected_count:
        return Check(LAYER, "floating ips", DOWN, f"{len(ips)} of {expected_count} present (the bastion's is missing)")
    return Check(LAYER, "floating ips", OK, f"{len(ips)} attached")


CloudLayer = Callable[[], list[Check]]
