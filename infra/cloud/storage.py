"""Swift containers for backups: one versioned container per enabled component (from the contract)."""

from __future__ import annotations

import pulumi
import pulumi_openstack as openstack

from infra import contract
from infra.cloud.tags import Tagger
from infra.model import StackModel

COMPONENT = "storage"


def backup_components(model: StackModel) -> list[str]:
    """Enabled components of the stack, in the contract's start order."""
    return [name for name in contract.load_components() if model.enabled(name)]


def container_name(tagger: Tagger, component: str) -> str:
    return tagger.name("backup", component)


class BackupContainers(pulumi.ComponentResource):
    def __init__(
        self, name: str, model: StackModel, tagger: Tagger, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("govcloud:cloud:BackupContainers", name, None, opts)
        self.containers: dict[str, openstack.objectstorage.Container] = {}
        for component in backup_components(model):
            self.containers[component] = openstack.objectstorage.Container(
                f"backup-{component}",
                name=container_name(tagger, component),
                versioning=True,
                region=model.cloud.region,
                metadata=tagger.metadata(COMPONENT, **{"govcloud-backup-of": component}),
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.names: dict[str, pulumi.Output[str]] = {k: c.name for k, c in self.containers.items()}
        self.register_outputs({"containers": self.names})
