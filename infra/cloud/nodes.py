"""Hosts: Kubernetes node pools (control plane and workers) and the shape shared with the bastion.

Every host boots from its own Cinder volume (created explicitly so it carries the stack's metadata and
an orphan sweep finds it), sits in an anti-affinity server group of its pool, has one port in its tier
with its security groups, cloud-init user data, and metadata labels the Ansible inventory reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_openstack as openstack

from infra.cloud.cloudinit import user_data
from infra.cloud.tags import Tagger
from infra.model import StackModel

COMPONENT = "nodes"
CONTROL_PLANE = "control-plane"
SERVER_GROUP_POLICY = "anti-affinity"


@dataclass(frozen=True)
class PoolSpec:
    """One group of identical hosts. ``role`` is what the inventory groups by."""

    name: str
    role: str
    count: int
    flavor: str
    volume_gb: int
    subnet: str
    security_groups: tuple[str, ...]


def pool_specs(model: StackModel) -> list[PoolSpec]:
    """The Kubernetes node pools of the stack, from the model."""
    cp = model.cluster.control_plane
    specs = [PoolSpec(CONTROL_PLANE, CONTROL_PLANE, cp.count, cp.flavor, cp.volume_gb, "app", ("control-plane",))]
    specs += [
        PoolSpec(w.name, "worker", w.count, w.flavor, w.volume_gb, "app", ("worker",)) for w in model.cluster.workers
    ]
    return specs


def host_names(tagger: Tagger, spec: PoolSpec) -> list[str]:
    """``govcloud-<stack>-<pool>-<n>``: the names of a pool's servers, ports and boot volumes."""
    return [tagger.name(spec.name, str(i)) for i in range(1, spec.count + 1)]


def host_component(spec: PoolSpec) -> str:
    return "bastion" if spec.role == "bastion" else COMPONENT


def host_labels(tagger: Tagger, model: StackModel, spec: PoolSpec) -> dict[str, str]:
    """Metadata of a host's server and boot volume: the stack's marks plus what the inventory groups by."""
    return tagger.metadata(
        host_component(spec),
        **{
            "govcloud-role": spec.role,
            "govcloud-pool": spec.name,
            "govcloud-tier": spec.subnet,
            "kubernetes-version": model.cluster.kubernetes_version,
        },
    )


@dataclass
class Host:
    name: str
    port: openstack.networking.Port
    instance: openstack.compute.Instance

    @property
    def address(self) -> pulumi.Output[str]:
        return self.port.all_fixed_ips.apply(lambda ips: ips[0])


class Lookups:
    """Image and flavor IDs looked up by name (invokes), one lookup per distinct name."""

    def __init__(self, parent: pulumi.Resource, region: str) -> None:
        self._parent = parent
        self._region = region
        self._images: dict[str, pulumi.Output[str]] = {}
        self._flavors: dict[str, pulumi.Output[str]] = {}

    def image(self, name: str) -> pulumi.Output[str]:
        if name not in self._images:
            self._images[name] = openstack.images.get_image_output(
                name=name, most_recent=True, region=self._region, opts=pulumi.InvokeOutputOptions(parent=self._parent)
            ).id
        return self._images[name]

    def flavor(self, name: str) -> pulumi.Output[str]:
        if name not in self._flavors:
            self._flavors[name] = openstack.compute.get_flavor_output(
                name=name, region=self._region, opts=pulumi.InvokeOutputOptions(parent=self._parent)
            ).id
        return self._flavors[name]


@dataclass(frozen=True)
class Placement:
    """Where hosts go: network/subnet IDs by subnet key and security group IDs by key."""

    network_ids: dict[str, pulumi.Output[str]]
    subnet_ids: dict[str, pulumi.Output[str]]
    group_ids: dict[str, pulumi.Output[str]]


class HostGroup(pulumi.ComponentResource):
    """A server group with anti-affinity and ``spec.count`` hosts in it."""

    def __init__(
        self,
        name: str,
        spec: PoolSpec,
        model: StackModel,
        tagger: Tagger,
        lookups: Lookups,
        placement: Placement,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("govcloud:cloud:HostGroup", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        component = host_component(spec)
        self.spec = spec
        self.server_group = openstack.compute.ServerGroup(
            f"{spec.name}-group",
            name=tagger.name(spec.name),
            policies=SERVER_GROUP_POLICY,
            region=model.cloud.region,
            opts=child,
        )
        image_id = lookups.image(model.cluster.image)
        flavor_id = lookups.flavor(spec.flavor)
        self.hosts: list[Host] = []
        for index, host in enumerate(host_names(tagger, spec), 1):
            labels = host_labels(tagger, model, spec)
            port = openstack.networking.Port(
                f"{spec.name}-{index}-port",
                name=host,
                description=tagger.describe(component, f"{spec.role} {host}"),
                network_id=placement.network_ids[spec.subnet],
                fixed_ips=[{"subnet_id": placement.subnet_ids[spec.subnet]}],
                security_group_ids=[placement.group_ids[g] for g in spec.security_groups],
                port_security_enabled=True,
                admin_state_up=True,
                tags=tagger.tags(component),
                opts=child,
            )
            volume = openstack.blockstorage.Volume(
                f"{spec.name}-{index}-boot",
                name=f"{host}-boot",
                description=tagger.describe(component, f"boot volume of {host}"),
                size=spec.volume_gb,
                image_id=image_id,
                availability_zone=model.cloud.availability_zone,
                region=model.cloud.region,
                metadata=labels,
                opts=child,
            )
            instance = openstack.compute.Instance(
                f"{spec.name}-{index}",
                name=host,
                flavor_id=flavor_id,
                availability_zone=model.cloud.availability_zone,
                region=model.cloud.region,
                networks=[{"port": port.id}],
                block_devices=[
                    {
                        "uuid": volume.id,
                        "source_type": "volume",
                        "destination_type": "volume",
                        "boot_index": 0,
                        "delete_on_termination": False,  # Pulumi deletes the volume itself
                    }
                ],
                scheduler_hints=[{"group": self.server_group.id}],
                metadata=labels,
                tags=tagger.tags(component),
                user_data=user_data(model, host, spec.role),
                opts=child,
            )
            self.hosts.append(Host(host, port, instance))
        self.register_outputs({"hosts": self.addresses()})

    def addresses(self) -> list[dict[str, pulumi.Output[str] | str]]:
        return [{"name": h.name, "address": h.address} for h in self.hosts]


class NodePools(pulumi.ComponentResource):
    """The Kubernetes nodes: one ``HostGroup`` per pool of ``pool_specs``."""

    def __init__(
        self,
        name: str,
        model: StackModel,
        tagger: Tagger,
        lookups: Lookups,
        placement: Placement,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("govcloud:cloud:NodePools", name, None, opts)
        self.pools = {
            spec.name: HostGroup(
                spec.name, spec, model, tagger, lookups, placement, pulumi.ResourceOptions(parent=self)
            )
            for spec in pool_specs(model)
        }
        self.register_outputs({"pools": {n: p.addresses() for n, p in self.pools.items()}})

    @property
    def control_plane(self) -> list[Host]:
        return self.pools[CONTROL_PLANE].hosts

    @property
    def workers(self) -> list[Host]:
        return [h for n, p in self.pools.items() if n != CONTROL_PLANE for h in p.hosts]
