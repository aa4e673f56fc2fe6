"""Orphan sweep: every resource carries the stack and component in the richest place its type offers."""

from __future__ import annotations

import importlib
import inspect

from cloud_mocks import Built

from infra.cloud.tags import CREATED_BY


def _args_fields(token: str) -> set[str]:
    """The input names the provider's Args class accepts for a resource type token."""
    _, module, cls = token.split(":")
    mod = importlib.import_module(f"pulumi_openstack.{module.split('/')[0]}")
    args = getattr(mod, f"{cls}Args")
    return set(inspect.signature(args.__init__).parameters) - {"self"}


def test_every_resource_is_findable_by_stack(openstack_stack: str, built) -> None:
    b: Built = built(openstack_stack)
    stack = b.model.name
    untagged = []
    for r in b.resources:
        if not r.typ.startswith("openstack:"):
            continue  # providers and our own ComponentResources exist only in Pulumi's state
        fields = _args_fields(r.typ)
        if "tags" in fields:
            tags = set(r.inputs.get("tags", []))
            ok = f"govcloud-stack={stack}" in tags and f"govcloud-created-by={CREATED_BY}" in tags
            ok = ok and any(t.startswith("govcloud-component=") for t in tags)
            ok = ok and any(t.startswith("govcloud-owner=") for t in tags)
        elif "metadata" in fields:
            md = r.inputs.get("metadata", {})
            ok = md.get("govcloud-stack") == stack and "govcloud-component" in md and "govcloud-owner" in md
        elif "description" in fields:
            ok = f"govcloud-stack={stack} " in r.inputs.get("description", "")
        elif "name" in fields:
            ok = r.inputs.get("name", "").startswith(f"govcloud-{stack}-")
        else:
            ok = True  # pure attachments (router interface, FIP association) go with their tagged parents
        if not ok:
            untagged.append(f"{r.typ} {r.name}")
    assert untagged == []


def test_taggable_resources_also_carry_the_metadata_form(openstack_stack: str, built) -> None:
    b: Built = built(openstack_stack)
    for r in b.of("Instance"):
        assert r.inputs["metadata"]["govcloud-stack"] == b.model.name
        assert f"govcloud-stack={b.model.name}" in r.inputs["tags"]
