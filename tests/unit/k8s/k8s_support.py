"""Helpers for the k8s tests: cluster manifests of every committed stack, rendered once per process."""

from __future__ import annotations

from functools import cache
from typing import Any

from infra.contract import ComponentSpec
from infra.manifests.render import render_stack, stack_images
from infra.manifests.workloads import secret_keys, stack_components
from infra.model import list_stacks, load_stack
from infra.model.stack import StackModel

Doc = dict[str, Any]


def cluster_stacks() -> list[str]:
    return [s for s in list_stacks() if load_stack(s).target != "local"]


@cache
def images(stack: str) -> dict[str, str]:
    return stack_images(load_stack(stack))


def fake_secrets(model: StackModel) -> dict[str, dict[str, str]]:
    return {s.name: {k: f"value-of-{s.name}-{k}" for k in secret_keys(model, s)} for s in stack_components(model)}


@cache
def _docs(stack: str, redacted: bool) -> tuple[Doc, ...]:
    model = load_stack(stack)
    return tuple(render_stack(model, secrets=None if redacted else fake_secrets(model), images=images(stack)))


def docs(stack: str, redacted: bool = False) -> list[Doc]:
    return list(_docs(stack, redacted))


def specs(stack: str) -> dict[str, ComponentSpec]:
    return {s.name: s for s in stack_components(load_stack(stack))}
