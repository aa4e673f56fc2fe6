"""The component contract: what each ``components/<name>/component.yaml`` declares.

Manifests, start order, health and backups are all derived from these declarations, so adding a
component touches its own folder only.
"""

from __future__ import annotations

import graphlib
from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from infra.model.errors import StackError, from_validation
from infra.model.stack import Resources

COMPONENTS_DIR = Path(__file__).resolve().parents[1] / "components"


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Image(_Spec):
    base: Literal["python", "debian"] = "python"
    apt: list[str] = Field(default_factory=list, description="Debian packages (debian base only)")
    stop_signal: str | None = Field(default=None, pattern=r"^SIG[A-Z0-9]+$", description="e.g. SIGINT for postgres")


class Probes(_Spec):
    kind: Literal["http", "tcp"] = "http"
    port: str = "http"
    ready: str = "/readyz"
    live: str = "/healthz"


class Backup(_Spec):
    """Commands run inside the component: dump writes to stdout, restore reads stdin, verify prints JSON."""

    dump: list[str]
    restore: list[str]
    verify: list[str]
    filename: str


class ComponentSpec(_Spec):
    name: str = Field(pattern=r"^[a-z][a-z0-9]{1,20}$")
    description: str
    image: Image = Image()
    command: list[str] = Field(min_length=1)
    ports: dict[str, int] = Field(min_length=1)
    schemes: dict[str, str] = Field(default_factory=dict, description="URL scheme per port (default: http)")
    user: int = Field(ge=1000, le=65000)
    database: str | None = None
    depends_on: list[str] = Field(default_factory=list)
    calls: list[str] = Field(default_factory=list, description="components it calls without needing them to start")
    secrets: list[str] = Field(default_factory=list, description="own generated secrets, or owner/key to share one")
    env: dict[str, str] = Field(default_factory=dict)
    probes: Probes | None = Probes()
    volumes: dict[str, str] = Field(default_factory=dict, description="persistent volume name -> mount path")
    public: bool = False
    bootstrap: list[str] | None = None
    backup: Backup | None = None
    resources: Resources | None = Field(
        default=None, description="what one replica needs (default 250m/256Mi); a stack's components.<name>.resources wins")

    @model_validator(mode="after")
    def _probe_port(self) -> ComponentSpec:
        if self.probes and self.probes.port not in self.ports:
            raise ValueError(f"probes.port {self.probes.port!r} is not one of ports {sorted(self.ports)}")
        return self

    @property
    def own_secrets(self) -> list[str]:
        return [s for s in self.secrets if "/" not in s]

    @property
    def directory(self) -> Path:
        return COMPONENTS_DIR / self.name


def _read(path: Path) -> ComponentSpec:
    try:
        return ComponentSpec.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except ValidationError as exc:
        raise from_validation(str(path), exc) from None


@cache
def load_components(root: Path = COMPONENTS_DIR) -> dict[str, ComponentSpec]:
    """Every component, keyed by name, in start order (dependencies first)."""
    specs = {s.name: s for s in (_read(p) for p in sorted(root.glob("*/component.yaml")))}
    problems = [
        f"{root / s.name / 'component.yaml'}: depends_on/calls: unknown component {dep!r}"
        for s in specs.values()
        for dep in [*s.depends_on, *s.calls]
        if dep not in specs
    ]
    if problems:
        raise StackError(problems)
    problems = [
        f"{root / s.name / 'component.yaml'}: secrets: {ref!r} is not declared by {ref.split('/')[0]!r}"
        for s in specs.values()
        for ref in s.secrets
        if "/" in ref and ref.split("/", 1)[1] not in specs.get(ref.split("/")[0], s).own_secrets
    ]
    if problems:
        raise StackError(problems)
    sorter = graphlib.TopologicalSorter({s.name: sorted(s.depends_on) for s in specs.values()})
    try:
        order = list(sorter.static_order())
    except graphlib.CycleError as exc:
        raise StackError([f"{root}: depends_on forms a cycle: {' -> '.join(exc.args[1])}"]) from None
    return {name: specs[name] for name in order}


def enabled_components(model_enabled: dict[str, bool] | None = None) -> list[ComponentSpec]:
    specs = load_components()
    return [s for s in specs.values() if (model_enabled or {}).get(s.name, True)]
