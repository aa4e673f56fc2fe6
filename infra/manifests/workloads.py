"""Workload manifests (Deployments, PVCs) per component, rendered from the stack model and contracts.

The local target plays exactly these documents with ``podman kube play``; clusters apply them plus
the cluster-only kinds (Services, policies, ingress) from ``infra.manifests.cluster``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from infra.contract import ComponentSpec, load_components
from infra.manifests import names
from infra.model import StackModel

Doc = dict[str, Any]
DB_PASSWORD = "db-password"


def stack_components(model: StackModel) -> list[ComponentSpec]:
    """Enabled components in start order; an enabled component needing a disabled one is an error."""
    from infra.model.errors import StackError

    specs = load_components()
    enabled = [s for s in specs.values() if model.enabled(s.name)]
    problems = [
        f"stack {model.name}: components.{dep}.enabled: {s.name} depends on it; enable it or disable {s.name}"
        for s in enabled
        for dep in s.depends_on
        if not model.enabled(dep)
    ]
    if problems:
        raise StackError(problems)
    return enabled


def database_consumers(model: StackModel) -> list[str]:
    return [s.name for s in stack_components(model) if s.database]


def secret_keys(model: StackModel, spec: ComponentSpec) -> list[str]:
    """Keys of the component's own generated secrets (the single source, kept in local state)."""
    return [*spec.own_secrets, *([DB_PASSWORD] if spec.database else [])]


def secret_items(model: StackModel, spec: ComponentSpec) -> list[tuple[str, str, str]]:
    """(key in the component's Secret, owning component, key in the owner's state) for every secret it gets.

    Each value lives once in local state under its owner; a Secret object may carry copies (Kubernetes
    cannot reference another namespace's Secret): shared ``owner/key`` secrets and postgres's passwords.
    """
    items = [(key, spec.name, key) for key in secret_keys(model, spec)]
    items += [(key, owner, key) for key, owner in secret_refs(model, spec) if owner != spec.name]
    if spec.name == "postgres":
        items += [(f"dbpass-{c}", c, DB_PASSWORD) for c in database_consumers(model)]
    return items


def secret_refs(model: StackModel, spec: ComponentSpec) -> list[tuple[str, str]]:
    """(key, owner) of each secret the contract lists; a shared ``owner/key`` one only when its owner is in the
    stack (the portal takes payment's ``notify-key`` to check payment's notifications: a stack without payment
    has neither the key nor the notifications)."""
    refs = []
    for ref in spec.secrets:
        owner, _, key = ref.rpartition("/")
        if not owner or model.enabled(owner):
            refs.append((key, owner or spec.name))
    return refs


def secret_data(model: StackModel, spec: ComponentSpec, state: dict[str, dict[str, str]]) -> dict[str, str]:
    """What the component's Secret object holds (values from the stack's state)."""
    return {key: state[owner][owner_key] for key, owner, owner_key in secret_items(model, spec)}


def _secret_env(model: StackModel, spec: ComponentSpec, env_name: str, key: str) -> Doc:
    ref = {"name": names.workload(model, spec.name), "key": key}
    return {"name": env_name, "valueFrom": {"secretKeyRef": ref}}


def environment(model: StackModel, spec: ComponentSpec) -> list[Doc]:
    specs = load_components()
    env: list[Doc] = [
        {"name": "GOVCLOUD_STACK", "value": model.name},
        {"name": "GOVCLOUD_COMPONENT", "value": spec.name},
        {"name": "GOVCLOUD_DOMAIN", "value": model.domain},
        {"name": "GOVCLOUD_BIND", "value": "127.0.0.1" if model.target == "local" else "0.0.0.0"},
    ]
    env += [{"name": f"GOVCLOUD_PORT_{p.upper()}", "value": str(names.port(model, spec, p))} for p in spec.ports]
    for dep in sorted({*spec.depends_on, *spec.calls}):
        other = specs[dep]
        if not model.enabled(dep):
            continue
        env.append({"name": f"GOVCLOUD_URL_{dep.upper()}", "value": names.url(model, other, names.main_port(other))})
        env += [{"name": f"GOVCLOUD_URL_{dep.upper()}_{p.upper()}", "value": names.url(model, other, p)}
                for p in other.ports if p != names.main_port(other)]
    if spec.database:
        pg = specs["postgres"]
        env += [
            {"name": "PGHOST", "value": names.host(model, "postgres")},
            {"name": "PGPORT", "value": str(names.port(model, pg, "pg"))},
            {"name": "PGDATABASE", "value": spec.database},
            {"name": "PGUSER", "value": spec.database},
            _secret_env(model, spec, "PGPASSWORD", DB_PASSWORD),
        ]
    if spec.name == "postgres":
        consumers = database_consumers(model)
        env.append({"name": "GOVCLOUD_DATABASES", "value": " ".join(consumers)})
        env += [_secret_env(model, spec, f"GOVCLOUD_DBPASS_{c.upper()}", f"dbpass-{c}") for c in consumers]
    env += [_secret_env(model, spec, "GOVCLOUD_SECRET_" + k.upper().replace("-", "_"), k) for k, _ in secret_refs(model, spec)]
    env += [{"name": k, "value": v} for k, v in sorted(spec.env.items())]
    settings = model.settings_for(spec.name).settings
    env += [{"name": f"GOVCLOUD_SETTING_{k.upper()}", "value": str(v)} for k, v in sorted(settings.items())]
    return env


