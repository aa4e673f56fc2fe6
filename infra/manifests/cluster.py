"""Cluster-only kinds, derived from the stack model and the component contracts.

For every enabled component: a Namespace (Pod Security "restricted"), a ServiceAccount without token
automount, its Secret (values from local state at deploy time, never rendered), NetworkPolicies (default
deny plus the allows its contract implies), a Service, a PodDisruptionBudget, a HorizontalPodAutoscaler
(stateless components), an Ingress with a cert-manager Issuer (``public: true``) and backup CronJobs.

Network edges (``edges``): ``depends_on``/``calls`` give caller -> callee; postgres is reached only by the
components that declare ``database:``; every component reaches the CA; backup pods reach what their
component reaches (the database dump job reaches postgres). Nothing else but DNS and, for public
components, the ingress controller is allowed.
"""

from __future__ import annotations

import base64
import copy
import shlex
from dataclasses import dataclass
from typing import Any

from infra.contract import ComponentSpec
from infra.manifests import names
from infra.manifests.workloads import (
    DB_PASSWORD,
    Doc,
    database_consumers,
    environment,
    secret_data,
    secret_items,
    stack_components,
    workload_docs,
)
from infra.model import StackModel

MANAGED_BY = "govcloud"
DATABASE = "postgres"  # the component that serves every `database:` (see infra.manifests.workloads)
CA = "ca"  # every component may reach the platform CA (OCSP, CRLs, issuing)
INGRESS_NAMESPACE = "ingress-nginx"
INGRESS_CLASS = "nginx"
DNS_NAMESPACE = "kube-system"
DNS_PODS = {"k8s-app": "kube-dns"}
ISSUER = "platform-ca"
ISSUER_SECRET = "platform-ca-keypair"
REDACTED = "govcloud.io/redacted"
PHASES = ("namespaces", "config", "data", "apps")
CHECKOV_SKIPS = {
    "CKV_K8S_43": "images are pinned by content tag (a hash of every build input, never reused); "
                  "a digest exists only after the push to the cluster registry",
    "CKV_K8S_35": "the component contract delivers secrets as GOVCLOUD_SECRET_*/PGPASSWORD env "
                  "(secretKeyRef, never in manifests); no token is mounted as a file either",
}
"""checkov findings accepted with their reasons; carried as ``checkov.io/skipN`` annotations on pod owners."""


def _skips() -> dict[str, str]:
    return {f"checkov.io/skip{i}": f"{check}={why}" for i, (check, why) in enumerate(CHECKOV_SKIPS.items(), 1)}
