"""Every rendered document of every stack is schema-valid (kubernetes-validate, strict, warnings fail)."""

from __future__ import annotations

import warnings

import jsonschema
import kubernetes_validate
import pytest
import yaml
from k8s_support import cluster_stacks, docs, images, specs
from typer.testing import CliRunner

from infra.manifests.cluster import ISSUER_SECRET, PHASES, REDACTED, phase
from infra.manifests.render import render_stack
from infra.model import list_stacks, load_stack

VERSIONS = ["1.30.0", "1.31.0", "1.34.0"]

# cert-manager.io/v1 Issuer (the subset govcloud renders; from cert-manager's CRD openAPIV3Schema)
ISSUER_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "cert-manager.io/v1"},
        "kind": {"const": "Issuer"},
        "metadata": {"type": "object", "required": ["name", "namespace"]},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"ca": {
                "type": "object", "required": ["secretName"], "additionalProperties": False,
                "properties": {"secretName": {"type": "string", "minLength": 1},
                               "crlDistributionPoints": {"type": "array", "items": {"type": "string"}},
                               "ocspServers": {"type": "array", "items": {"type": "string"}}},
            }},
            "minProperties": 1,
            "maxProperties": 1,
        },
    },
}


def validate(doc: dict, version: str) -> None:
    if doc["apiVersion"].startswith("cert-manager.io/"):
        with pytest.raises(kubernetes_validate.SchemaNotFoundError):
            kubernetes_validate.validate(doc, version, strict=True)
        jsonschema.validate(doc, ISSUER_SCHEMA)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("name", list_stacks())
def test_every_document_of_every_stack_is_valid(name: str) -> None:
    rendered = docs(name) if name in cluster_stacks() else render_stack(load_stack(name), images=images(name))
    assert rendered
    for doc in rendered:
        validate(doc, "1.31.0")


@pytest.mark.parametrize("version", VERSIONS)
def test_cluster_documents_valid_across_supported_versions(stack: str, version: str) -> None:
    seen = set()
    for doc in docs(stack):
        if doc["kind"] in seen:  # one of each kind per version keeps the suite fast
            continue
        seen.add(doc["kind"])
        validate(doc, version)


def test_local_stacks_render_only_what_podman_plays() -> None:
    for name in list_stacks():
        model = load_stack(name)
        if model.target == "local":
            kinds = {d["kind"] for d in render_stack(model, images=images(name))}
            assert kinds <= {"Deployment", "PersistentVolumeClaim"}


def test_cluster_stacks_render_every_kind_in_apply_order(stack: str) -> None:
    rendered = docs(stack)
    phases = [phase(d) for d in rendered]
    assert phases == sorted(phases)
    assert phases[0] == 0 and len(set(phases)) == len(PHASES)
    kinds = {d["kind"] for d in rendered}
    assert {"Namespace", "ServiceAccount", "NetworkPolicy", "Service", "Deployment",
            "PodDisruptionBudget", "HorizontalPodAutoscaler"} <= kinds
    names = [(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in rendered]
    assert len(names) == len(set(names)), "duplicate objects"


def test_data_stores_come_before_applications(stack: str) -> None:
    rendered = docs(stack)
    deployments = [d for d in rendered if d["kind"] == "Deployment"]
    by_name = specs(stack)
    first_app = next(i for i, d in enumerate(deployments) if phase(d) == 3)
    stores = [d["metadata"]["labels"]["app.kubernetes.io/name"] for d in deployments[:first_app]]
    assert stores and all(by_name[s].volumes and not by_name[s].depends_on for s in stores)


def test_secret_values_never_rendered(stack: str) -> None:
    out = CliRunner().invoke(__import__("infra.cli.app", fromlist=["app"]).app, ["render", "-s", stack])
    assert out.exit_code == 0, out.output
    rendered = list(yaml.safe_load_all(out.stdout))
    secrets = [d for d in rendered if d["kind"] == "Secret"]
    assert secrets
    for doc in secrets:
        assert "data" not in doc and "stringData" not in doc
        assert doc["metadata"]["annotations"][REDACTED]
    with_values = {(d["metadata"]["namespace"], d["metadata"]["name"]): d for d in docs(stack) if d["kind"] == "Secret"}
    for doc in secrets:
        filled = with_values[(doc["metadata"]["namespace"], doc["metadata"]["name"])]
        assert sorted(filled["data"]) == doc["metadata"]["annotations"][REDACTED].split(",")


def test_public_components_get_ingress_with_ca_issuer(stack: str) -> None:
    rendered = docs(stack)
    ingresses = {d["metadata"]["labels"]["app.kubernetes.io/name"]: d for d in rendered if d["kind"] == "Ingress"}
    assert set(ingresses) == {n for n, s in specs(stack).items() if s.public}
    issuers = {d["metadata"]["namespace"]: d for d in rendered if d["kind"] == "Issuer"}
    for ing in ingresses.values():
        ns = ing["metadata"]["namespace"]
        assert issuers[ns]["spec"]["ca"]["secretName"] == ISSUER_SECRET
        assert ing["metadata"]["annotations"]["cert-manager.io/issuer"] == issuers[ns]["metadata"]["name"]
        tls_hosts = {h for t in ing["spec"]["tls"] for h in t["hosts"]}
        assert {r["host"] for r in ing["spec"]["rules"]} <= tls_hosts
