"""A recorded fake of the kubernetes ``DynamicClient``: the API boundary, without an API server.

It keeps objects in memory and answers like the API server does where govcloud depends on it:
server-side apply creates or merges (fields owned by another manager give 409 Conflict unless forced),
bumps ``resourceVersion``/``generation`` only on change, dry runs store nothing, namespaced objects need
their namespace (404 otherwise, dry runs included), lists honour equality label selectors, and a
Deployment's status follows ``rollouts[name]`` ("ok" or "crash", the latter with a
ProgressDeadlineExceeded condition and a CrashLoopBackOff pod). Every call is recorded in ``calls``.
"""

from __future__ import annotations

import copy
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import ResourceNotFoundError, api_exception

CLUSTER_SCOPED = {"Namespace"}
KNOWN = {
    ("v1", "Namespace"), ("v1", "ServiceAccount"), ("v1", "Secret"), ("v1", "PersistentVolumeClaim"),
    ("v1", "Service"), ("v1", "Pod"), ("apps/v1", "Deployment"), ("policy/v1", "PodDisruptionBudget"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"), ("networking.k8s.io/v1", "NetworkPolicy"),
    ("networking.k8s.io/v1", "Ingress"), ("batch/v1", "CronJob"), ("cert-manager.io/v1", "Issuer"),
}
MUTATING = {"server_side_apply", "delete"}


@dataclass(frozen=True)
class FakeResource:
    api_version: str
    kind: str

    @property
    def namespaced(self) -> bool:
        return self.kind not in CLUSTER_SCOPED


class _Resources:
    def __init__(self, known: set[tuple[str, str]]):
        self.known = known

    def get(self, api_version: str, kind: str) -> FakeResource:
        if (api_version, kind) not in self.known:
            raise ResourceNotFoundError(f"No matches found for {{'api_version': '{api_version}', 'kind': '{kind}'}}")
        return FakeResource(api_version, kind)


def _error(status: int, reason: str, message: str) -> Exception:
    exc = ApiException(status=status, reason=reason)
    exc.body = json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
                           "reason": reason, "code": status})
    return api_exception(exc)  # type: ignore[no-any-return]


SERVER_FIELDS = ("uid", "creationTimestamp", "resourceVersion", "generation")


def _content(obj: dict[str, Any]) -> dict[str, Any]:
    obj = {k: v for k, v in obj.items() if k != "status"}
    obj["metadata"] = {k: v for k, v in obj["metadata"].items() if k not in SERVER_FIELDS}
    return obj


def _matches(labels: dict[str, str], selector: str | None) -> bool:
    if not selector:
        return True
    for term in selector.split(","):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


def _leaves(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_leaves(v, f"{prefix}.{k}"))
        return out
    return {prefix: obj}


@dataclass
class Call:
    verb: str
    kind: str
    namespace: str | None
    name: str | None
    kwargs: dict[str, Any] = field(default_factory=dict)


