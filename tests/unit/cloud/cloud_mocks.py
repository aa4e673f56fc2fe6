"""Pulumi mocks for the cloud program: construct a stack from its YAML and record every resource.

Provider-computed values (fixed IPs, VIPs, floating IPs) are invented here: ports and load
balancers get the next free address of the subnet they ask for, so tests can check addresses
against the model's CIDRs.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from typing import Any

import pulumi

from infra import contract
from infra.cloud import program
from infra.model import StackModel
from infra.model.loader import REPO_ROOT, config_values

STACKS_DIR = REPO_ROOT / "stacks"
SECRET_SIG = "4dabf18193072939515e22adb298388d"


def committed_stacks() -> list[str]:
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in STACKS_DIR.glob("Pulumi.*.yaml"))


def stack_values(stack: str) -> dict[str, Any]:
    return config_values(STACKS_DIR / f"Pulumi.{stack}.yaml")


def targets(stack: str) -> str:
    return str(stack_values(stack)["target"])


def unwrap(value: Any) -> Any:
    """Secret inputs arrive wrapped under mocks; numbers arrive as floats."""
    if isinstance(value, dict):
        if value.get(SECRET_SIG) == "1b47061264138c4ac30d75fd1eb44270":
            return unwrap(value["value"])
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


@dataclass
class Res:
    typ: str
    name: str
    inputs: dict[str, Any]
    id: str
    outputs: dict[str, Any]
    provider: str | None

    @property
    def kind(self) -> str:
        return self.typ.rsplit(":", 1)[-1]


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: list[Res] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._subnets: dict[str, IPv4Network] = {}
        self._next_host: dict[str, int] = {}
        self._floating = 0

    def _allocate(self, subnet_id: str) -> str:
        net = self._subnets[subnet_id]
        index = self._next_host.get(subnet_id, 10)  # .1 is the gateway; leave a few
        self._next_host[subnet_id] = index + 1
        return str(net.network_address + index)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        inputs = unwrap(dict(args.inputs))
        rid = f"{args.name}-id"
        outputs = dict(inputs)
        kind = args.typ.rsplit(":", 1)[-1]
        if kind == "Subnet":
            self._subnets[rid] = IPv4Network(inputs["cidr"])
        elif kind == "Port":
            outputs["allFixedIps"] = [self._allocate(inputs["fixedIps"][0]["subnetId"])]
        elif kind == "LoadBalancer":
            outputs["vipAddress"] = self._allocate(inputs["vipSubnetId"])
        elif kind == "FloatingIp":
            self._floating += 1
            outputs["address"] = f"203.0.113.{self._floating}"
        self.resources.append(Res(args.typ, args.name, inputs, rid, outputs, args.provider))
        return rid, outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        inputs = unwrap(dict(args.args))
        self.calls.append((args.token, inputs))
        name = inputs.get("name", "")
        if args.token.endswith("getNetwork"):
            return {"id": f"network-{name}", "name": name, "external": True}, []
        if args.token.endswith("getImage"):
            return {"id": f"image-{name}", "name": name}, []
        if args.token.endswith("getFlavor"):
            return {"id": f"flavor-{name}", "name": name}, []
        raise AssertionError(f"unexpected invoke {args.token}")


@dataclass
class Built:
    stack: str
    model: StackModel
    resources: list[Res]
    calls: list[tuple[str, dict[str, Any]]]
    outputs: dict[str, Any]
    registry: list[str] = field(default_factory=list)

    def of(self, kind: str) -> list[Res]:
        return [r for r in self.resources if r.kind == kind and r.typ.startswith("openstack:")]

    def by_id(self) -> dict[str, Res]:
        return {r.id: r for r in self.resources}


@contextlib.contextmanager
def _registry_for(values: dict[str, Any]) -> Iterator[list[str]]:
    """The component registry the stack is loaded against.

    A stack may name a component whose folder has not landed yet (stacks/ names ``portal`` before
    components/portal exists); the cloud layer only needs its name, so such components get a
    placeholder contract here, loudly, instead of failing every cloud test on another team's work.
    """
    real = contract.load_components()
    missing = sorted(set(values.get("components") or {}) - set(real))
    if not missing:
        yield list(real)
        return
    warnings.warn(f"components not registered yet, placeholder contracts used: {', '.join(missing)}", stacklevel=3)
    stubs = {
        name: contract.ComponentSpec(
            name=name, description="placeholder", command=["true"], ports={"http": 8080}, user=10000
        )
        for name in missing
    }
    registry = {**real, **stubs}
    original = contract.load_components
    contract.load_components = lambda root=contract.COMPONENTS_DIR: registry  # type: ignore[assignment]
    try:
        yield list(registry)
    finally:
        contract.load_components = original


def construct(stack: str, values: dict[str, Any] | None = None) -> Built:
    """Run the program for ``stack`` under mocks with ``values`` (default: its YAML) as Pulumi config."""
    values = stack_values(stack) if values is None else values
    config = {f"govcloud:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project="govcloud", stack=stack, preview=False)
    pulumi.runtime.set_all_config(config, secret_keys=[])
    box: dict[str, Any] = {}

    @pulumi.runtime.test
    def run() -> Any:
        cloud = program.build()
        box["model"] = cloud.model
        return pulumi.Output.from_input(cloud.outputs).apply(lambda o: box.__setitem__("outputs", o))

    with _registry_for(values) as registry:
        run()
    return Built(stack, box["model"], mocks.resources, mocks.calls, box["outputs"], registry)


def merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


OPENSTACK_STACKS = [s for s in committed_stacks() if targets(s) == "openstack"]
LOCAL_STACKS = [s for s in committed_stacks() if targets(s) != "openstack"]
