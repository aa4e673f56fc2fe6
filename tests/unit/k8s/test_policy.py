"""Security review rules, computed from the contracts: PSS restricted, pods, images, network edges."""

from __future__ import annotations

import re
from typing import Any

from k8s_support import docs, specs

from infra.manifests.cluster import CA, DATABASE, DNS_NAMESPACE, INGRESS_NAMESPACE
from infra.manifests.workloads import database_consumers
from infra.model import load_stack

ALLOWED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                   "projected", "secret"}


def pod_specs(rendered: list[dict]) -> list[tuple[str, dict]]:
    out = []
    for d in rendered:
        if d["kind"] == "Deployment":
            out.append((d["metadata"]["name"], d["spec"]["template"]["spec"]))
        elif d["kind"] == "CronJob":
            out.append((d["metadata"]["name"], d["spec"]["jobTemplate"]["spec"]["template"]["spec"]))
    return out


def test_every_namespace_enforces_restricted(stack: str) -> None:
    namespaces = [d for d in docs(stack) if d["kind"] == "Namespace"]
    assert {d["metadata"]["name"] for d in namespaces} == {d["metadata"]["namespace"] for d in docs(stack)
                                                           if d["kind"] != "Namespace"}
    for ns in namespaces:
        labels = ns["metadata"]["labels"]
        for mode in ("enforce", "audit", "warn"):
            assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
            assert re.fullmatch(r"v1\.\d+", labels[f"pod-security.kubernetes.io/{mode}-version"])


def test_every_pod_meets_restricted(stack: str) -> None:
    pods = pod_specs(docs(stack))
    assert pods
    for name, pod in pods:
        assert not any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")), name
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False, name
        for vol in pod.get("volumes", []):
            assert set(vol) - {"name"} <= ALLOWED_VOLUMES, (name, vol)
        for c in [*pod.get("initContainers", []), *pod["containers"]]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and not sc.get("privileged"), name
            assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add"), name
            assert sc["runAsNonRoot"] is True and sc["runAsUser"] > 0, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["seccompProfile"]["type"] in ("RuntimeDefault", "Localhost"), name
            assert not any("hostPort" in p for p in c.get("ports", [])), name
            assert c["resources"]["limits"]["cpu"] and c["resources"]["limits"]["memory"], name
            assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"], name


def test_images_pinned_by_content_tag_and_probes_present(stack: str) -> None:
    for _, pod in pod_specs(docs(stack)):
        for c in pod["containers"]:
            image = c["image"]
            assert not image.endswith(":latest") and (
                re.search(r":[0-9a-f]{16}$", image) or re.search(r"@sha256:[0-9a-f]{64}$", image)), image
    for d in docs(stack):
        if d["kind"] == "Deployment":
            c = d["spec"]["template"]["spec"]["containers"][0]
            if specs(stack)[d["metadata"]["labels"]["app.kubernetes.io/name"]].probes:
                assert c["readinessProbe"] and c["livenessProbe"]


def test_service_accounts_do_not_automount(stack: str) -> None:
    accounts = {(d["metadata"]["namespace"], d["metadata"]["name"]): d for d in docs(stack)
                if d["kind"] == "ServiceAccount"}
    for d in docs(stack):
        if d["kind"] in ("Deployment", "CronJob"):
            pod = pod_specs([d])[0][1]
            account = accounts[(d["metadata"]["namespace"], pod["serviceAccountName"])]
            assert account["automountServiceAccountToken"] is False


def test_disruption_budgets_and_autoscalers(stack: str) -> None:
    rendered = docs(stack)
    deployments = {d["metadata"]["name"]: d for d in rendered if d["kind"] == "Deployment"}
    pdbs = {d["metadata"]["name"] for d in rendered if d["kind"] == "PodDisruptionBudget"}
    hpas = {d["spec"]["scaleTargetRef"]["name"]: d for d in rendered if d["kind"] == "HorizontalPodAutoscaler"}
    assert pdbs == set(deployments)
    by_name = specs(stack)
    for name, dep in deployments.items():
        spec = by_name[dep["metadata"]["labels"]["app.kubernetes.io/name"]]
        if spec.volumes:
            assert name not in hpas and dep["spec"]["replicas"] == 1
        else:
            assert "replicas" not in dep["spec"], "the HPA owns replicas"
            assert 1 <= hpas[name]["spec"]["minReplicas"] <= hpas[name]["spec"]["maxReplicas"]


def test_backups_scheduled_for_contract_backups_and_every_database(stack: str) -> None:
    model = load_stack(stack)
    crons = {d["metadata"]["labels"]["app.kubernetes.io/name"]: d for d in docs(stack) if d["kind"] == "CronJob"}
    expected = {n for n, s in specs(stack).items() if s.backup} | ({DATABASE} if database_consumers(model) else set())
    assert set(crons) == expected
    for cron in crons.values():
        assert cron["spec"]["schedule"] == model.backup.schedule
        assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    if DATABASE in crons:
        script = crons[DATABASE]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"][-1]
        for consumer in database_consumers(model):
            assert f"PGDATABASE={consumer} " in script


