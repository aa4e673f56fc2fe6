"""Swift containers for backups: the stack's restic repository and its etcd snapshots (``backup_containers``)."""

from __future__ import annotations

import pulumi
import pulumi_openstack as openstack

from infra.cloud.tags import ETCD, Tagger, backup_containers
from infra.model import StackModel

COMPONENT = "storage"


class BackupContainers(pulumi.ComponentResource):
    def __init__(
        self, name: str, model: StackModel, tagger: Tagger, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("govcloud:cloud:BackupContainers", name, None, opts)
        self.containers: dict[str, openstack.objectstorage.Container] = {}
        for key, container in backup_containers(tagger).items():
            self.containers[key] = openstack.objectstorage.Container(
                f"backup-{key}",
                name=container,
                # etcd snapshots are plain objects: Swift versioning keeps overwritten ones; restic keeps
                # its own snapshots and never overwrites a pack, so versioning would only cost space there
                versioning=key == ETCD,
                region=model.cloud.region,
                metadata=tagger.metadata(COMPONENT, **{"govcloud-backup-of": key}),
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.names: dict[str, pulumi.Output[str]] = {k: c.name for k, c in self.containers.items()}
        self.register_outputs({"containers": self.names})
