"""Names and addresses of a component within a stack: the same on every target."""

from __future__ import annotations

from infra.contract import ComponentSpec
from infra.model import StackModel

PART_OF = "govcloud"


def workload(model: StackModel, component: str) -> str:
    """Deployment, Secret and Service name: the stack prefix keeps stacks apart on one podman host."""
    return f"{model.name}-{component}"


def namespace(model: StackModel, component: str) -> str:
    return f"{model.name}-{component}"


def labels(model: StackModel, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": component,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/instance": workload(model, component),
        "govcloud.stack": model.name,
        **model.labels,
    }


def port(model: StackModel, spec: ComponentSpec, name: str) -> int:
    """The port a component listens on: the contract's port, shifted by the local stack's offset."""
    base = spec.ports[name]
    return base + model.local.port_offset if model.target == "local" else base


def host(model: StackModel, component: str) -> str:
    if model.target == "local":
        return "127.0.0.1"
    return f"{workload(model, component)}.{namespace(model, component)}.svc.cluster.local"


def url(model: StackModel, spec: ComponentSpec, port_name: str = "http") -> str:
    scheme = spec.schemes.get(port_name, "http")
    return f"{scheme}://{host(model, spec.name)}:{port(model, spec, port_name)}"


def main_port(spec: ComponentSpec) -> str:
    """The port other components mean by the component's URL: ``http`` if it has one, else its first."""
    return "http" if "http" in spec.ports else next(iter(spec.ports))


def volume(model: StackModel, component: str, vol: str) -> str:
    return f"{workload(model, component)}-{vol}"