# ---- network policies ---------------------------------------------------------------------------
Peer = tuple[str, str]  # (namespace, instance or "*")


def expected_edges(stack: str) -> set[tuple[str, str]]:
    """(source instance, target component) from the contracts, computed independently of the renderer."""
    model, by_name = load_stack(stack), specs(stack)
    edges = set()
    for name, spec in by_name.items():
        wanted = {t for t in [*spec.depends_on, *spec.calls] if t != DATABASE}
        wanted |= {DATABASE} if spec.database else set()
        wanted |= {CA} if name != CA else set()
        for target in wanted & set(by_name) - {name}:
            edges.add((f"{stack}-{name}", target))
            if spec.backup:
                edges.add((f"{stack}-{name}-backup", target))
    if database_consumers(model):
        edges.add((f"{stack}-{DATABASE}-backup", DATABASE))
    return edges


def _peers(rule: dict[str, Any], key: str) -> list[Peer]:
    out = []
    for peer in rule[key]:
        ns = peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        pods = peer.get("podSelector", {}).get("matchLabels", {})
        out.append((ns, pods.get("app.kubernetes.io/instance") or pods.get("k8s-app") or "*"))
    return out


def test_default_deny_in_every_namespace(stack: str) -> None:
    rendered = docs(stack)
    namespaces = {d["metadata"]["name"] for d in rendered if d["kind"] == "Namespace"}
    denies = {d["metadata"]["namespace"]: d for d in rendered
              if d["kind"] == "NetworkPolicy" and d["spec"]["podSelector"] == {}}
    assert set(denies) == namespaces
    for d in denies.values():
        assert set(d["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        assert not d["spec"].get("ingress") and not d["spec"].get("egress")


def test_every_pod_is_covered_by_an_allow_policy(stack: str) -> None:
    rendered = docs(stack)
    selected = {(d["metadata"]["namespace"], d["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/instance"])
                for d in rendered if d["kind"] == "NetworkPolicy" and d["spec"]["podSelector"]}
    for d in rendered:
        if d["kind"] in ("Deployment", "CronJob"):
            tpl = d["spec"]["template"] if d["kind"] == "Deployment" else d["spec"]["jobTemplate"]["spec"]["template"]
            assert (d["metadata"]["namespace"], tpl["metadata"]["labels"]["app.kubernetes.io/instance"]) in selected


def test_network_policies_allow_exactly_the_contract_edges(stack: str) -> None:
    rendered, by_name = docs(stack), specs(stack)
    instance_ns = {f"{stack}-{n}": f"{stack}-{n}" for n in by_name} | {
        f"{stack}-{n}-backup": f"{stack}-{n}" for n in by_name}
    egress: set[tuple[str, str]] = set()
    ingress: set[tuple[str, str]] = set()
    public_from: set[str] = set()
    for d in rendered:
        if d["kind"] != "NetworkPolicy" or not d["spec"]["podSelector"]:
            continue
        me = d["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/instance"]
        component = d["metadata"]["labels"]["app.kubernetes.io/name"]
        for rule in d["spec"]["egress"]:
            for ns, pod in _peers(rule, "to"):
                if ns == DNS_NAMESPACE:
                    assert pod == "kube-dns" and {p["port"] for p in rule["ports"]} == {53}
                    continue
                target = ns.removeprefix(f"{stack}-")
                assert pod == f"{stack}-{target}" and instance_ns[pod] == ns
                assert sorted(p["port"] for p in rule["ports"]) == sorted(by_name[target].ports.values())
                egress.add((me, target))
        for rule in d["spec"]["ingress"]:
            for ns, pod in _peers(rule, "from"):
                if ns == INGRESS_NAMESPACE:
                    public_from.add(component)
                    assert [p["port"] for p in rule["ports"]] == [by_name[component].ports["http"]]
                    continue
                assert instance_ns[pod] == ns
                ingress.add((pod, component))
    expected = expected_edges(stack)
    assert egress == expected
    assert ingress == expected
    assert public_from == {n for n, s in by_name.items() if s.public}


def test_postgres_reached_only_by_its_consumers(stack: str) -> None:
    model = load_stack(stack)
    policy = next(d for d in docs(stack) if d["kind"] == "NetworkPolicy"
                  and d["metadata"]["name"] == f"{stack}-{DATABASE}-allow")
    sources = {pod for rule in policy["spec"]["ingress"] for _, pod in _peers(rule, "from")}
    consumers = {f"{stack}-{c}" for c in database_consumers(model)}
    consumers |= {f"{stack}-{c}-backup" for c in database_consumers(model) if specs(stack)[c].backup}
    assert sources == consumers | {f"{stack}-{DATABASE}-backup"}
