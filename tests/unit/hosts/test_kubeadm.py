"""kubeadm's Init/Cluster/JoinConfiguration rendered from every stack's inventory, checked structurally."""

from __future__ import annotations

import copy
import json
import secrets

import pytest
import yaml
from hostsdata import PLAYBOOKS, STACKS, HostVars, model_of, outputs_for

from infra.hosts import build_inventory
from infra.hosts.kubeadm import Expected, check

# what `kubeadm token create --print-join-command` and `kubeadm init phase upload-certs` print
JOIN = (f"kubeadm join 10.0.0.1:6443 --token {secrets.token_hex(3)}.{secrets.token_hex(8)} "
        f"--discovery-token-ca-cert-hash sha256:{secrets.token_hex(32)} \n")
UPLOAD = f"[upload-certs] Storing the certificates in Secret\n[upload-certs] Using certificate key:\n{secrets.token_hex(32)}\n"


def expected_for(stack: str) -> Expected:
    model = model_of(stack)
    return Expected(
        version=model.cluster.kubernetes_version,
        endpoint=outputs_for(stack)["kubernetes"]["api_endpoint"].removeprefix("https://"),
        pod_cidr=str(model.cluster.pod_cidr), service_cidr=str(model.cluster.service_cidr),
        registry=f"registry.{model.domain}", node_network=str(model.network.app),
    )


def _hosts(inv: dict) -> tuple[list[str], list[str]]:
    groups = inv["all"]["children"]["k8s_cluster"]["children"]
    return list(groups["control_plane"]["hosts"]), list(groups["workers"]["hosts"])


@pytest.mark.parametrize("stack", STACKS)
def test_every_node_of_every_stack_gets_a_sound_kubeadm_configuration(stack: str, write) -> None:
    inv = build_inventory(model_of(stack), outputs=write("out.json", json.dumps(outputs_for(stack)))).as_dict()
    want = expected_for(stack)
    control_plane, workers = _hosts(inv)
    first = HostVars(inv, control_plane[0], ["kubernetes"])
    assert first.values["kubernetes_first_control_plane"] == control_plane[0]
    docs = list(yaml.safe_load_all(first.render("kubernetes", "kubeadm-config.yaml.j2")))
    assert check(docs, control_plane[0], want) == []
    for host in control_plane[1:] + workers[:2]:
        hv = HostVars(inv, host, ["kubernetes"])
        join_vars = {
            # the role's own expressions over the commands' output, as Ansible evaluates them
            "kubernetes_join_command": {"stdout": JOIN},
            "kubernetes_certificate_key": {"stdout": UPLOAD},
        }
        rendered = hv.render("kubernetes", "kubeadm-join.yaml.j2", **_join_values(hv, join_vars))
        (join,) = yaml.safe_load_all(rendered)
        assert check([join], host, want) == [], rendered
        assert ("controlPlane" in join) == (host in control_plane)


def _join_values(hv: HostVars, registered: dict) -> dict:
    """The role's join defaults evaluated by Ansible's own templating over the commands' registered output."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar, trust_as_template

    defaults = yaml.safe_load((PLAYBOOKS / "roles/kubernetes/defaults/main.yml").read_text())
    templar = Templar(loader=DataLoader(), variables=registered)
    keys = ("kubernetes_join_token", "kubernetes_join_ca_cert_hash", "kubernetes_join_certificate_key")
    return {key: templar.template(trust_as_template(defaults[key])) for key in keys}


def test_the_checks_name_what_is_wrong(write) -> None:
    inv = build_inventory(model_of("prod"), outputs=write("out.json", json.dumps(outputs_for("prod")))).as_dict()
    control_plane, _ = _hosts(inv)
    docs = list(yaml.safe_load_all(HostVars(inv, control_plane[0], ["kubernetes"]).render("kubernetes", "kubeadm-config.yaml.j2")))
    want = expected_for("prod")
    bad = copy.deepcopy(docs)
    cluster = next(d for d in bad if d["kind"] == "ClusterConfiguration")
    cluster["controlPlaneEndpoint"] = "10.9.9.9:6443"
    cluster["imageRepository"] = "registry.k8s.io"
    cluster["networking"]["serviceSubnet"] = cluster["networking"]["podSubnet"]
    del cluster["kubernetesVersion"]
    problems = check(bad, control_plane[0], want)
    assert any("not the API load balancer" in p for p in problems)
    assert any("not on the registry mirror" in p for p in problems)
    assert any("serviceSubnet" in p for p in problems)
    assert "ClusterConfiguration: kubernetesVersion missing" in problems
    join = {"apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "JoinConfiguration",
            "discovery": {"bootstrapToken": {"apiServerEndpoint": want.endpoint, "token": "", "caCertHashes": [""]}},
            "nodeRegistration": {"name": "w", "criSocket": "unix:///run/containerd/containerd.sock"}}
    assert check([join], "w", want, secrets_known=False) == []  # check mode: the secrets are not fetched
    assert len(check([join], "w", want)) == 2
