"""`govcloud deploy`/`diff` up to the API boundary, against the recorded fake dynamic client."""

from __future__ import annotations

from pathlib import Path

import pytest
from k8s_fake import FakeDynamicClient
from k8s_support import images, specs

from infra.manifests.cluster import phase
from infra.model import load_stack
from infra.model.loader import parse_stack, stack_file
from infra.runtime.kubernetes import FIELD_MANAGER, DeployError, KubernetesRuntime
from infra.state import StackState


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class BootstrapExec:
    """The exec stream as bootstrap hooks see it: records each command, answers with an exit code."""

    def __init__(self, code: int = 0) -> None:
        self.code, self.calls = code, []

    def __call__(self, fn, pod, namespace, **kwargs):  # type: ignore[no-untyped-def]
        self.calls.append((namespace, pod, kwargs["container"], kwargs["command"]))
        stream = _CodeStream(kwargs["command"])
        stream.code = self.code
        return stream


def runtime(stack: str, fake: FakeDynamicClient, tmp_path: Path, model=None, bootstrap=None) -> KubernetesRuntime:
    clock = Clock()
    rt = KubernetesRuntime(model or load_stack(stack), client=fake, state=StackState(stack, root=tmp_path),
                           images=images(stack), sleep=clock.sleep, clock=clock, rollout_timeout=30, poll=5)
    rt._stream = bootstrap or BootstrapExec()
    return rt


def say(lines: list[str]):
    return lines.append