_CONFIG_KINDS = {"ServiceAccount", "Secret", "ConfigMap", "NetworkPolicy", "Issuer"}
APPLY_KINDS: tuple[tuple[str, str], ...] = (
    ("v1", "Namespace"),
    ("v1", "ServiceAccount"),
    ("v1", "Secret"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("cert-manager.io/v1", "Issuer"),
    ("v1", "PersistentVolumeClaim"),
    ("v1", "Service"),
    ("apps/v1", "Deployment"),
    ("policy/v1", "PodDisruptionBudget"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("networking.k8s.io/v1", "Ingress"),
    ("batch/v1", "CronJob"),
)
"""Every kind a cluster stack renders, in the order deploy applies within a phase (prune walks it backwards)."""


# ---- model-derived facts ------------------------------------------------------------------------
def is_data_store(spec: ComponentSpec) -> bool:
    """A stateful leaf: keeps persistent volumes and depends on nothing (postgres, nats); applied first."""
    return bool(spec.volumes) and not spec.depends_on


def autoscaled(spec: ComponentSpec) -> bool:
    """Stateless components scale horizontally; components with ReadWriteOnce volumes cannot."""
    return not spec.volumes


def backup_name(model: StackModel, component: str) -> str:
    return f"{names.workload(model, component)}-backup"


def has_backup(model: StackModel, spec: ComponentSpec) -> bool:
    return spec.backup is not None or (spec.name == DATABASE and bool(database_consumers(model)))


@dataclass(frozen=True)
class Edge:
    """Pods of ``source`` (its app pods, or its backup job with ``backup``) may open ``target``'s ports."""

    source: str
    target: str
    backup: bool = False


def targets(model: StackModel, spec: ComponentSpec) -> list[str]:
    enabled = {s.name for s in stack_components(model)}
    wanted = {t for t in [*spec.depends_on, *spec.calls] if t != DATABASE}
    if spec.database:
        wanted.add(DATABASE)
    if spec.name != CA:
        wanted.add(CA)
    return sorted(t for t in wanted if t in enabled and t != spec.name)


def edges(model: StackModel) -> list[Edge]:
    out: list[Edge] = []
    for spec in stack_components(model):
        for target in targets(model, spec):
            out.append(Edge(spec.name, target))
            if spec.backup is not None:
                out.append(Edge(spec.name, target, backup=True))
        if spec.name == DATABASE and has_backup(model, spec):
            out.append(Edge(spec.name, DATABASE, backup=True))
    return out


# ---- helpers ------------------------------------------------------------------------------------
def _labels(model: StackModel, component: str) -> dict[str, str]:
    return {**names.labels(model, component), "app.kubernetes.io/managed-by": MANAGED_BY}


def _meta(model: StackModel, component: str, name: str, **extra: Any) -> Doc:
    return {"name": name, "namespace": names.namespace(model, component), "labels": _labels(model, component),
            **extra}


def _pod_selector(model: StackModel, component: str, backup: bool = False) -> dict[str, str]:
    instance = backup_name(model, component) if backup else names.workload(model, component)
    return {"app.kubernetes.io/instance": instance}


def _peer(model: StackModel, component: str, backup: bool = False) -> Doc:
    return {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": names.namespace(model, component)}},
        "podSelector": {"matchLabels": _pod_selector(model, component, backup)},
    }


def _ports(spec: ComponentSpec) -> list[Doc]:
    return [{"protocol": "TCP", "port": n} for n in spec.ports.values()]


def _dns_rule() -> Doc:
    return {
        "to": [{
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": DNS_NAMESPACE}},
            "podSelector": {"matchLabels": dict(DNS_PODS)},
        }],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }


def _http_port(spec: ComponentSpec) -> str:
    return "http" if "http" in spec.ports else next(iter(spec.ports))


# ---- documents ----------------------------------------------------------------------------------
def namespace(model: StackModel, spec: ComponentSpec) -> Doc:
    version = "v" + ".".join(model.cluster.kubernetes_version.split(".")[:2])
    pss = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "audit", "warn")}
    pss |= {f"pod-security.kubernetes.io/{mode}-version": version for mode in ("enforce", "audit", "warn")}
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": names.namespace(model, spec.name), "labels": {**_labels(model, spec.name), **pss}},
    }


def service_account(model: StackModel, spec: ComponentSpec) -> Doc:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(model, spec.name, names.workload(model, spec.name)),
        "automountServiceAccountToken": False,
    }


def secret(model: StackModel, spec: ComponentSpec, data: dict[str, str] | None) -> Doc:
    """The component's Secret; without ``data`` (``govcloud render``) only its key names are shown."""
    meta = _meta(model, spec.name, names.workload(model, spec.name))
    doc: Doc = {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque"}
    if data is None:
        keys = [key for key, _, _ in secret_items(model, spec)]
        meta["annotations"] = {REDACTED: ",".join(sorted(keys))}
    else:
        doc["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in sorted(data.items())}
    return doc


def default_deny(model: StackModel, spec: ComponentSpec) -> Doc:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(model, spec.name, "default-deny"),
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
    }


def allow_policies(model: StackModel, spec: ComponentSpec, all_edges: list[Edge]) -> list[Doc]:
    """One policy for the component's pods and, when it has one, one for its backup job's pods."""
    specs = {s.name: s for s in stack_components(model)}
    docs = []
    for backup in (False, True):
        if backup and not has_backup(model, spec):
            continue
        ingress: list[Doc] = []
        if not backup:
            for e in all_edges:
                if e.target == spec.name:
                    ingress.append({"from": [_peer(model, e.source, e.backup)], "ports": _ports(spec)})
            if spec.public:
                ingress.append({
                    "from": [{"namespaceSelector": {"matchLabels": {
                        "kubernetes.io/metadata.name": INGRESS_NAMESPACE}}}],
                    "ports": [{"protocol": "TCP", "port": spec.ports[_http_port(spec)]}],
                })
        egress = [_dns_rule()]
        for e in all_edges:
            if e.source == spec.name and e.backup == backup:
                egress.append({"to": [_peer(model, e.target)], "ports": _ports(specs[e.target])})
        name = backup_name(model, spec.name) if backup else names.workload(model, spec.name)
        docs.append({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _meta(model, spec.name, f"{name}-allow"),
            "spec": {
                "podSelector": {"matchLabels": _pod_selector(model, spec.name, backup)},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": ingress,
                "egress": egress,
            },
        })
    return docs


def service(model: StackModel, spec: ComponentSpec) -> Doc:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(model, spec.name, names.workload(model, spec.name)),
        "spec": {
            "type": "ClusterIP",
            "selector": _pod_selector(model, spec.name),
            "ports": [{"name": p, "protocol": "TCP", "port": n, "targetPort": p} for p, n in spec.ports.items()],
        },
    }