class FakeDynamicClient:
    def __init__(self, known: set[tuple[str, str]] | None = None):
        self.resources = _Resources(known or set(KNOWN))
        self.objects: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        self.owners: dict[tuple[str, str, str, str], dict[str, str]] = {}  # field path -> manager
        self.calls: list[Call] = []
        self.rollouts: dict[str, str] = {}  # Deployment name -> "ok" | "crash"
        self._rv = itertools.count(1000)

    # ---- test helpers ----------------------------------------------------------------------------
    def put(self, obj: dict[str, Any], manager: str = "someone-else") -> None:
        """An object created by someone else (kubectl, another tool)."""
        obj = copy.deepcopy(obj)
        meta = obj["metadata"]
        meta.setdefault("resourceVersion", str(next(self._rv)))
        meta.setdefault("generation", 1)
        key = (obj["apiVersion"], obj["kind"], meta.get("namespace") or "", meta["name"])
        self.objects[key] = obj
        self.owners[key] = {path: manager for path in _leaves(obj.get("spec", {}), ".spec")}

    def mutations(self) -> list[Call]:
        return [c for c in self.calls if c.verb in MUTATING and not c.kwargs.get("dry_run")]

    # ---- the DynamicClient surface govcloud uses ---------------------------------------------------
    def get(self, resource: FakeResource, name: str | None = None, namespace: str | None = None,
            label_selector: str | None = None, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(Call("get", resource.kind, namespace, name, {"label_selector": label_selector, **kwargs}))
        if name is not None:
            key = (resource.api_version, resource.kind, namespace or "", name)
            if key not in self.objects:
                raise _error(404, "NotFound", f'{resource.kind.lower()}s "{name}" not found')
            return copy.deepcopy(self.objects[key])
        items = [copy.deepcopy(o) for (av, kind, ns, _), o in sorted(self.objects.items())
                 if av == resource.api_version and kind == resource.kind and (namespace is None or ns == namespace)
                 and _matches(o["metadata"].get("labels") or {}, label_selector)]
        for item in items:  # list items come without apiVersion/kind, as from the real server
            item.pop("apiVersion", None)
            item.pop("kind", None)
        return {"apiVersion": resource.api_version, "kind": f"{resource.kind}List", "items": items}

    def server_side_apply(self, resource: FakeResource, body: dict[str, Any], name: str | None = None,
                          namespace: str | None = None, force_conflicts: bool | None = None,
                          **kwargs: Any) -> dict[str, Any]:
        self.calls.append(Call("server_side_apply", resource.kind, namespace, name,
                               {"force_conflicts": force_conflicts, **kwargs}))
        manager = kwargs.get("field_manager")
        if not manager:
            raise _error(400, "BadRequest", "PATCH /apply requires a fieldManager")
        dry = kwargs.get("dry_run") == "All"
        if resource.namespaced and ("v1", "Namespace", "", namespace or "") not in self.objects:
            raise _error(404, "NotFound", f'namespaces "{namespace}" not found')
        key = (resource.api_version, resource.kind, namespace or "", name or "")
        old = self.objects.get(key)
        owners = dict(self.owners.get(key, {}))
        new_leaves = _leaves(body.get("spec", {}), ".spec")
        if old is not None and not force_conflicts:
            old_leaves = _leaves(old.get("spec", {}), ".spec")
            clashes = sorted(p for p, v in new_leaves.items()
                             if owners.get(p, manager) != manager and old_leaves.get(p) != v)
            if clashes:
                who = owners[clashes[0]]
                raise _error(409, "Conflict", f'Apply failed with {len(clashes)} conflict(s): conflict with "{who}" '
                                              f'using {resource.api_version}: {", ".join(clashes)}')
        merged = copy.deepcopy(body)
        merged.setdefault("metadata", {})
        if resource.kind == "Namespace":
            merged["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name
        if old is not None:
            meta = old["metadata"]
            for k in SERVER_FIELDS:
                merged["metadata"][k] = meta[k]
            if old.get("spec") != body.get("spec"):
                merged["metadata"]["generation"] = meta["generation"] + 1
            if _content(merged) != _content(old):
                merged["metadata"]["resourceVersion"] = str(next(self._rv))
        else:
            merged["metadata"].update(uid=f"uid-{name}", creationTimestamp="2026-01-01T00:00:00Z",
                                      resourceVersion=str(next(self._rv)), generation=1)
        if resource.kind == "Deployment":
            merged["status"] = self._deployment_status(merged)
        if not dry:
            self.objects[key] = merged
            self.owners[key] = {**owners, **{p: manager for p in new_leaves}}
            if resource.kind == "Deployment":
                self._pods(merged)
        return copy.deepcopy(merged)

    def delete(self, resource: FakeResource, name: str | None = None, namespace: str | None = None,
               **kwargs: Any) -> dict[str, Any]:
        self.calls.append(Call("delete", resource.kind, namespace, name, kwargs))
        key = (resource.api_version, resource.kind, namespace or "", name or "")
        if key not in self.objects:
            raise _error(404, "NotFound", f'{resource.kind.lower()}s "{name}" not found')
        if not kwargs.get("dry_run"):
            del self.objects[key]
            if resource.kind == "Namespace":  # the namespace controller removes everything inside
                for other in [k for k in self.objects if k[2] == name]:
                    del self.objects[other]
        return {"kind": "Status", "status": "Success"}

    # ---- controllers -------------------------------------------------------------------------------
    def _deployment_status(self, dep: dict[str, Any]) -> dict[str, Any]:
        want = dep["spec"].get("replicas", 1)
        gen = dep["metadata"]["generation"]
        if self.rollouts.get(dep["metadata"]["name"], "ok") == "crash":
            return {"observedGeneration": gen, "replicas": want, "updatedReplicas": want, "unavailableReplicas": want,
                    "conditions": [{"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"},
                                   {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                                    "message": f'ReplicaSet "{dep["metadata"]["name"]}-7d4b9c" has timed out '
                                               "progressing."}]}
        return {"observedGeneration": gen, "replicas": want, "updatedReplicas": want, "readyReplicas": want,
                "availableReplicas": want,
                "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}]}

    def _pods(self, dep: dict[str, Any]) -> None:
        meta = dep["metadata"]
        crash = self.rollouts.get(meta["name"], "ok") == "crash"
        container = dep["spec"]["template"]["spec"]["containers"][0]["name"]
        status: dict[str, Any] = {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "False" if crash else "True"}],
            "containerStatuses": [{
                "name": container, "ready": not crash, "restartCount": 5 if crash else 0,
                "state": ({"waiting": {"reason": "CrashLoopBackOff",
                                       "message": f"back-off 5m0s restarting failed container={container}"}}
                          if crash else {"running": {"startedAt": "2026-01-01T00:00:01Z"}}),
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}} if crash else {},
            }],
        }
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": f"{meta['name']}-7d4b9c-x1", "namespace": meta["namespace"], "resourceVersion": "1",
                            "labels": dict(dep["spec"]["template"]["metadata"]["labels"])},
               "status": status}
        self.objects[("v1", "Pod", meta["namespace"], pod["metadata"]["name"])] = pod
