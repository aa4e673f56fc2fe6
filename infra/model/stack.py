"""The stack model: one typed description of an environment that every layer renders from."""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv4Network
from typing import Literal

from pydantic import Field, field_validator, model_validator

from infra.model.base import Model
from infra.model.bodies import Body, default_bodies

TIERS = ("dmz", "app", "data", "mgmt")
_PRIVATE = [IPv4Network("10.0.0.0/8"), IPv4Network("172.16.0.0/12"), IPv4Network("192.168.0.0/16")]
_QUANTITY_CPU = r"^([1-9][0-9]*m|[0-9]+(\.[0-9]+)?)$"
_QUANTITY_MEM = r"^[1-9][0-9]*(Mi|Gi)$"
_CRON_FIELD = r"(\*|[0-9,\-*/]+)"
_SSH_KEY = r"(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com) [A-Za-z0-9+/=]{16,}( [^\n]*)?"


class Network(Model):
    """The four network tiers inside one private supernet."""

    cidr: IPv4Network = Field(description="supernet every tier must fit in")
    dmz: IPv4Network
    app: IPv4Network
    data: IPv4Network
    mgmt: IPv4Network
    dns_nameservers: list[IPv4Address] = Field(min_length=1)
    external_network: str = Field(default="public", min_length=1)
    admin_cidrs: list[IPv4Network] = Field(
        default_factory=list, description="operator ranges allowed to SSH to the bastion (VPN, office)"
    )
    egress_cidrs: list[IPv4Network] = Field(
        default_factory=list, description="outside ranges hosts may reach on 443 (mirror, registry, OpenStack API)"
    )

    @field_validator("admin_cidrs", "egress_cidrs")
    @classmethod
    def _not_world(cls, value: list[IPv4Network]) -> list[IPv4Network]:
        broad = [str(n) for n in value if n.prefixlen < 8]
        if broad:
            raise ValueError(f"expected ranges of /8 or narrower (never the whole internet), got {', '.join(broad)}")
        return value

    @field_validator("cidr")
    @classmethod
    def _private(cls, value: IPv4Network) -> IPv4Network:
        if not any(value.subnet_of(p) for p in _PRIVATE):
            raise ValueError(f"expected a private (RFC 1918) range, got {value}")
        return value

    @model_validator(mode="after")
    def _tiers_fit(self) -> Network:
        problems = []
        for tier in TIERS:
            net: IPv4Network = getattr(self, tier)
            if not net.subnet_of(self.cidr):
                problems.append(f"{tier} {net} is outside network.cidr {self.cidr}")
        for i, a in enumerate(TIERS):
            for b in TIERS[i + 1 :]:
                if getattr(self, a).overlaps(getattr(self, b)):
                    problems.append(f"{a} {getattr(self, a)} overlaps {b} {getattr(self, b)}")
        if self.dmz.prefixlen > 27:
            problems.append(f"dmz {self.dmz} is too small: expected /27 or larger (halves for public and internal LBs)")
        if problems:
            raise ValueError("; ".join(problems) + " (give each tier its own subnet of network.cidr)")
        return self

    def tier(self, name: str) -> IPv4Network:
        net: IPv4Network = getattr(self, name)
        return net


class NodePool(Model):
    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,20}$")
    count: int = Field(ge=0, le=100)
    flavor: str = Field(min_length=1)
    volume_gb: int = Field(default=50, ge=10, le=2000)


class ControlPlane(Model):
    count: Literal[1, 3, 5] = 1
    flavor: str = "m1.large"
    volume_gb: int = Field(default=50, ge=10, le=2000)


