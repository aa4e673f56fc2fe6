"""Pick the runtime for a stack's target."""

from __future__ import annotations

from infra.model import StackModel
from infra.runtime.base import Runtime


def runtime_for(model: StackModel) -> Runtime:
    if model.target == "local":
        from infra.runtime.local import LocalRuntime

        return LocalRuntime(model)
    from infra.runtime.kubernetes import KubernetesRuntime

    return KubernetesRuntime(model)
