"""Tags and metadata on every resource, so an orphan sweep can find what a stack left behind.

Neutron, Nova and Octavia resources take ``tags`` (strings); Nova servers, Cinder volumes and Swift
containers take ``metadata`` (a mapping). Resources with neither carry the marker in their
description, or failing that in their name (``govcloud-<stack>-...``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from infra.model import StackModel

CREATED_BY = "pulumi-govcloud"
RESTIC, ETCD = "restic", "etcd"
DEFAULT_OWNER = "govcloud-platform"
PREFIX = "govcloud"


@dataclass(frozen=True)
class Tagger:
    stack: str
    owner: str = DEFAULT_OWNER
    labels: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_model(cls, model: StackModel) -> Tagger:
        labels = {k: v for k, v in model.labels.items() if k != "owner"}
        return cls(stack=model.name, owner=model.labels.get("owner", DEFAULT_OWNER), labels=labels)

    def metadata(self, component: str, **extra: str) -> dict[str, str]:
        """Key/value form (Nova metadata, Cinder metadata, Swift container metadata)."""
        return {
            f"{PREFIX}-stack": self.stack,
            f"{PREFIX}-component": component,
            f"{PREFIX}-owner": self.owner,
            f"{PREFIX}-created-by": CREATED_BY,
            **self.labels,
            **extra,
        }

    def tags(self, component: str) -> list[str]:
        """String form (Neutron, Nova and Octavia tags): ``key=value``."""
        return [f"{k}={v}" for k, v in self.metadata(component).items()]

    def name(self, *parts: str) -> str:
        """Resource names start with ``govcloud-<stack>-`` (the sweep's fallback)."""
        return "-".join([PREFIX, self.stack, *parts])

    def marker(self, component: str) -> str:
        """For resources that have only a description."""
        return f"{PREFIX}-stack={self.stack} {PREFIX}-component={component}"

    def describe(self, component: str, text: str) -> str:
        return f"{text} [{self.marker(component)}]"


def backup_containers(tagger: Tagger) -> dict[str, str]:
    """The Swift containers of a stack's backups: the restic repository (every database) and etcd snapshots.

    The Pulumi program creates them, restic and the etcd role write to them, the sweep deletes them.
    """
    return {RESTIC: tagger.name("backups"), ETCD: tagger.name("backup", ETCD)}
