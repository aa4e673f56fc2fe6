"""Everything a stack applies, in apply order: workloads for every target, cluster kinds on clusters."""

from __future__ import annotations

from infra.images.build import image_for
from infra.manifests.workloads import Doc, stack_components, workload_docs
from infra.model import StackModel


def render_stack(model: StackModel, only: str | None = None) -> list[Doc]:
    docs: list[Doc] = []
    for spec in stack_components(model):
        if only and spec.name != only:
            continue
        docs += workload_docs(model, spec, str(image_for(spec)))
    return docs
