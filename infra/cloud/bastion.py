"""The bastion: the one host reachable from outside, and the holder of the stack's only floating IP."""

from __future__ import annotations

import pulumi
import pulumi_openstack as openstack

from infra.cloud.nodes import Host, HostGroup, Lookups, Placement, PoolSpec
from infra.cloud.tags import Tagger
from infra.model import StackModel

COMPONENT = "bastion"
BASTION_VOLUME_GB = 20


def bastion_spec(model: StackModel) -> PoolSpec:
    return PoolSpec("bastion", "bastion", 1, model.cluster.bastion_flavor, BASTION_VOLUME_GB, "mgmt", ("bastion",))


class Bastion(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        model: StackModel,
        tagger: Tagger,
        lookups: Lookups,
        placement: Placement,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("govcloud:cloud:Bastion", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        if not model.network.admin_cidrs:
            pulumi.log.warn(
                "network.adminCidrs is empty: nobody can SSH to the bastion from outside "
                "(set it to your operators' VPN/office ranges)",
                resource=self,
            )
        self.group = HostGroup("bastion", bastion_spec(model), model, tagger, lookups, placement, child)
        self.host: Host = self.group.hosts[0]
        self.floating_ip = openstack.networking.FloatingIp(
            "bastion-fip",
            pool=model.network.external_network,
            description=tagger.describe(COMPONENT, "bastion (the stack's only floating IP)"),
            region=model.cloud.region,
            tags=tagger.tags(COMPONENT),
            opts=child,
        )
        openstack.networking.FloatingIpAssociate(
            "bastion-fip-association",
            floating_ip=self.floating_ip.address,
            port_id=self.host.port.id,
            region=model.cloud.region,
            opts=child,
        )
        self.register_outputs({"address": self.floating_ip.address, "private_address": self.host.address})