def test_applies_in_phase_order_with_server_side_apply(stack: str, tmp_path: Path) -> None:
    fake = FakeDynamicClient()
    rt = runtime(stack, fake, tmp_path)
    report = rt.deploy(say([]))
    applies = [c for c in fake.calls if c.verb == "server_side_apply"]
    assert applies and all(c.kwargs["field_manager"] == FIELD_MANAGER for c in applies)
    assert not any(c.kwargs.get("dry_run") or c.kwargs.get("force_conflicts") for c in applies)
    order = [(c.kind, c.namespace, c.name) for c in applies]
    rendered = rt.desired()
    assert order == [(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in rendered]
    phases = [phase(d) for d in rendered]
    assert phases == sorted(phases)
    # namespaces first, then config/secrets/policies before any workload
    first_workload = next(i for i, c in enumerate(applies) if c.kind in ("Deployment", "PersistentVolumeClaim"))
    assert {c.kind for c in applies[:first_workload]} >= {"Namespace", "Secret", "NetworkPolicy", "ServiceAccount"}
    # data-store rollouts were awaited before any application was applied
    app_start = next(i for i, c in enumerate(fake.calls) if c.verb == "server_side_apply"
                     and c.kind == "Deployment" and not specs(stack)[c.name.removeprefix(f"{stack}-")].volumes)
    pg_wait = max(i for i, c in enumerate(fake.calls) if c.verb == "get" and c.kind == "Deployment"
                  and c.name == f"{stack}-postgres")
    assert pg_wait < app_start
    assert {a for _, a in report.applied} == {"created"}
    assert all(s.ready for s in report.statuses) and len(report.statuses) == len(specs(stack))


def test_secrets_come_from_local_state(stack: str, tmp_path: Path) -> None:
    fake = FakeDynamicClient()
    runtime(stack, fake, tmp_path).deploy(say([]))
    state = StackState(stack, root=tmp_path).all()
    import base64

    pg = fake.objects[("v1", "Secret", f"{stack}-postgres", f"{stack}-postgres")]
    for consumer, values in state.items():
        if "db-password" in values:
            assert base64.b64decode(pg["data"][f"dbpass-{consumer}"]).decode() == values["db-password"]


def test_second_deploy_changes_nothing(stack: str, tmp_path: Path) -> None:
    fake = FakeDynamicClient()
    runtime(stack, fake, tmp_path).deploy(say([]))
    before = {k: v["metadata"]["resourceVersion"] for k, v in fake.objects.items()}
    report = runtime(stack, fake, tmp_path).deploy(say([]))
    assert {a for _, a in report.applied} == {"unchanged"}
    assert {k: v["metadata"]["resourceVersion"] for k, v in fake.objects.items()} == before
    assert not report.pruned


def test_rollout_failure_names_component_and_reason(stack: str, tmp_path: Path) -> None:
    fake = FakeDynamicClient()
    fake.rollouts[f"{stack}-portal"] = "crash"
    with pytest.raises(DeployError) as err:
        runtime(stack, fake, tmp_path).deploy(say([]))
    (line,) = err.value.lines
    assert line.startswith("portal: rollout of Deployment")
    assert "ProgressDeadlineExceeded" in line and "CrashLoopBackOff" in line


def test_rollout_timeout_reports_progress(stack: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeDynamicClient()
    original = fake._deployment_status

    def stuck(dep):
        status = original(dep)
        if dep["metadata"]["name"] == f"{stack}-postgres":
            status.update(availableReplicas=0, readyReplicas=0)
        return status

    monkeypatch.setattr(fake, "_deployment_status", stuck)
    lines: list[str] = []
    with pytest.raises(DeployError) as err:
        runtime(stack, fake, tmp_path).deploy(say(lines))
    assert err.value.lines == [f"postgres: rollout of Deployment {stack}-postgres/{stack}-postgres failed: "
                               "timed out after 30s: 0 of 1 updated replicas available"]
    assert "postgres: 0 of 1 updated replicas available" in lines
    assert not any(c.kind == "Deployment" and c.name == f"{stack}-portal" for c in fake.mutations())


def test_conflict_is_one_line_naming_the_object(stack: str, tmp_path: Path) -> None:
    fake = FakeDynamicClient()
    rt = runtime(stack, fake, tmp_path)
    rt.deploy(say([]))
    svc = fake.objects[("v1", "Service", f"{stack}-portal", f"{stack}-portal")]
    fake.owners[("v1", "Service", f"{stack}-portal", f"{stack}-portal")][".spec.type"] = "kubectl-edit"
    svc["spec"]["type"] = "NodePort"
    with pytest.raises(DeployError) as err:
        runtime(stack, fake, tmp_path).deploy(say([]))
    (line,) = err.value.lines
    assert line.startswith(f"Service {stack}-portal/{stack}-portal: Apply failed with 1 conflict(s): "
                           'conflict with "kubectl-edit"')
    assert "--force-conflicts" in line
    runtime(stack, fake, tmp_path).deploy(say([]), force_conflicts=True)
    assert fake.objects[("v1", "Service", f"{stack}-portal", f"{stack}-portal")]["spec"]["type"] == "ClusterIP"


def _without(stack: str, component: str):
    path = stack_file(stack)
    from infra.model.loader import config_values

    values = config_values(path)
    comps = dict(values.get("components", {}))
    comps[component] = {**comps.get(component, {}), "enabled": False}
    return parse_stack(stack, path, {**values, "components": comps})


def test_prune_deletes_only_this_stacks_labelled_objects(stack: str, tmp_path: Path) -> None:
    fake = FakeDynamicClient()
    runtime(stack, fake, tmp_path).deploy(say([]))
    other = f"{stack}-portal"
    foreign = [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": other}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "hand-made", "namespace": other,
                                                             "labels": {"app": "x"}}, "spec": {}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {
            "name": "other-stack", "namespace": other, "labels": {
                "app.kubernetes.io/managed-by": "govcloud", "govcloud.stack": "another"}}, "spec": {}},
    ]
    for obj in foreign:
        fake.put(obj)
    # switch to a model without a stateless component whose dependents tolerate it: bodysystems when present,
    # else the last component in start order that nothing depends on
    by_name = specs(stack)
    needed = {d for s in by_name.values() for d in s.depends_on}
    victim = next(n for n in reversed(list(by_name)) if n not in needed)
    model = _without(stack, victim)
    report = runtime(stack, fake, tmp_path, model=model).deploy(say([]))
    deleted = [(c.kind, c.namespace, c.name) for c in fake.calls if c.verb == "delete"]
    assert deleted, report
    ns = f"{stack}-{victim}"
    assert all(n == ns or (k == "Namespace" and n is None) for k, n, _ in deleted)
    assert {k for k, _, _ in deleted} >= {"Deployment", "Service", "NetworkPolicy", "ServiceAccount"}
    assert ("v1", "Namespace", "", ns) in fake.objects and f"Namespace {ns}" in report.kept
    for obj in foreign:
        assert ("v1", obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"]) in fake.objects
    # prune_volumes also removes the namespace (and with it the data)
    runtime(stack, fake, tmp_path, model=model).deploy(say([]), prune_volumes=True)
    assert ("v1", "Namespace", "", ns) not in fake.objects


def test_dry_run_changes_nothing_and_prints_the_diff(stack: str, tmp_path: Path) -> None:
    fake = FakeDynamicClient()
    report = runtime(stack, fake, tmp_path).deploy(say([]), dry_run=True)
    assert fake.mutations() == [] and fake.objects == {}
    applies = [c for c in fake.calls if c.verb == "server_side_apply"]
    assert applies and all(c.kwargs["dry_run"] == "All" for c in applies)
    text = "".join(report.diff)
    assert f"+++ govcloud/Deployment {stack}-postgres/{stack}-postgres" in text
    assert "value-of" not in text and "(redacted" in text
    # against a deployed cluster: one change shows as exactly that
    runtime(stack, fake, tmp_path).deploy(say([]))
    snapshot = {k: dict(v["metadata"]) for k, v in fake.objects.items()}
    fake.objects[("v1", "Service", f"{stack}-portal", f"{stack}-portal")]["spec"]["ports"][0]["port"] = 1
    diffs = runtime(stack, fake, tmp_path).diff(say([]))
    assert len(diffs) == 1 and "-    port: 1\n+    port: " in diffs[0]
    assert {k: dict(v["metadata"]) for k, v in fake.objects.items()} == snapshot


def test_status_and_down(stack: str, tmp_path: Path) -> None:
    fake = FakeDynamicClient()
    rt = runtime(stack, fake, tmp_path)
    assert {s.state for s in rt.status()} == {"missing"}
    rt.deploy(say([]))
    assert all(s.ready and s.state == "running" for s in rt.status())
    removed = rt.down(say([]))
    kinds = {k for (_, k, _, _) in fake.objects}
    assert "Deployment" not in kinds and {"Namespace", "PersistentVolumeClaim"} <= kinds
    assert any(r.startswith("Deployment ") for r in removed)
    rt.down(say([]), volumes=True)
    assert not [k for k in fake.objects if k[1] != "Pod"]


def test_missing_crd_is_one_clear_line(stack: str, tmp_path: Path) -> None:
    from k8s_fake import KNOWN

    fake = FakeDynamicClient(known=set(KNOWN) - {("cert-manager.io/v1", "Issuer")})
    with pytest.raises(DeployError) as err:
        runtime(stack, fake, tmp_path).deploy(say([]))
    assert "no cert-manager.io/v1 Issuer API" in err.value.lines[0]


def test_cli_exit_codes(stack: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from infra.cli import deploy as cli

    fake = FakeDynamicClient()
    fake.rollouts[f"{stack}-portal"] = "crash"
    monkeypatch.setattr(cli, "_runtime", lambda s, timeout=None: runtime(stack, fake, tmp_path))
    import typer

    app = typer.Typer()
    cli.register(app)
    result = CliRunner().invoke(app, ["deploy", "-s", stack])
    assert result.exit_code == 1
    assert "portal: rollout of Deployment" in result.output and "CrashLoopBackOff" in result.output
    fake2 = FakeDynamicClient()
    monkeypatch.setattr(cli, "_runtime", lambda s, timeout=None: runtime(stack, fake2, tmp_path))
    result = CliRunner().invoke(app, ["diff", "-s", stack])
    assert result.exit_code == 1 and "+++ govcloud/" in result.output and not fake2.objects
    result = CliRunner().invoke(app, ["deploy", "-s", stack])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, ["diff", "-s", stack])
    assert result.exit_code == 0 and result.stdout == ""


class FakeExecStream:
    """The WSClient surface exec uses: echoes stdin to stdout, then closes with the command's exit code."""

    def __init__(self, command: list[str]) -> None:
        self.command, self.pending, self.stdin, self.open, self.closed_stdin = command, [b"hello\n"], b"", True, False

    def update(self, timeout: float = 0) -> None:
        if self.closed_stdin or not self.pending:
            self.pending.append(self.stdin)
            self.open = False

    def read_stdout(self, timeout: float = 0) -> bytes:
        return self.pending.pop(0) if self.pending else b""

    def read_stderr(self, timeout: float = 0) -> bytes:
        return b"warn\n" if not self.open and self.stdin else b""

    def write_stdin(self, data: bytes) -> None:
        self.stdin += data

    def close_channel(self, channel: int) -> None:
        self.closed_stdin = True

    def is_open(self) -> bool:
        return self.open

    @property
    def returncode(self) -> int:
        return 3

    def close(self) -> None:
        pass


def test_exec_streams_into_a_ready_pod(stack: str, tmp_path: Path) -> None:
    import io

    fake = FakeDynamicClient()
    seen: dict = {}

    def stream(fn, pod, namespace, **kwargs):
        seen.update(fn=fn.__name__, pod=pod, namespace=namespace, **kwargs)
        return FakeExecStream(kwargs["command"])

    rt = runtime(stack, fake, tmp_path)
    rt.deploy(say([]))
    rt._stream = stream
    result = rt.exec("postgres", ["cat"], stdin=io.BytesIO(b"data"))
    assert seen["fn"] == "connect_get_namespaced_pod_exec" and seen["namespace"] == f"{stack}-postgres"
    assert seen["pod"].startswith(f"{stack}-postgres-") and seen["container"] == "postgres"
    assert seen["stdin"] is True and seen["command"] == ["cat"]
    assert result.returncode == 3 and b"hello\n" in result.stdout and b"data" in result.stdout
    fake.rollouts[f"{stack}-portal"] = "crash"
    with pytest.raises(DeployError, match="CrashLoopBackOff"):
        runtime(stack, fake, tmp_path).deploy(say([]))
    with pytest.raises(DeployError, match="portal: no ready pod"):
        rt.exec("portal", ["true"])


def test_bootstrap_hooks_run_in_a_running_pod_before_readiness(stack: str, tmp_path: Path) -> None:
    fake, hooks = FakeDynamicClient(), BootstrapExec()
    runtime(stack, fake, tmp_path, bootstrap=hooks).deploy(say([]))
    expected = {name for name, spec in specs(stack).items() if spec.bootstrap}
    assert expected and {ns.removeprefix(f"{stack}-") for ns, _, _, _ in hooks.calls} == expected
    for ns, pod, container, command in hooks.calls:
        assert pod.startswith(ns) and command == specs(stack)[container].bootstrap


def test_failing_bootstrap_stops_the_deploy_with_the_component_named(stack: str, tmp_path: Path) -> None:
    with pytest.raises(DeployError) as err:
        runtime(stack, FakeDynamicClient(), tmp_path, bootstrap=BootstrapExec(code=4)).deploy(say([]))
    assert "bootstrap" in err.value.lines[0] and "exited 4" in err.value.lines[0]


class _CodeStream(FakeExecStream):
    """FakeExecStream with a chosen exit code (BootstrapExec above builds these at call time)."""

    code = 0

    @property
    def returncode(self) -> int:
        return self.code
