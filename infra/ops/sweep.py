"""The orphan sweep: find everything a stack left on the cloud by its tags and delete it in dependency order.

Teardown leaks are the top pain of ephemeral environments: a cancelled CI job or a failed ``pulumi
destroy`` leaves servers, ports and containers that cost money and block quota. The sweep does not
need Pulumi's state: it finds resources by the markers ``infra.cloud.tags`` puts on every resource
(Neutron/Nova/Octavia tags, Nova/Cinder/Swift metadata, a description marker, or for kinds with none
of these the ``govcloud-<stack>-`` name prefix), so it also cleans what a lost state forgot.

Order: servers -> load balancers -> floating IPs -> ports -> router interfaces -> routers -> subnets
-> networks -> security groups -> server groups -> volumes -> keypairs -> DNS zones -> object
containers (their objects first). What the cloud refuses (a port still in use, a volume detaching) is
retried until a deadline; what is still there then is reported with the cloud's reason. Every step
looks the world up again, so an interrupted sweep is finished by running it again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from infra.cloud.tags import PREFIX
from infra.ops.openstack_api import cloud_errors, describe, has_service

if TYPE_CHECKING:
    from openstack.connection import Connection

Progress = Callable[[str], None]

ROUTER_INTERFACE_OWNERS = ("network:router_interface", "network:router_interface_distributed",
                           "network:ha_router_replicated_interface")


@dataclass(frozen=True)
class Found:
    kind: str
    id: str
    name: str
    parent: str = ""  # the router of a router interface, the container of an object


@dataclass
class SweepReport:
    stack: str
    dry_run: bool
    found: list[Found] = field(default_factory=list)
    deleted: list[Found] = field(default_factory=list)
    failed: dict[Found, str] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not self.failed

    def as_dict(self) -> dict[str, Any]:
        def row(f: Found) -> dict[str, str]:
            return {"kind": f.kind, "name": f.name, "id": f.id}

        return {"stack": self.stack, "dry_run": self.dry_run, "found": [row(f) for f in self.found],
                "deleted": [row(f) for f in self.deleted],
                "failed": [{**row(f), "reason": why} for f, why in self.failed.items()]}


class Marks:
    """How a resource of this stack is recognised, for each way the cloud lets us mark one."""

    def __init__(self, stack: str, other_stacks: Iterable[str] = ()) -> None:
        self.stack = stack
        self.tag = f"{PREFIX}-stack={stack}"
        self.prefix = f"{PREFIX}-{stack}-"
        # "govcloud-ci-" is also the start of stack "ci-2"'s names: never take those by name
        self._longer = tuple(f"{PREFIX}-{o}-" for o in other_stacks if o != stack and o.startswith(f"{stack}-"))

    def tags(self, resource: Any) -> bool:
        return self.tag in (getattr(resource, "tags", None) or [])

    def metadata(self, resource: Any) -> bool:
        meta = {str(k).lower(): v for k, v in (getattr(resource, "metadata", None) or {}).items()}
        return meta.get(f"{PREFIX}-stack") == self.stack

    def description(self, resource: Any) -> bool:
        text = getattr(resource, "description", None) or ""
        return f"{self.tag} " in text or text.endswith(self.tag) or f"{self.tag}]" in text

    def name(self, resource: Any) -> bool:
        name = getattr(resource, "name", None) or ""
        return name.startswith(self.prefix) and not name.startswith(self._longer)

    def any(self, resource: Any) -> bool:
        return self.tags(resource) or self.metadata(resource) or self.description(resource)


class Sweeper:
    def __init__(self, conn: Connection, marks: Marks, say: Progress, timeout_s: float = 300.0,
                 poll_s: float = 1.0) -> None:
        self.conn, self.marks, self.say = conn, marks, say
        self.timeout_s, self.poll_s = timeout_s, poll_s
        self._services = {s: has_service(conn, s) for s in ("load-balancer", "block-storage", "dns", "object-store")}
        self.cloud = conn.config.name

    # --- discovery, one function per kind, in deletion order -----------------------------------------
    def servers(self) -> Iterator[Found]:
        for s in self.conn.compute.servers(details=True):
            if self.marks.any(s):
                yield Found("server", s.id, s.name)

    def load_balancers(self) -> Iterator[Found]:
        if self._services["load-balancer"]:
            for lb in self.conn.load_balancer.load_balancers():
                if self.marks.any(lb):
                    yield Found("load balancer", lb.id, lb.name or lb.id)

    def floating_ips(self) -> Iterator[Found]:
        for ip in self.conn.network.ips(tags=self.marks.tag):
            yield Found("floating ip", ip.id, ip.floating_ip_address or ip.id)

    def ports(self) -> Iterator[Found]:
        for p in self.conn.network.ports(tags=self.marks.tag):
            if p.device_owner not in ROUTER_INTERFACE_OWNERS:
                yield Found("port", p.id, p.name or p.id)

    def router_interfaces(self) -> Iterator[Found]:
        for r in self.conn.network.routers(tags=self.marks.tag):
            for p in self.conn.network.ports(device_id=r.id):
                if p.device_owner in ROUTER_INTERFACE_OWNERS:
                    yield Found("router interface", p.id, f"{r.name}:{p.fixed_ips[0]['ip_address'] if p.fixed_ips else p.id}", r.id)

    def routers(self) -> Iterator[Found]:
        for r in self.conn.network.routers(tags=self.marks.tag):
            yield Found("router", r.id, r.name)

    def subnets(self) -> Iterator[Found]:
        for s in self.conn.network.subnets(tags=self.marks.tag):
            yield Found("subnet", s.id, s.name)

    def networks(self) -> Iterator[Found]:
        for n in self.conn.network.networks(tags=self.marks.tag):
            yield Found("network", n.id, n.name)

    def security_groups(self) -> Iterator[Found]:
        for g in self.conn.network.security_groups(tags=self.marks.tag):
            yield Found("security group", g.id, g.name)

    def server_groups(self) -> Iterator[Found]:
        for g in self.conn.compute.server_groups():
            if self.marks.name(g):
                yield Found("server group", g.id, g.name)

    def volumes(self) -> Iterator[Found]:
        if self._services["block-storage"]:
            for v in self.conn.block_storage.volumes(details=True):
                if self.marks.any(v):
                    yield Found("volume", v.id, v.name or v.id)

    def keypairs(self) -> Iterator[Found]:
        for k in self.conn.compute.keypairs():
            if self.marks.name(k):
                yield Found("keypair", k.name, k.name)

    def dns_zones(self) -> Iterator[Found]:
        if self._services["dns"]:
            for z in self.conn.dns.zones():
                if self.marks.description(z):
                    yield Found("dns zone", z.id, z.name)

    def containers(self) -> Iterator[Found]:
        if self._services["object-store"]:
            for c in self.conn.object_store.containers():
                meta = self.conn.object_store.get_container_metadata(c.name)
                if self.marks.metadata(meta):
                    yield Found("container", c.name, c.name)

    def order(self) -> list[tuple[Callable[[], Iterator[Found]], Callable[[Found], object]]]:
        return [
            (self.servers, self._delete_server),
            (self.load_balancers, lambda f: self.conn.load_balancer.delete_load_balancer(f.id, cascade=True)),
            (self.floating_ips, lambda f: self.conn.network.delete_ip(f.id)),
            (self.ports, lambda f: self.conn.network.delete_port(f.id)),
            (self.router_interfaces, lambda f: self.conn.network.remove_interface_from_router(f.parent, port=f.id)),
            (self.routers, lambda f: self.conn.network.delete_router(f.id)),
            (self.subnets, lambda f: self.conn.network.delete_subnet(f.id)),
            (self.networks, lambda f: self.conn.network.delete_network(f.id)),
            (self.security_groups, lambda f: self.conn.network.delete_security_group(f.id)),
            (self.server_groups, lambda f: self.conn.compute.delete_server_group(f.id)),
            (self.volumes, lambda f: self.conn.block_storage.delete_volume(f.id)),
            (self.keypairs, lambda f: self.conn.compute.delete_keypair(f.id)),
            (self.dns_zones, lambda f: self.conn.dns.delete_zone(f.id)),
            (self.containers, self._delete_container),
        ]

    # --- deletion -------------------------------------------------------------------------------------
    def _delete_server(self, f: Found) -> None:
        self.conn.compute.delete_server(f.id)

    def _delete_container(self, f: Found) -> None:
        store = self.conn.object_store
        names = [o.name for o in store.objects(f.id)]
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(lambda n: store.delete_object(n, container=f.id), names))
        store.delete_container(f.id)

    def _gone(self, discover: Callable[[], Iterator[Found]], items: list[Found]) -> list[Found]:
        """Of ``items``, those the cloud still lists (servers and load balancers are deleted asynchronously)."""
        ids = {f.id for f in discover()}
        return [f for f in items if f.id in ids]

    def run(self, dry_run: bool = False) -> SweepReport:
        from openstack import exceptions as sdk

        report = SweepReport(self.marks.stack, dry_run)
        deadline = time.monotonic() + self.timeout_s
        for discover, delete in self.order():  # delete returns whatever the sdk returns; unused
            found = list(discover())
            if not found:
                continue
            report.found += found
            kind = found[0].kind
            if dry_run:
                self.say(f"would delete {len(found)} {kind}(s)")
                continue
            self.say(f"deleting {len(found)} {kind}(s)")
            pending, reasons, wait = found, {}, self.poll_s
            while pending:
                for item in pending:
                    try:
                        delete(item)
                    except sdk.NotFoundException:
                        pass
                    except Exception as exc:  # refused for now (in use, conflict): retried below
                        reasons[item] = describe(exc, self.cloud)
                # deletion may be asynchronous: wait for what the cloud still lists
                pending = self._gone(discover, pending)
                if not pending or time.monotonic() > deadline:
                    break
                time.sleep(min(wait, max(0.0, deadline - time.monotonic())))  # back off between retries
                wait = min(wait * 1.5, 10.0)
            for item in found:
                if item in pending:
                    report.failed[item] = reasons.get(item, f"still present after {self.timeout_s:.0f}s")
                else:
                    report.deleted.append(item)
            if pending:
                self.say(f"{len(pending)} {kind}(s) could not be deleted")
        return report


def sweep(conn: Connection, stack: str, say: Progress, *, dry_run: bool = False, timeout_s: float = 300.0,
          other_stacks: Iterable[str] = ()) -> SweepReport:
    """Delete (or with ``dry_run`` only list) everything on the cloud marked as the stack's.

    A cloud that stops answering midway raises ``CloudError`` (one line); running the sweep again finishes it.
    """
    with cloud_errors(conn.config.name):
        return Sweeper(conn, Marks(stack, other_stacks), say, timeout_s).run(dry_run)
