"""``govcloud health``: every layer that exists for the stack, for people (table) and machines (JSON).

Exit codes: 0 healthy, 1 degraded (works, but something needs attention: stale backups, expiring
certificates), 2 down (a component is not ready or the citizen journey fails).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from infra.model import StackModel
from infra.runtime.base import Runtime

OK, DEGRADED, DOWN = "ok", "degraded", "down"
_RANK = {OK: 0, DEGRADED: 1, DOWN: 2}


@dataclass
class Check:
    layer: str
    name: str
    status: str
    detail: str = ""
    seconds: float = 0.0


def components_layer(runtime: Runtime) -> list[Check]:
    return [
        Check("components", s.component, OK if s.ready else DOWN, s.endpoint if s.ready else s.reason or s.state)
        for s in runtime.status()
    ]


def backups_layer(model: StackModel) -> list[Check]:
    from infra.ops.backup import latest, plan
    from infra.ops.openstack_api import CloudError
    from infra.ops.repository import open_repository
    from infra.ops.restic import ResticError

    try:
        repo = open_repository(model)
        newest = latest(repo, model) if repo.exists() else {}
    except (ResticError, CloudError) as exc:
        return [Check("backups", "repository", DEGRADED, str(exc))]
    checks = []
    limit_h = model.backup.max_age_hours
    for item in plan(model):
        snap = newest.get(item.key)
        if snap is None:
            checks.append(Check("backups", item.key, DEGRADED, f"never backed up (policy: every {limit_h}h)"))
            continue
        age_h = (datetime.now(UTC) - snap.time.astimezone(UTC)).total_seconds() / 3600
        status = OK if age_h <= limit_h else DEGRADED
        checks.append(Check("backups", item.key, status, f"{snap.id}, {age_h:.1f}h old (limit {limit_h}h)"))
    return checks


Layer = Callable[[], list[Check]]


def run_health(model: StackModel, runtime: Runtime, journey: bool = True, only: set[str] | None = None) -> list[Check]:
    """Every layer that exists for the stack (``only``: just these layers), the cloud first on cloud stacks."""

    def wanted(layer: str) -> bool:
        return only is None or layer in only

    checks: list[Check] = []
    if model.target == "openstack" and wanted("cloud"):
        from infra.ops.cloud_health import cloud_layer

        checks += cloud_layer(model)
    if wanted("components"):
        try:
            checks += components_layer(runtime)
        except Exception as exc:  # no cluster yet, kubeconfig missing, podman gone: the layer is down
            checks.append(Check("components", "runtime", DOWN, f"{type(exc).__name__}: {exc}"))
    if wanted("backups"):
        checks += backups_layer(model)
    from infra.ops import extra_layers

    components_ok = all(c.status == OK for c in checks if c.layer == "components")
    for layer in extra_layers.layers(model, runtime, journey=journey and components_ok and wanted("journey")):
        checks += [c for c in layer() if wanted(c.layer)]
    return checks


LAYERS = ("cloud", "components", "backups", "certificates", "journey")


def overall(checks: list[Check]) -> str:
    return max((c.status for c in checks), key=lambda s: _RANK[s], default=OK)


def exit_code(checks: list[Check]) -> int:
    return _RANK[overall(checks)]


def as_json(model: StackModel, checks: list[Check]) -> dict[str, object]:
    return {"stack": model.name, "status": overall(checks), "checked_at": datetime.now(UTC).isoformat(),
            "checks": [asdict(c) for c in checks]}
