"""The local target: the stack's workload manifests played by podman on this machine.

Idempotent: a component whose manifest fingerprint (including its secrets' hash) matches what was
last applied and whose pod runs is left alone, so a second ``govcloud up`` is a fast no-op.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO

import yaml

from infra.contract import ComponentSpec, load_components
from infra.manifests import names
from infra.manifests.workloads import secret_data, secret_keys, stack_components, workload_docs
from infra.model import StackModel
from infra.runtime.base import ComponentStatus, ExecResult, Progress
from infra.runtime.podman import PodmanError, podman, podman_json, secret_names
from infra.runtime.readiness import probe_http, probe_tcp, wait_until
from infra.state import StackState

READY_TIMEOUT_S = 300.0


def pod_name(model: StackModel, component: str) -> str:
    return f"{names.workload(model, component)}-pod-0"


def container_name(model: StackModel, component: str) -> str:
    return f"{pod_name(model, component)}-{component}"


def preflight() -> None:
    if shutil.which("podman") is None:
        raise PodmanError("podman is not installed: run `make up` (it runs scripts/bootstrap-host.sh)")
    conf = Path("/etc/containers/containers.conf")
    if not conf.exists() or "runc" not in conf.read_text():
        raise PodmanError(f"{conf}: runtime must be runc on this host (crun fails): run scripts/bootstrap-host.sh")


class LocalRuntime:
    def __init__(self, model: StackModel):
        self.model = model
        self.state = StackState(model.name)
        self.specs = stack_components(model)
        self.applied_file = self.state.dir / "applied.json"

    # ---- helpers -------------------------------------------------------------------------------
    def _applied(self) -> dict[str, str]:
        try:
            return dict(json.loads(self.applied_file.read_text()))
        except (OSError, ValueError):
            return {}

    def _record(self, component: str, fp: str | None) -> None:
        data = self._applied()
        if fp is None:
            data.pop(component, None)
        else:
            data[component] = fp
        self.state.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.applied_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        tmp.replace(self.applied_file)

    def _pod_state(self, component: str) -> str:
        out = podman("pod", "ps", "--filter", f"name=^{pod_name(self.model, component)}$", "--format",
                     "{{.Status}}", check=False).stdout.decode().strip().lower()
        return out or "missing"

    def _container_died(self, component: str) -> str | None:
        proc = podman("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}",
                      container_name(self.model, component), check=False)
        if proc.returncode != 0:
            return "container is missing"
        status, code = ([*proc.stdout.decode().split(), "", ""])[:2]
        if status in ("exited", "stopped", "dead"):
            logs = podman("logs", "--tail", "5", container_name(self.model, component), check=False)
            tail = (logs.stdout + logs.stderr).decode(errors="replace").strip().splitlines()
            return f"container exited with code {code}: {tail[-1] if tail else 'no output'}"
        return None

    def probe(self, spec: ComponentSpec, live: bool = False) -> tuple[bool, str]:
        if spec.probes is None:
            return True, ""
        port = names.port(self.model, spec, spec.probes.port)
        if spec.probes.kind == "tcp":
            return probe_tcp("127.0.0.1", port)
        return probe_http(f"http://127.0.0.1:{port}{spec.probes.live if live else spec.probes.ready}")

    def _wait(self, spec: ComponentSpec, live: bool = False) -> None:
        ok, reason = wait_until(lambda: self.probe(spec, live), READY_TIMEOUT_S,
                                lambda: self._container_died(spec.name))
        if not ok:
            raise PodmanError(f"{spec.name} did not become {'alive' if live else 'ready'}: {reason} "
                              f"(logs: podman logs {container_name(self.model, spec.name)})")

    def _push_secret(self, spec: ComponentSpec, data: dict[str, str]) -> None:
        # podman 4.3's secretKeyRef reads the secret as JSON {key: base64(value)}; the value goes on stdin
        name = names.workload(self.model, spec.name)
        if name in secret_names():
            podman("secret", "rm", name)
        payload = json.dumps({k: base64.b64encode(v.encode()).decode() for k, v in data.items()}).encode()
        podman("secret", "create", name, "-", input=payload)

    # ---- Runtime interface -----------------------------------------------------------------------
    def up(self, say: Progress, only: Collection[str] | None = None) -> list[ComponentStatus]:
        """Apply the stack (or the components in ``only``: a restore brings postgres up before its consumers)."""
        from infra.images import build_all

        preflight()
        specs = [s for s in self.specs if only is None or s.name in only]
        refs = build_all(specs, say)
        wanted = {s.name: secret_keys(self.model, s) for s in self.specs}
        state = self.state.ensure(wanted)
        applied = self._applied()
        statuses = []
        for spec in specs:
            docs = workload_docs(self.model, spec, str(refs[spec.name]))
            data = secret_data(self.model, spec, state)
            secret_hash = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
            fp = docs[-1]["metadata"]["annotations"]["govcloud.io/fingerprint"] + secret_hash
            running = self._pod_state(spec.name).startswith("running")
            if applied.get(spec.name) == fp and running and self.probe(spec)[0]:
                say(f"{spec.name}: unchanged")
                statuses.append(self._status(spec))
                continue
            say(f"{spec.name}: starting")
            self._record(spec.name, None)  # an interrupted apply is re-applied next time
            if data:
                self._push_secret(spec, data)
            existing = {v for v in self._volumes()}
            play = [d for d in docs if not (d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"] in existing)]
            try:
                podman("kube", "play", "--replace", "-", input=yaml.safe_dump_all(play).encode())
            except PodmanError as exc:
                why = self._container_died(spec.name) or str(exc)
                raise PodmanError(f"{spec.name} did not become ready: {why} "
                                  f"(logs: podman logs {container_name(self.model, spec.name)})") from None
            if spec.bootstrap:  # bootstrap needs the process alive (migrated), and readiness may need it
                self._wait(spec, live=True)
                say(f"{spec.name}: bootstrap")
                result = self.exec(spec.name, spec.bootstrap)
                if result.returncode != 0:
                    err = result.stderr.decode(errors="replace").strip().splitlines()
                    raise PodmanError(f"{spec.name} bootstrap failed: {err[-1] if err else result.returncode}")
            self._wait(spec)
            self._record(spec.name, fp)
            say(f"{spec.name}: ready")
            statuses.append(self._status(spec))
        return statuses

    def _volumes(self) -> list[str]:
        out = podman("volume", "ls", "--format", "{{.Name}}").stdout.decode().split()
        prefix = f"{self.model.name}-"
        return [v for v in out if v.startswith(prefix) and v[len(prefix):].split("-")[0] in load_components()]

    def _status(self, spec: ComponentSpec) -> ComponentStatus:
        state = self._pod_state(spec.name)
        ok, reason = self.probe(spec) if state.startswith("running") else (False, f"pod {state}")
        return ComponentStatus(spec.name, state.split()[0] if state else "missing", ok, reason,
                               endpoint=self.endpoint(spec.name, names.main_port(spec)))

    def status(self) -> list[ComponentStatus]:
        return [self._status(s) for s in self.specs]

    def endpoint(self, component: str, port: str = "http") -> str:
        return names.url(self.model, load_components()[component], port)

    def exec(self, component: str, command: list[str], stdin: IO[bytes] | None = None,
             stdout: IO[bytes] | None = None) -> ExecResult:
        args = ["podman", "exec", *(["-i"] if stdin is not None else []), container_name(self.model, component),
                *command]
        proc = subprocess.run(args, stdin=stdin, stdout=stdout if stdout is not None else subprocess.PIPE,
                              stderr=subprocess.PIPE, check=False)
        return ExecResult(proc.returncode, proc.stdout or b"", proc.stderr or b"")

    def scale(self, component: str, running: bool) -> None:
        """Stop or start one component's pod (restores stop a database's consumers)."""
        pod = pod_name(self.model, component)
        if not running:
            podman("pod", "stop", "-t", "10", pod)
            return
        podman("pod", "start", pod)
        self._wait(load_components()[component])

    def down(self, say: Progress, volumes: bool = False) -> list[str]:
        """Stop this stack's pods (reverse start order); with ``volumes`` also its data, secrets and state."""
        removed: list[str] = []
        pods = {p["Name"] for p in podman_json("pod", "ps", "--format", "json")}
        mine = [pod_name(self.model, s.name) for s in reversed(list(load_components().values()))]
        mine = [p for p in mine if p in pods]
        if mine:  # in parallel: each pod gets SIGTERM (or its image's STOPSIGNAL), then 10 s
            say(f"stopping {len(mine)} pod(s)")
            with ThreadPoolExecutor(max_workers=len(mine)) as pool:
                list(pool.map(lambda p: podman("pod", "rm", "-f", "-t", "10", p), mine))
            removed += [f"pod/{p}" for p in mine]
        for spec in load_components().values():
            self._record(spec.name, None)
        if volumes:
            for vol in self._volumes():
                podman("volume", "rm", "-f", vol)
                removed.append(f"volume/{vol}")
            for secret in secret_names():
                if secret.startswith(f"{self.model.name}-") and secret[len(self.model.name) + 1:] in load_components():
                    podman("secret", "rm", secret)
                    removed.append(f"secret/{secret}")
            self.applied_file.unlink(missing_ok=True)
            self.state.remove()
        return removed
