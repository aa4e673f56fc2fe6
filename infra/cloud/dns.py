"""Optional Designate zone (``cloud.designate: true``) with records for the API, bastion and ingress."""

from __future__ import annotations

import pulumi
import pulumi_openstack as openstack

from infra.cloud.tags import Tagger
from infra.model import StackModel

COMPONENT = "dns"
TTL = 300


def record_names(model: StackModel) -> dict[str, str]:
    """Record key -> FQDN (trailing dot). Ingress hostnames are the components' ``hostname`` settings."""
    zone = f"{model.domain}."
    names = {"api": f"api.{zone}", "bastion": f"bastion.{zone}", "ingress": f"ingress.{zone}"}
    for name, settings in sorted(model.components.items()):
        if settings.enabled and settings.hostname and f"{settings.hostname}.".endswith(f".{zone}"):
            names[f"host-{name}"] = f"{settings.hostname}."
    return names


class Dns(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        model: StackModel,
        tagger: Tagger,
        addresses: dict[str, pulumi.Output[str]],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """``addresses``: "api", "bastion" and "ingress" -> IPv4 address."""
        super().__init__("govcloud:cloud:Dns", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.zone = openstack.dns.Zone(
            "zone",
            name=f"{model.domain}.",
            email=f"hostmaster@{model.domain}",
            ttl=TTL,
            description=tagger.describe(COMPONENT, f"zone of stack {model.name}"),
            region=model.cloud.region,
            opts=child,
        )
        self.records: dict[str, str] = record_names(model)
        for key, fqdn in self.records.items():
            openstack.dns.RecordSet(
                f"record-{key}",
                zone_id=self.zone.id,
                name=fqdn,
                type="A",
                ttl=TTL,
                records=[addresses[key if key in addresses else "ingress"]],
                description=tagger.describe(COMPONENT, key),
                region=model.cloud.region,
                opts=child,
            )
        self.register_outputs({"zone": self.zone.name, "records": self.records})
