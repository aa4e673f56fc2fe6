"""Rendered manifests: valid Kubernetes, hardened, secrets only by reference, derived from the contract."""

from __future__ import annotations

import json

import kubernetes_validate
import pytest
import yaml

from infra.contract import load_components
from infra.manifests.render import render_stack
from infra.manifests.workloads import secret_data, secret_keys, stack_components
from infra.model import list_stacks, load_stack

K8S_VERSION = "1.31.0"


@pytest.mark.parametrize("stack", list_stacks())
def test_every_document_is_valid_kubernetes(stack: str) -> None:
    docs = render_stack(load_stack(stack))
    assert docs
    for doc in docs:
        if doc["apiVersion"].startswith("cert-manager.io/"):
            continue  # a CRD: validated against its schema subset in tests/unit/k8s
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


@pytest.mark.parametrize("stack", list_stacks())
def test_pods_are_hardened(stack: str) -> None:
    for doc in render_stack(load_stack(stack)):
        if doc["kind"] != "Deployment":
            continue
        pod = doc["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"]
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert c["resources"]["limits"]["memory"]
            assert ":" in c["image"] and not c["image"].endswith(":latest")


def test_local_uses_host_network_and_offset_ports() -> None:
    local, ci = load_stack("local"), load_stack("ci")
    pg = load_components()["postgres"]

    def port_of(model) -> str:  # type: ignore[no-untyped-def]
        dep = next(d for d in render_stack(model) if d["kind"] == "Deployment" and "postgres" in d["metadata"]["name"])
        assert dep["spec"]["template"]["spec"]["hostNetwork"] is True
        env = {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
        return env["GOVCLOUD_PORT_PG"]

    assert port_of(local) == str(pg.ports["pg"])
    assert port_of(ci) == str(pg.ports["pg"] + ci.local.port_offset)


def test_secret_values_never_appear_in_manifests() -> None:
    model = load_stack("ci")
    state = {s.name: {k: f"SECRET-{s.name}-{k}-VALUE" for k in secret_keys(model, s)} for s in stack_components(model)}
    text = json.dumps(render_stack(model))
    for group in state.values():
        for value in group.values():
            assert value not in text
    # and every consumer's password reaches postgres by reference only
    pg = load_components()["postgres"]
    assert set(secret_data(model, pg, state)) == {f"dbpass-{c}" for c in state if load_components()[c].database}


def test_a_shared_secret_of_a_component_not_in_the_stack_is_left_out() -> None:
    from infra.manifests.workloads import environment
    from infra.model.stack import ComponentSettings

    local = load_stack("local")
    portal = load_components()["portal"]
    state = {s.name: {k: "x" for k in secret_keys(local, s)} for s in stack_components(local)}
    assert "notify-key" in secret_data(local, portal, state)  # payment's key, to check payment's notifications
    off = ComponentSettings.model_validate({"enabled": False})
    portal_only = local.model_copy(update={"components": {**local.components, "payment": off}})
    state.pop("payment")
    assert "notify-key" not in secret_data(portal_only, portal, state)
    assert "GOVCLOUD_SECRET_NOTIFY_KEY" not in {e["name"] for e in environment(portal_only, portal)}


def test_database_consumers_get_libpq_env_by_reference() -> None:
    model = load_stack("ci")
    for doc in render_stack(model):
        if doc["kind"] != "Deployment":
            continue
        env = {e["name"]: e for e in doc["spec"]["template"]["spec"]["containers"][0]["env"]}
        name = doc["metadata"]["labels"]["app.kubernetes.io/name"]
        if load_components()[name].database:
            assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "db-password"
            assert env["PGDATABASE"]["value"] == load_components()[name].database


def test_render_output_has_no_yaml_aliases() -> None:
    text = yaml.safe_dump_all(render_stack(load_stack("prod")))
    assert "&id" not in text and "*id" not in text


def test_a_component_states_what_it_needs_and_a_stack_may_override_it() -> None:
    from infra.manifests.workloads import deployment
    from infra.model.stack import ComponentSettings

    def memory_limit(model: object) -> str:
        doc = deployment(model, portal, "img")  # type: ignore[arg-type]
        return doc["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]

    portal = load_components()["portal"]
    assert portal.resources is not None
    local = load_stack("local")
    assert memory_limit(local) == portal.resources.memory  # the contract's figure, not the stack-wide default
    mine = ComponentSettings.model_validate({"resources": {"cpu": "1", "memory": "1Gi"}})
    assert memory_limit(local.model_copy(update={"components": {**local.components, "portal": mine}})) == "1Gi"
