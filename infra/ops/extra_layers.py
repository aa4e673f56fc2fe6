"""Health layers that exist only when their components do (certificates, the citizen journey)."""

from __future__ import annotations

from collections.abc import Callable

from infra.model import StackModel
from infra.ops.health import Check
from infra.runtime.base import Runtime


def layers(model: StackModel, runtime: Runtime, journey: bool) -> list[Callable[[], list[Check]]]:
    return []