def disruption_budget(model: StackModel, spec: ComponentSpec) -> Doc:
    # maxUnavailable 1 never blocks a node drain (a single replica accepts the move) and keeps the rest up
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(model, spec.name, names.workload(model, spec.name)),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": _pod_selector(model, spec.name)}},
    }


def autoscaler(model: StackModel, spec: ComponentSpec) -> Doc:
    replicas = model.settings_for(spec.name).replicas
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(model, spec.name, names.workload(model, spec.name)),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": names.workload(model, spec.name)},
            "minReplicas": replicas,
            "maxReplicas": min(50, max(3, replicas * 3)),
            "metrics": [{"type": "Resource", "resource": {
                "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}],
        },
    }


def hostname(model: StackModel, spec: ComponentSpec) -> str:
    return model.settings_for(spec.name).hostname or f"{spec.name}.{model.domain}"


def issuer(model: StackModel, spec: ComponentSpec) -> Doc:
    """cert-manager CA issuer: signs the Ingress certificate with the platform CA's key pair (docs/kubernetes.md)."""
    return {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Issuer",
        "metadata": _meta(model, spec.name, ISSUER),
        "spec": {"ca": {"secretName": ISSUER_SECRET}},
    }


def ingress(model: StackModel, spec: ComponentSpec) -> Doc:
    host = hostname(model, spec)
    meta = _meta(model, spec.name, names.workload(model, spec.name))
    meta["annotations"] = {"cert-manager.io/issuer": ISSUER}
    backend = {"service": {"name": names.workload(model, spec.name), "port": {"name": _http_port(spec)}}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": meta,
        "spec": {
            "ingressClassName": INGRESS_CLASS,
            "tls": [{"hosts": [host], "secretName": f"{names.workload(model, spec.name)}-tls"}],
            "rules": [{"host": host, "http": {"paths": [
                {"path": "/", "pathType": "Prefix", "backend": backend}]}}],
        },
    }


def _backup_script(model: StackModel, spec: ComponentSpec) -> str:
    keep = model.backup.retention.daily
    if spec.backup is not None:
        out = f'"/backups/$ts-{spec.backup.filename}"'
        dump = shlex.join(spec.backup.dump)
        lines = [f"{dump} > {out}.part", f"mv {out}.part {out}",
                 f"ls -1t /backups/*-{spec.backup.filename} | tail -n +{keep + 1} | xargs -r rm -f"]
    else:  # the database store: one custom-format dump per consumer database, with that consumer's role
        lines = []
        for c in database_consumers(model):
            out = f'"/backups/$ts-{c}.dump"'
            lines += [f'PGUSER={c} PGDATABASE={c} PGPASSWORD="$GOVCLOUD_DBPASS_{c.upper()}" pg_dump -Fc -f {out}.part',
                      f"mv {out}.part {out}",
                      f"ls -1t /backups/*-{c}.dump | tail -n +{keep + 1} | xargs -r rm -f"]
    return "\n".join(["set -eu", "ts=$(date -u +%Y%m%dT%H%M%SZ)", *lines])


def backup_docs(model: StackModel, spec: ComponentSpec, deployment: Doc) -> list[Doc]:
    """A PVC for the dumps and a CronJob that runs the contract's dump (or pg_dump per database) on schedule."""
    name = backup_name(model, spec.name)
    app = deployment["spec"]["template"]["spec"]["containers"][0]
    env = environment(model, spec)
    if spec.backup is None:
        pg = spec.ports["pg"] if "pg" in spec.ports else next(iter(spec.ports.values()))
        env = [e for e in env if e["name"].startswith("GOVCLOUD_DBPASS_")]
        env += [{"name": "PGHOST", "value": names.host(model, spec.name)}, {"name": "PGPORT", "value": str(pg)}]
    container: Doc = {
        "name": "backup",
        "image": app["image"],
        "imagePullPolicy": app["imagePullPolicy"],
        "command": ["/bin/sh", "-c", _backup_script(model, spec)],
        "env": env,
        "resources": app["resources"],
        "securityContext": app["securityContext"],
        "volumeMounts": [{"name": "backups", "mountPath": "/backups"}, {"name": "tmp", "mountPath": "/tmp"}],
    }
    labels = {**names.labels(model, spec.name), "app.kubernetes.io/instance": name,
              "app.kubernetes.io/component": "backup"}
    pod: Doc = {
        "serviceAccountName": names.workload(model, spec.name),
        "automountServiceAccountToken": False,
        "restartPolicy": "Never",
        "securityContext": deployment["spec"]["template"]["spec"]["securityContext"],
        "containers": [container],
        "volumes": [{"name": "backups", "persistentVolumeClaim": {"claimName": f"{name}s"}},
                    {"name": "tmp", "emptyDir": {}}],
    }
    claim: Doc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(model, spec.name, f"{name}s"),
        "spec": {"accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": model.settings_for(spec.name).storage}}},
    }
    cron: Doc = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": _meta(model, spec.name, name, annotations=_skips()),
        "spec": {
            "schedule": model.backup.schedule,
            "timeZone": "Etc/UTC",
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {"spec": {
                "backoffLimit": 2,
                "activeDeadlineSeconds": 3600,
                "template": {"metadata": {"labels": labels}, "spec": pod},
            }},
        },
    }
    return [claim, cron]