class Cluster(Model):
    kubernetes_version: str = Field(default="1.31.4", pattern=r"^1\.[0-9]{2}\.[0-9]+$")
    image: str = Field(default="debian-12", min_length=1)
    bastion_flavor: str = "m1.small"
    control_plane: ControlPlane = ControlPlane()
    workers: list[NodePool] = Field(default_factory=lambda: [NodePool(name="general", count=2, flavor="m1.xlarge")])
    pod_cidr: IPv4Network = IPv4Network("10.244.0.0/16")
    service_cidr: IPv4Network = IPv4Network("10.96.0.0/12")
    ssh_public_keys: list[str] = Field(default_factory=list, description="authorized keys for every host (cloud-init)")

    @field_validator("ssh_public_keys")
    @classmethod
    def _keys(cls, value: list[str]) -> list[str]:
        bad = [k[:30] for k in value if not re.fullmatch(_SSH_KEY, k)]
        if bad:
            raise ValueError(f"expected OpenSSH public keys ('ssh-ed25519 AAAA... comment'), got {bad}")
        return value

    @field_validator("control_plane", mode="before")
    @classmethod
    def _odd(cls, value: object) -> object:
        if isinstance(value, dict) and value.get("count") in (2, 4, 6):
            raise ValueError(f"control plane count must be odd (1, 3 or 5) for etcd quorum, got {value['count']}")
        return value

    @model_validator(mode="after")
    def _unique_pools(self) -> Cluster:
        names = [p.name for p in self.workers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"worker pool names must be unique, repeated: {', '.join(dupes)}")
        reserved = sorted({"bastion", "control-plane"} & set(names))
        if reserved:
            raise ValueError(f"worker pool names {', '.join(reserved)} are reserved (bastion and control-plane hosts)")
        return self


class Resources(Model):
    cpu: str = Field(default="250m", pattern=_QUANTITY_CPU)
    memory: str = Field(default="256Mi", pattern=_QUANTITY_MEM)


class ComponentSettings(Model):
    """Per-stack settings of one component; what the component needs is in its contract."""

    enabled: bool = True
    replicas: int = Field(default=1, ge=1, le=50)
    resources: Resources = Resources()
    hostname: str | None = Field(default=None, pattern=r"^[a-z0-9]([a-z0-9.-]{0,250}[a-z0-9])?$")
    image: str | None = Field(default=None, description="image reference overriding the locally built one")
    storage: str = Field(default="1Gi", pattern=_QUANTITY_MEM)
    settings: dict[str, str | int | float | bool] = Field(default_factory=dict)


class Retention(Model):
    daily: int = Field(default=7, ge=1, le=366)
    weekly: int = Field(default=4, ge=0, le=520)
    monthly: int = Field(default=6, ge=0, le=120)


class BackupPolicy(Model):
    schedule: str = "0 2 * * *"
    max_age_hours: int = Field(default=26, ge=1, le=24 * 31, description="older than this, health says degraded")
    retention: Retention = Retention()
    repository: Literal["auto", "local", "swift"] = Field(
        default="auto",
        description="where restic keeps the backups: auto = a local directory on the local target, Swift on clouds",
    )

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        if not re.fullmatch(r"\s*" + r"\s+".join([_CRON_FIELD] * 5) + r"\s*", value):
            raise ValueError(f"expected a 5-field cron expression like '0 2 * * *', got {value!r}")
        return value


class Local(Model):
    port_offset: int = Field(default=0, ge=0, le=40000)


class Cloud(Model):
    region: str = "RegionOne"
    cloud: str = Field(default="govcloud", description="entry in clouds.yaml")
    availability_zone: str = "nova"
    designate: bool = Field(default=False, description="create a DNS zone for the domain and its records")


class StackModel(Model):
    """Everything about one stack; loaded from ``stacks/Pulumi.<stack>.yaml``."""

    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,30}$")
    target: Literal["local", "openstack"]
    domain: str = Field(pattern=r"^[a-z0-9]([a-z0-9.-]{0,250}[a-z0-9])?$")
    network: Network
    cluster: Cluster = Cluster()
    cloud: Cloud = Cloud()
    components: dict[str, ComponentSettings] = Field(default_factory=dict)
    backup: BackupPolicy = BackupPolicy()
    local: Local = Local()
    bodies: tuple[Body, ...] = Field(default_factory=default_bodies)
    labels: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _bodies_consistent(self) -> StackModel:
        ids = [b.id for b in self.bodies]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"bodies: repeated id {', '.join(dupes)}")
        unknown = sorted({b.parent for b in self.bodies if b.parent and b.parent not in ids})
        if unknown:
            raise ValueError(f"bodies: parent {', '.join(unknown)} is not a body id")
        return self

    def settings_for(self, component: str) -> ComponentSettings:
        return self.components.get(component, ComponentSettings())

    def enabled(self, component: str) -> bool:
        return self.settings_for(component).enabled
