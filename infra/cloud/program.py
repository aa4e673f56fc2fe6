"""The Pulumi program: the stack model in, the government cloud on OpenStack out.

The stack name comes from ``pulumi.get_stack()`` and the configuration from ``pulumi.Config("govcloud")``
(under ``pulumi up`` that is the Pulumi-provided config of ``stacks/Pulumi.<stack>.yaml``); both go
through the model's ``parse_stack``, so a bad stack fails before any resource is declared.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_openstack as openstack

from infra.cloud.bastion import Bastion
from infra.cloud.dns import Dns
from infra.cloud.loadbalancers import LoadBalancers
from infra.cloud.network import Network
from infra.cloud.nodes import Lookups, NodePools, Placement
from infra.cloud.security import GROUPS, SecurityGroups
from infra.cloud.storage import BackupContainers
from infra.cloud.tags import Tagger
from infra.model import StackError, StackModel, parse_stack
from infra.model.loader import PROJECT, REPO_ROOT

#: the top-level keys of the stack outputs (documented in docs/cloud.md)
OUTPUT_KEYS = ("stack", "bastion", "nodes", "kubernetes", "load_balancers", "backup_containers", "networks", "dns")


def _decode(raw: str) -> Any:
    """Pulumi hands structured config values to programs as JSON text; plain strings stay strings."""
    text = raw.strip()
    if text[:1] in ("{", "["):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return raw
    return raw


def _config_keys() -> set[str]:
    """Every ``govcloud:`` key Pulumi provides, so a misspelt key reaches the model and is refused."""
    keys = {info.alias or name for name, info in StackModel.model_fields.items() if name != "name"}
    try:
        from pulumi.runtime import config as runtime_config

        provided = set(runtime_config.CONFIG.get()) | set(runtime_config.get_config_env())
    except (AttributeError, ValueError):  # internal API moved: fall back to the model's own keys
        provided = set()
    keys |= {k.split(":", 1)[1] for k in provided if k.startswith(f"{PROJECT}:")}
    return keys


def config_from_pulumi() -> dict[str, Any]:
    cfg = pulumi.Config(PROJECT)
    values: dict[str, Any] = {}
    for key in sorted(_config_keys()):
        raw = cfg.get(key)
        if raw is not None:
            values[key] = _decode(raw)
    return values


def load_model(stack: str) -> StackModel:
    """The stack model from Pulumi's config; refuses bad stacks and non-OpenStack targets in one line each."""
    path = REPO_ROOT / "stacks" / f"Pulumi.{stack}.yaml"
    try:
        model = parse_stack(stack, path, config_from_pulumi())
    except StackError as exc:
        raise pulumi.RunError(str(exc)) from None
    if model.target != "openstack":
        raise pulumi.RunError(
            f"stack {stack!r} has target {model.target!r}: this Pulumi program provisions OpenStack only "
            f"(run the local target with `govcloud up -s {stack}`)"
        )
    return model


class Cloud(pulumi.ComponentResource):
    """Everything of one stack, in dependency order: network, security, hosts, edges, storage, DNS."""

    def __init__(self, name: str, model: StackModel, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("govcloud:cloud:Cloud", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tagger = Tagger.from_model(model)
        self.model = model
        self.network = Network("network", model.network, tagger, child)
        self.security = SecurityGroups("security", model, tagger, child)
        lookups = Lookups(self, model.cloud.region)
        placement = Placement(
            network_ids={k: self.network.network_id(k) for k in self.network.plan},
            subnet_ids={k: s.id for k, s in self.network.subnets.items()},
            group_ids={k: self.security.group_id(k) for k in GROUPS},
        )
        self.bastion = Bastion("bastion", model, tagger, lookups, placement, child)
        self.nodes = NodePools("nodes", model, tagger, lookups, placement, child)
        self.balancers = LoadBalancers(
            "loadbalancers",
            model,
            tagger,
            placement.subnet_ids,
            {"control-plane": self.nodes.control_plane, "workers": self.nodes.workers},
            child,
        )
        self.backups = BackupContainers("backups", model, tagger, child)
        self.dns: Dns | None = None
        if model.cloud.designate:
            self.dns = Dns(
                "dns",
                model,
                tagger,
                {
                    "api": self.balancers.balancers["kube-api"].vip,
                    "ingress": self.balancers.balancers["ingress"].vip,
                    "bastion": self.bastion.floating_ip.address,
                },
                child,
            )
        self.outputs = self._outputs()
        self.register_outputs(self.outputs)

    def _outputs(self) -> dict[str, Any]:
        model = self.model
        api = self.balancers.balancers["kube-api"]
        return {
            "stack": model.name,
            "bastion": {
                "name": self.bastion.host.name,
                "address": self.bastion.floating_ip.address,
                "private_address": self.bastion.host.address,
            },
            "nodes": {
                pool: [{"name": h.name, "address": h.address, "role": group.spec.role} for h in group.hosts]
                for pool, group in self.nodes.pools.items()
            },
            "kubernetes": {
                "api_endpoint": pulumi.Output.concat("https://", api.vip, ":", str(api_port(self))),
                "version": model.cluster.kubernetes_version,
                "pod_cidr": str(model.cluster.pod_cidr),
                "service_cidr": str(model.cluster.service_cidr),
                "domain": model.domain,
            },
            "load_balancers": {
                key: {
                    "vip": b.vip,
                    "port": self.balancers.specs[key].port,
                    "allowed_cidrs": list(self.balancers.specs[key].allowed_cidrs),
                }
                for key, b in self.balancers.balancers.items()
            },
            "backup_containers": dict(self.backups.names),
            "networks": {
                key: {"tier": tier, "cidr": str(cidr), "subnet_id": self.network.subnets[key].id}
                for key, (tier, cidr) in self.network.plan.items()
            },
            "dns": {"zone": self.dns.zone.name, "records": self.dns.records} if self.dns else None,
        }


def api_port(cloud: Cloud) -> int:
    return cloud.balancers.specs["kube-api"].port


def build(stack: str | None = None) -> Cloud:
    """Declare every resource of the stack (``pulumi.get_stack()`` unless given) and return the root."""
    name = stack or pulumi.get_stack()
    model = load_model(name)
    provider = openstack.Provider("openstack", cloud=model.cloud.cloud, region=model.cloud.region)
    return Cloud(f"govcloud-{name}", model, pulumi.ResourceOptions(providers=[provider]))


def main() -> None:
    cloud = build()
    for key in OUTPUT_KEYS:
        pulumi.export(key, cloud.outputs[key])
