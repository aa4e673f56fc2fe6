"""Everything a stack applies, in apply order: workloads for every target, cluster kinds on clusters.

Local stacks render only Deployments and PVCs (podman plays them; its secrets are pushed separately).
Cluster stacks add the kinds of ``infra.manifests.cluster`` in apply order (namespaces, config and
secrets, data stores, applications). Secret values are filled only when ``secrets`` (the stack's local
state) is given, which ``govcloud deploy`` does; ``govcloud render`` shows each Secret's key names only.
"""

from __future__ import annotations

from infra.images.build import image_for
from infra.manifests.workloads import Doc, stack_components, workload_docs
from infra.model import StackModel


def stack_images(model: StackModel) -> dict[str, str]:
    """Each enabled component's image, pinned by content tag (computed, nothing is built)."""
    return {spec.name: str(image_for(spec)) for spec in stack_components(model)}


def render_stack(model: StackModel, only: str | None = None, secrets: dict[str, dict[str, str]] | None = None,
                 images: dict[str, str] | None = None) -> list[Doc]:
    images = images or stack_images(model)
    if model.target != "local":
        from infra.manifests.cluster import cluster_docs

        return cluster_docs(model, images, secrets, only)
    docs: list[Doc] = []
    for spec in stack_components(model):
        if only and spec.name != only:
            continue
        docs += workload_docs(model, spec, images[spec.name])
    return docs