def _probe(model: StackModel, spec: ComponentSpec, path: str) -> Doc:
    assert spec.probes is not None
    port = names.port(model, spec, spec.probes.port)
    action: Doc = (
        {"tcpSocket": {"port": port}} if spec.probes.kind == "tcp" else {"httpGet": {"path": path, "port": port}}
    )
    return {**action, "periodSeconds": 10, "timeoutSeconds": 3, "failureThreshold": 3}


def _cpu_limit(cpu: str) -> str:
    millis = int(cpu[:-1]) if cpu.endswith("m") else int(float(cpu) * 1000)
    return f"{millis * 2}m"


def deployment(model: StackModel, spec: ComponentSpec, image: str) -> Doc:
    settings = model.settings_for(spec.name)
    name = names.workload(model, spec.name)
    labels = names.labels(model, spec.name)
    stack_sets_it = "resources" in settings.model_fields_set
    res = settings.resources if stack_sets_it or spec.resources is None else spec.resources
    volumes: list[Doc] = [{"name": f"{name}-tmp", "emptyDir": {}}]
    mounts: list[Doc] = [{"name": f"{name}-tmp", "mountPath": "/tmp"}]
    for vol, path in spec.volumes.items():
        claim = names.volume(model, spec.name, vol)
        volumes.append({"name": claim, "persistentVolumeClaim": {"claimName": claim}})
        mounts.append({"name": claim, "mountPath": path})
    container: Doc = {
        "name": spec.name,
        "image": settings.image or image,
        "command": spec.command,
        "env": environment(model, spec),
        "volumeMounts": mounts,
        "resources": {
            "requests": {"cpu": res.cpu, "memory": res.memory},
            "limits": {"cpu": _cpu_limit(res.cpu), "memory": res.memory},
        },
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": spec.user,
            "runAsGroup": spec.user,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if spec.probes:
        container["readinessProbe"] = _probe(model, spec, spec.probes.ready)
        container["livenessProbe"] = {**_probe(model, spec, spec.probes.live), "initialDelaySeconds": 30}
    pod_spec: Doc = {
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "fsGroup": spec.user, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": volumes,
    }
    if model.target == "local":
        pod_spec["hostNetwork"] = True
    else:
        container["ports"] = [{"name": p, "containerPort": n} for p, n in spec.ports.items()]
        pod_spec["serviceAccountName"] = name
    doc: Doc = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": names.namespace(model, spec.name), "labels": labels},
        "spec": {
            "replicas": settings.replicas if model.target != "local" else 1,
            "selector": {"matchLabels": {"app.kubernetes.io/instance": name}},
            "strategy": {"type": "Recreate"} if spec.volumes else {"type": "RollingUpdate"},
            "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
        },
    }
    doc["metadata"]["annotations"] = {"govcloud.io/fingerprint": fingerprint(doc)}
    return doc


def claims(model: StackModel, spec: ComponentSpec) -> list[Doc]:
    storage = model.settings_for(spec.name).storage
    return [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {
                "name": names.volume(model, spec.name, vol),
                "namespace": names.namespace(model, spec.name),
                "labels": names.labels(model, spec.name),
            },
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": storage}}},
        }
        for vol in spec.volumes
    ]


def fingerprint(doc: Doc) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def workload_docs(model: StackModel, spec: ComponentSpec, image: str) -> list[Doc]:
    return [*claims(model, spec), deployment(model, spec, image)]