def cluster_deployment(model: StackModel, doc: Doc, spec: ComponentSpec) -> Doc:
    """The shared Deployment, adjusted for clusters: managed-by label, pull policy, replicas left to the HPA."""
    doc = copy.deepcopy(doc)
    doc["metadata"]["labels"] = _labels(model, spec.name)
    doc["metadata"]["annotations"] = _skips()  # replaces the local fingerprint: the API server tracks changes
    for container in doc["spec"]["template"]["spec"]["containers"]:
        container["imagePullPolicy"] = "Always"
    if autoscaled(spec):
        doc["spec"].pop("replicas", None)
    return doc


def phase(doc: Doc) -> int:
    """Apply phase: 0 namespaces, 1 config and secrets (incl. policies), 2 data stores, 3 applications."""
    kind = doc["kind"]
    if kind == "Namespace":
        return 0
    if kind in _CONFIG_KINDS:
        return 1
    return 2 if doc["metadata"].get("annotations", {}).get("govcloud.io/data-store") == "true" else 3


def component_of(doc: Doc) -> str:
    return str(doc["metadata"]["labels"]["app.kubernetes.io/name"])


def component_docs(model: StackModel, spec: ComponentSpec, image: str,
                   secrets: dict[str, dict[str, str]] | None, all_edges: list[Edge]) -> list[Doc]:
    docs: list[Doc] = [namespace(model, spec), service_account(model, spec)]
    if secret_items(model, spec):
        docs.append(secret(model, spec, None if secrets is None else secret_data(model, spec, secrets)))
    docs.append(default_deny(model, spec))
    docs += allow_policies(model, spec, all_edges)
    if spec.public:
        docs.append(issuer(model, spec))
    workload: list[Doc] = []
    for doc in workload_docs(model, spec, image):
        if doc["kind"] == "Deployment":
            doc = cluster_deployment(model, doc, spec)
        else:
            doc = copy.deepcopy(doc)
            doc["metadata"]["labels"] = _labels(model, spec.name)
        workload.append(doc)
    deployment = workload[-1]
    workload += [service(model, spec), disruption_budget(model, spec)]
    if autoscaled(spec):
        workload.append(autoscaler(model, spec))
    if spec.public:
        workload.append(ingress(model, spec))
    if has_backup(model, spec):
        workload += backup_docs(model, spec, deployment)
    if is_data_store(spec):
        for doc in workload:
            doc["metadata"].setdefault("annotations", {})["govcloud.io/data-store"] = "true"
    return docs + workload


def cluster_docs(model: StackModel, images: dict[str, str],
                 secrets: dict[str, dict[str, str]] | None = None, only: str | None = None) -> list[Doc]:
    """Every document of a cluster stack in apply order (phase, then kind, then start order)."""
    all_edges = edges(model)
    docs: list[Doc] = []
    for spec in stack_components(model):
        if only and spec.name != only:
            continue
        docs += component_docs(model, spec, images[spec.name], secrets, all_edges)
    kinds = [k for _, k in APPLY_KINDS]
    return sorted(docs, key=lambda d: (phase(d), kinds.index(d["kind"])))  # stable: start order within a kind


__all__ = ["APPLY_KINDS", "DB_PASSWORD", "Edge", "cluster_docs", "edges", "phase"]
