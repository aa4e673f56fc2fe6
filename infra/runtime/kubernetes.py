"""The cluster target: the stack's manifests applied to Kubernetes with the ``kubernetes`` client.

``deploy``: server-side apply (field manager ``govcloud``) phase by phase (namespaces, config and
secrets, data stores, applications), waiting for the Deployments of each workload phase to roll out,
then pruning what govcloud applied for this stack earlier and no longer renders (found by the stack's
labels). ``--dry-run`` runs the same applies as server-side dry runs and prints the diff. API errors
surface as one line naming the object.

Tested up to the API boundary against a recorded fake of the dynamic client (tests/unit/k8s): no
Kubernetes API server runs on the development machines.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, Any

import yaml

from infra.contract import load_components
from infra.manifests import names
from infra.manifests.cluster import APPLY_KINDS, MANAGED_BY, component_of, hostname, phase
from infra.manifests.render import render_stack, stack_images
from infra.manifests.workloads import Doc, secret_keys, stack_components
from infra.model import StackModel
from infra.runtime.base import ComponentStatus, ExecResult, Progress
from infra.state import StackState

FIELD_MANAGER = "govcloud"
ROLLOUT_TIMEOUT_S = 600.0
KEEP_KINDS = {"Namespace", "PersistentVolumeClaim"}  # hold data: pruned/deleted only when asked to
_VOLATILE_META = ("managedFields", "resourceVersion", "uid", "generation", "creationTimestamp", "selfLink")


class DeployError(RuntimeError):
    """A deploy that could not finish; ``lines`` says what, one object per line."""

    def __init__(self, lines: list[str]):
        self.lines = lines
        super().__init__("\n".join(lines))


@dataclass
class DeployReport:
    applied: list[tuple[str, str]] = field(default_factory=list)  # (object, created|configured|unchanged)
    pruned: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    diff: list[str] = field(default_factory=list)
    statuses: list[ComponentStatus] = field(default_factory=list)


def ref(doc: Doc) -> str:
    meta = doc.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{doc.get('kind')} {ns + '/' if ns else ''}{meta.get('name')}"


def _key(doc: Doc) -> tuple[str, str, str, str]:
    meta = doc["metadata"]
    return doc["apiVersion"], doc["kind"], meta.get("namespace") or "", meta["name"]


def _plain(obj: Any) -> Any:
    """Dynamic-client ResourceInstances (and the test fake's objects) as plain dicts."""
    if obj is None or isinstance(obj, dict | list | str | int | float | bool):
        return obj
    to_dict = getattr(obj, "to_dict", None)
    return to_dict() if to_dict else obj


def api_message(exc: Exception) -> str:
    """The API server's own message (``Status.message``) or the HTTP reason."""
    body = getattr(exc, "body", None)
    if body:
        try:
            status = json.loads(body)
            if isinstance(status, dict) and status.get("message"):
                return str(status["message"])
        except (TypeError, ValueError):
            pass
    status_code = getattr(exc, "status", None)
    reason = getattr(exc, "reason", None) or exc.__class__.__name__
    return f"{status_code} {reason}" if status_code else str(reason)


def normalise(doc: Doc | None) -> Doc | None:
    """What a diff compares: no server bookkeeping, no status, Secret values redacted."""
    if doc is None:
        return None
    doc = json.loads(json.dumps(doc, default=str))
    meta = doc.get("metadata", {})
    for key in _VOLATILE_META:
        meta.pop(key, None)
    (meta.get("annotations") or {}).pop("kubectl.kubernetes.io/last-applied-configuration", None)
    if meta.get("annotations") == {}:
        meta.pop("annotations")
    doc.pop("status", None)
    return doc


def _redact(live: Doc | None, new: Doc | None) -> tuple[Doc | None, Doc | None]:
    if not new or new.get("kind") != "Secret":
        return live, new
    old_data = (live or {}).get("data") or {}
    new_data = new.get("data") or {}
    new["data"] = {k: "(redacted, changed)" if old_data.get(k) != v else "(redacted)" for k, v in new_data.items()}
    if live is not None:
        live["data"] = {k: "(redacted)" for k in old_data}
    return live, new


def unified(live: Doc | None, new: Doc | None, label: str) -> str:
    live, new = _redact(normalise(live), normalise(new))
    a = yaml.safe_dump(live, sort_keys=True).splitlines(keepends=True) if live else []
    b = yaml.safe_dump(new, sort_keys=True).splitlines(keepends=True) if new else []
    return "".join(difflib.unified_diff(a, b, f"live/{label}", f"govcloud/{label}"))


def rollout_state(dep: Doc) -> tuple[bool, str]:
    """(done, what is happening) for a Deployment, like ``kubectl rollout status``; raises on a dead rollout."""
    meta, spec, status = dep.get("metadata", {}), dep.get("spec", {}), dep.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            raise _RolloutFailed(f"ProgressDeadlineExceeded: {cond.get('message', '')}".strip())
    if status.get("observedGeneration", 0) < meta.get("generation", 0):
        return False, "waiting for the controller to see the new spec"
    want = spec.get("replicas", 1)
    updated = status.get("updatedReplicas", 0)
    if updated < want:
        return False, f"{updated} of {want} replicas updated"
    if status.get("replicas", 0) > updated:
        return False, f"{status.get('replicas', 0) - updated} old replica(s) terminating"
    available = status.get("availableReplicas", 0)
    if available < updated:
        return False, f"{available} of {updated} updated replicas available"
    return True, f"{available} of {want} replicas available"


class _RolloutFailed(Exception):
    pass


def pod_reasons(pods: Iterable[Doc]) -> list[str]:
    """Why pods are not ready: waiting/terminated container reasons, unschedulable conditions."""
    reasons: list[str] = []
    for pod in pods:
        name = pod.get("metadata", {}).get("name", "?")
        status = pod.get("status") or {}
        for cs in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
            state = cs.get("state") or {}
            last = (cs.get("lastState") or {}).get("terminated") or {}
            for key in ("waiting", "terminated"):
                st = state.get(key)
                if st and st.get("reason") not in (None, "Completed"):
                    detail = st.get("message") or (f"last exit code {last.get('exitCode')}" if last else "")
                    reasons.append(f"pod {name}: {st['reason']}" + (f" ({detail})" if detail else ""))
        for cond in status.get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                reasons.append(f"pod {name}: {cond.get('reason', 'Unschedulable')} ({cond.get('message', '')})")
    return reasons


def default_client() -> Any:
    """A DynamicClient from the kubeconfig (context ``$GOVCLOUD_KUBE_CONTEXT`` if set) or in-cluster config."""
    from kubernetes import client, config, dynamic
    from kubernetes.config.config_exception import ConfigException

    try:
        config.load_kube_config(context=os.environ.get("GOVCLOUD_KUBE_CONTEXT") or None)
    except (ConfigException, FileNotFoundError, OSError):
        try:
            config.load_incluster_config()
        except ConfigException:
            raise DeployError([
                "no Kubernetes credentials: set KUBECONFIG (or ~/.kube/config; context from $GOVCLOUD_KUBE_CONTEXT)"
            ]) from None
    return dynamic.DynamicClient(client.ApiClient())


class KubernetesRuntime:
    def __init__(self, model: StackModel, client: Any = None, state: StackState | None = None,
                 images: dict[str, str] | None = None, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic, rollout_timeout: float = ROLLOUT_TIMEOUT_S,
                 poll: float = 2.0, stream: Callable[..., Any] | None = None):
        self.model = model
        self.state = state or StackState(model.name)
        self._client = client
        self._images = images
        self.sleep, self.clock = sleep, clock
        self.rollout_timeout, self.poll = rollout_timeout, poll
        self._stream = stream
        self._resources: dict[tuple[str, str], Any] = {}

    # ---- plumbing ------------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = default_client()
        return self._client

    def selector(self) -> str:
        return f"app.kubernetes.io/managed-by={MANAGED_BY},govcloud.stack={self.model.name}"

    def _resource(self, api_version: str, kind: str) -> Any:
        if (api_version, kind) not in self._resources:
            self._resources[(api_version, kind)] = self.client.resources.get(api_version=api_version, kind=kind)
        return self._resources[(api_version, kind)]

    def _kind(self, doc: Doc) -> Any:
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        try:
            return self._resource(doc["apiVersion"], doc["kind"])
        except ResourceNotFoundError:
            raise DeployError([f"{ref(doc)}: the cluster has no {doc['apiVersion']} {doc['kind']} API "
                               "(install the operator that provides it, e.g. cert-manager)"]) from None

    def _get(self, doc: Doc) -> Doc | None:
        from kubernetes.client.exceptions import ApiException
        from kubernetes.dynamic.exceptions import NotFoundError

        meta = doc["metadata"]
        try:
            return _plain(self.client.get(self._kind(doc), name=meta["name"], namespace=meta.get("namespace")))
        except NotFoundError:
            return None
        except ApiException as exc:
            raise DeployError([f"{ref(doc)}: {api_message(exc)}"]) from None

    def _list(self, api_version: str, kind: str, selector: str, namespace: str | None = None) -> list[Doc]:
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        try:
            res = self._resource(api_version, kind)
        except ResourceNotFoundError:  # e.g. cert-manager not installed: nothing of that kind to find
            return []
        found = _plain(self.client.get(res, namespace=namespace, label_selector=selector))
        items: list[Doc] = list((found or {}).get("items") or [])
        for item in items:  # list responses omit the per-item apiVersion/kind
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
        return items

    def desired(self) -> list[Doc]:
        """The rendered documents with Secret values from the stack's local state (generated once)."""
        specs = stack_components(self.model)
        data = self.state.ensure({s.name: secret_keys(self.model, s) for s in specs})
        if self._images is None:
            self._images = stack_images(self.model)
        return render_stack(self.model, secrets=data, images=self._images)

    def _apply(self, doc: Doc, dry_run: bool, force: bool) -> Doc:
        from kubernetes.client.exceptions import ApiException

        meta = doc["metadata"]
        kwargs: dict[str, Any] = {"field_manager": FIELD_MANAGER}
        if force:
            kwargs["force_conflicts"] = True
        if dry_run:
            kwargs["dry_run"] = "All"
        res = self._kind(doc)
        try:
            return _plain(self.client.server_side_apply(res, body=doc, name=meta["name"],
                                                        namespace=meta.get("namespace"), **kwargs))
        except ApiException as exc:
            hint = ""
            if getattr(exc, "status", None) == 409:
                hint = " (another field manager owns these fields: fix it there, or re-run with --force-conflicts)"
            raise DeployError([f"{ref(doc)}: {api_message(exc)}{hint}"]) from None

    # ---- rollout -------------------------------------------------------------------------------
    def _wait_rollouts(self, deployments: list[Doc], say: Progress) -> None:
        pending = {d["metadata"]["name"]: d for d in deployments}
        deadline = self.clock() + self.rollout_timeout
        last: dict[str, str] = {}
        while pending:
            for name, doc in list(pending.items()):
                live = self._get(doc) or {}
                try:
                    done, what = rollout_state(live) if live else (False, "not found")
                except _RolloutFailed as exc:
                    raise DeployError([self._rollout_line(doc, str(exc))]) from None
                if done:
                    say(f"{component_of(doc)}: rolled out ({what})")
                    del pending[name]
                elif last.get(name) != what:
                    say(f"{component_of(doc)}: {what}")
                last[name] = what
            if not pending:
                return
            if self.clock() >= deadline:
                raise DeployError([self._rollout_line(d, f"timed out after {self.rollout_timeout:.0f}s: "
                                                         f"{last.get(n, '')}") for n, d in pending.items()])
            self.sleep(self.poll)

    def _rollout_line(self, doc: Doc, reason: str) -> str:
        meta = doc["metadata"]
        pods = self._list("v1", "Pod", f"app.kubernetes.io/instance={meta['name']}", meta["namespace"])
        details = pod_reasons(pods)
        return (f"{component_of(doc)}: rollout of {ref(doc)} failed: {reason}"
                + (f"; {'; '.join(details)}" if details else ""))

    # ---- deploy / diff / prune -------------------------------------------------------------------
    def owned(self) -> list[Doc]:
        """Every object this stack's govcloud applied (by labels), in apply order."""
        found: list[Doc] = []
        for api_version, kind in APPLY_KINDS:
            for item in self._list(api_version, kind, self.selector()):
                labels = item.get("metadata", {}).get("labels") or {}
                if labels.get("app.kubernetes.io/managed-by") == MANAGED_BY and \
                        labels.get("govcloud.stack") == self.model.name:
                    found.append(item)
        return found

    def deploy(self, say: Progress, dry_run: bool = False, prune: bool = True, prune_volumes: bool = False,
               force_conflicts: bool = False) -> DeployReport:
        from kubernetes.dynamic.exceptions import NotFoundError

        _ = self.client  # credentials first: nothing is generated for a cluster we cannot reach
        docs = self.desired()
        report = DeployReport()
        new_namespaces: set[str] = set()
        for step, title in enumerate(("namespaces", "config and secrets", "data stores", "applications")):
            batch = [d for d in docs if phase(d) == step]
            if not batch:
                continue
            say(f"{'dry run: ' if dry_run else ''}{title} ({len(batch)} objects)")
            for doc in batch:
                live = self._get(doc) if not (dry_run and doc["metadata"].get("namespace") in new_namespaces) \
                    else None
                try:
                    result = self._apply(doc, dry_run, force_conflicts)
                except DeployError:
                    if dry_run and doc["metadata"].get("namespace") in new_namespaces:
                        result = doc  # its namespace does not exist yet: the server cannot dry-run it
                    else:
                        raise
                text = unified(live, result, ref(doc)) if dry_run else ""
                if live is None:
                    action = "created"
                    if doc["kind"] == "Namespace":
                        new_namespaces.add(doc["metadata"]["name"])
                elif dry_run:
                    action = "configured" if text else "unchanged"
                elif live.get("metadata", {}).get("resourceVersion") == \
                        (result or {}).get("metadata", {}).get("resourceVersion"):
                    action = "unchanged"
                else:
                    action = "configured"
                if text:
                    report.diff.append(text)
                report.applied.append((ref(doc), action))
                if action != "unchanged":
                    say(f"{ref(doc)} {action}{' (dry run)' if dry_run else ''}")
            if step >= 2 and not dry_run:
                deployments = [d for d in batch if d["kind"] == "Deployment"]
                self._bootstrap(deployments, say)
                self._wait_rollouts(deployments, say)
        if prune:
            wanted = {_key(d) for d in docs}
            for item in reversed(self.owned()):
                if _key(item) in wanted:
                    continue
                if item["kind"] in KEEP_KINDS and not prune_volumes:
                    report.kept.append(ref(item))
                    continue
                if dry_run:
                    report.diff.append(unified(item, None, ref(item)))
                else:
                    say(f"{ref(item)} pruned")
                    try:
                        meta = item["metadata"]
                        self.client.delete(self._resource(item["apiVersion"], item["kind"]), name=meta["name"],
                                           namespace=meta.get("namespace"))
                    except NotFoundError:
                        pass
                report.pruned.append(ref(item))
        if not dry_run:
            report.statuses = self.status()
        return report

    def diff(self, say: Progress) -> list[str]:
        """Unified diffs between the cluster and what deploy would apply (server-side dry run), prunes too."""
        return self.deploy(say, dry_run=True).diff

    # ---- Runtime interface -----------------------------------------------------------------------
    def up(self, say: Progress) -> list[ComponentStatus]:
        return self.deploy(say).statuses

    def scale(self, component: str, running: bool) -> None:
        """Stop (replicas 0) or restart one component's Deployment; restores stop a database's consumers."""
        doc = next(d for d in self.desired() if d["kind"] == "Deployment" and component_of(d) == component)
        doc = copy.deepcopy(doc)
        if not running:
            doc["spec"]["replicas"] = 0
        self._apply(doc, dry_run=False, force=True)
        if running:
            self._wait_rollouts([doc], lambda _msg: None)

    def status(self) -> list[ComponentStatus]:
        live = {d["metadata"]["name"]: d for d in self._list("apps/v1", "Deployment", self.selector())}
        out = []
        for spec in stack_components(self.model):
            dep = live.get(names.workload(self.model, spec.name))
            endpoint = self.endpoint(spec.name, "http" if "http" in spec.ports else next(iter(spec.ports)))
            if dep is None:
                out.append(ComponentStatus(spec.name, "missing", False, "no Deployment", endpoint))
                continue
            want = (dep.get("spec") or {}).get("replicas", 1)
            st = dep.get("status") or {}
            ready = st.get("readyReplicas", 0) or 0
            if want == 0:
                out.append(ComponentStatus(spec.name, "stopped", False, "scaled to 0", endpoint))
                continue
            try:
                done, what = rollout_state(dep)
            except _RolloutFailed as exc:
                done, what = False, str(exc)
            state = "running" if ready >= want else "degraded"
            out.append(ComponentStatus(spec.name, state, ready >= want and done,
                                       "" if ready >= want and done else what, endpoint,
                                       {"ready": f"{ready}/{want}"}))
        return out

    def endpoint(self, component: str, port: str = "http") -> str:
        spec = load_components()[component]
        if spec.public and port == "http":
            return f"https://{hostname(self.model, spec)}"
        return f"{'http' if port == 'http' else port}://{names.host(self.model, component)}:{spec.ports[port]}"

    def _ready_pod(self, component: str, ready: bool = True) -> str:
        """A pod of the component that is Ready (or, with ``ready=False``, whose container runs)."""
        ns = names.namespace(self.model, component)
        pods = self._list("v1", "Pod", f"app.kubernetes.io/instance={names.workload(self.model, component)}", ns)
        for pod in pods:
            status = pod.get("status") or {}
            conds = status.get("conditions") or []
            if ready and any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds):
                return str(pod["metadata"]["name"])
            running = [c for c in status.get("containerStatuses") or [] if "running" in (c.get("state") or {})]
            if not ready and running:
                return str(pod["metadata"]["name"])
        raise DeployError([f"{component}: no {'ready' if ready else 'running'} pod in namespace {ns}"])

    def _bootstrap(self, deployments: list[Doc], say: Progress) -> None:
        """Contract bootstrap hooks (idempotent) run in a running pod before readiness is awaited, as locally:
        a component may only become ready once bootstrapped (the CA's hierarchy)."""
        specs = load_components()
        for doc in deployments:
            spec = specs[component_of(doc)]
            if not spec.bootstrap:
                continue
            deadline = self.clock() + self.rollout_timeout
            while True:
                try:
                    pod = self._ready_pod(spec.name, ready=False)
                    break
                except DeployError:
                    try:  # a rollout that has already failed says why better than "no running pod"
                        rollout_state(self._get(doc) or {})
                    except _RolloutFailed as exc:
                        raise DeployError([self._rollout_line(doc, str(exc))]) from None
                    if self.clock() >= deadline:
                        raise DeployError([self._rollout_line(doc, "no running pod to bootstrap in "
                                                                   f"{self.rollout_timeout:.0f}s")]) from None
                    self.sleep(self.poll)
            say(f"{spec.name}: bootstrap in {pod}")
            result = self.exec(spec.name, spec.bootstrap, pod=pod)
            if result.returncode != 0:
                err = result.stderr.decode(errors="replace").strip().splitlines()
                raise DeployError([f"{spec.name}: bootstrap {' '.join(spec.bootstrap)} exited {result.returncode}: "
                                   f"{err[-1] if err else 'no output'}"])

    def exec(self, component: str, command: list[str], stdin: IO[bytes] | None = None,
             stdout: IO[bytes] | None = None, pod: str | None = None) -> ExecResult:
        """Run ``command`` in a ready pod of the component (or ``pod``) through the API's exec stream."""
        from kubernetes import client as k8s

        if self._stream is None:
            from kubernetes.stream import stream as _stream

            self._stream = _stream
        pod = pod or self._ready_pod(component)
        core = k8s.CoreV1Api(getattr(self.client, "client", None))
        resp = self._stream(core.connect_get_namespaced_pod_exec, pod, names.namespace(self.model, component),
                            container=component, command=command, stdin=stdin is not None, stdout=True,
                            stderr=True, tty=False, binary=True, _preload_content=False)
        out, err = bytearray(), bytearray()

        def drain() -> None:
            resp.update(timeout=1)
            for channel, buf in ((resp.read_stdout, out), (resp.read_stderr, err)):
                chunk = channel(timeout=0)
                if chunk:
                    data = chunk if isinstance(chunk, bytes) else chunk.encode()
                    if buf is out and stdout is not None:
                        stdout.write(data)
                    else:
                        buf.extend(data)

        if stdin is not None:
            while chunk := stdin.read(1 << 16):
                resp.write_stdin(chunk)
                drain()
            resp.close_channel(0)
        while resp.is_open():
            drain()
        code = resp.returncode
        resp.close()
        return ExecResult(int(code or 0), bytes(out), bytes(err))

    def down(self, say: Progress, volumes: bool = False) -> list[str]:
        """Delete this stack's objects by label (reverse apply order); data (PVCs, namespaces) only with volumes."""
        from kubernetes.dynamic.exceptions import NotFoundError

        removed = []
        for item in reversed(self.owned()):
            if item["kind"] in KEEP_KINDS and not volumes:
                continue
            meta = item["metadata"]
            say(f"{ref(item)}: deleting")
            try:
                self.client.delete(self._resource(item["apiVersion"], item["kind"]), name=meta["name"],
                                   namespace=meta.get("namespace"))
            except NotFoundError:
                continue
            removed.append(ref(item))
        if volumes:
            self.state.remove()
        return removed
