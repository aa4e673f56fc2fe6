"""Role variables derived from the model, rendered through the roles' own templates and asserted."""

from __future__ import annotations

import json
import subprocess
from ipaddress import IPv4Network, ip_address

import pytest
import yaml
from hostsdata import PLAYBOOKS, STACKS, HostVars, model_of, outputs_for

from infra.cloud.network import subnet_plan
from infra.hosts import build_inventory
from infra.hosts.firewall import host_rules
from infra.model import StackModel


def _inventory(stack: str, write, model: StackModel | None = None) -> dict:
    model = model or model_of(stack)
    return build_inventory(model, outputs=write("out.json", json.dumps(outputs_for(stack)))).as_dict()


def _first(inv: dict, group: str) -> str:
    children = inv["all"]["children"]
    node = children[group] if group == "bastion" else children["k8s_cluster"]["children"][group]
    return sorted(node["hosts"])[0]


def _rule(rules: list[dict], port: str) -> dict:
    (rule,) = [r for r in rules if r["ports"] == port]
    return rule


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_firewall_rules_come_from_the_model(stack: str) -> None:
    model = model_of(stack)
    net, plan = model.network, subnet_plan(model.network)
    rules = host_rules(model)
    cp, workers = rules["control_plane"], rules["workers"]
    assert _rule(cp, "22")["sources"] == [str(net.mgmt)]
    assert _rule(workers, "22")["sources"] == [str(net.mgmt)]
    api_sources = {str(net.mgmt), str(plan["dmz-internal"][1]), str(model.cluster.pod_cidr)}
    assert set(_rule(cp, "6443")["sources"]) == api_sources
    assert _rule(cp, "2379-2380")["sources"] == [str(net.app)]
    assert _rule(workers, "30443")["sources"] == [str(plan["dmz-public"][1])]
    assert not [r for r in cp if r["ports"] == "30443"]
    for group in rules.values():
        for rule in group:
            assert all(IPv4Network(s).prefixlen >= 8 for s in rule["sources"]), rule  # never the world


def test_bastion_admits_ssh_only_from_admin_ranges() -> None:
    data = model_of("prod").model_dump(by_alias=True)
    data["network"]["adminCidrs"] = ["192.0.2.0/24"]
    model = StackModel.model_validate(data)
    assert host_rules(model)["bastion"] == [
        {"proto": "tcp", "ports": "22", "sources": ["192.0.2.0/24"], "comment": "operators reach the bastion"}
    ]
    assert host_rules(model_of("prod"))["bastion"] == []  # no admin ranges: nothing admitted (the role refuses)


@pytest.mark.parametrize("stack", STACKS)
def test_nftables_ruleset_renders_the_groups_rules(stack: str, write) -> None:
    inv = _inventory(stack, write)
    model = model_of(stack)
    host = _first(inv, "control_plane")
    text = HostVars(inv, host, ["common"]).render("common", "nftables.conf.j2")
    assert "flush ruleset" not in text  # kube-proxy's and the CNI's tables survive a reload
    assert "table inet govcloud" in text and "policy drop;" in text
    assert f'ip saddr {{ {model.network.mgmt} }} tcp dport 22 accept comment "SSH only from the bastion"' in text
    assert f"ip saddr {{ {model.network.app} }} tcp dport 2379-2380 accept" in text
    worker = HostVars(inv, _first(inv, "workers"), ["common"]).render("common", "nftables.conf.j2")
    assert "tcp dport 30443 accept" in worker and "2379-2380" not in worker


def test_kubeadm_config_carries_the_models_networks_and_endpoint(write) -> None:
    model = model_of("prod")
    inv = _inventory("prod", write)
    host = _first(inv, "control_plane")
    hv = HostVars(inv, host, ["kubernetes"])
    docs = list(yaml.safe_load_all(hv.render("kubernetes", "kubeadm-config.yaml.j2")))
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) == {"InitConfiguration", "ClusterConfiguration", "KubeletConfiguration", "KubeProxyConfiguration"}
    cluster = kinds["ClusterConfiguration"]
    api = outputs_for("prod")["kubernetes"]["api_endpoint"].removeprefix("https://")
    assert cluster["controlPlaneEndpoint"] == api
    assert cluster["networking"] == {
        "podSubnet": str(model.cluster.pod_cidr), "serviceSubnet": str(model.cluster.service_cidr),
        "dnsDomain": "cluster.local",
    }
    assert cluster["kubernetesVersion"] == f"v{model.cluster.kubernetes_version}"
    assert cluster["imageRepository"] == f"registry.{model.domain}/registry.k8s.io"  # the mirror, not the internet
    assert api.split(":")[0] in cluster["apiServer"]["certSANs"]
    init = kinds["InitConfiguration"]
    assert ip_address(init["localAPIEndpoint"]["advertiseAddress"]) in model.network.app
    assert init["nodeRegistration"]["name"] == host
    assert kinds["KubeletConfiguration"]["cgroupDriver"] == "systemd"
    assert kinds["KubeletConfiguration"]["rotateCertificates"] is True
    assert kinds["KubeProxyConfiguration"]["clusterCIDR"] == str(model.cluster.pod_cidr)


def test_sshd_sysctl_and_sources_templates(write) -> None:
    inv = _inventory("staging", write)
    node = HostVars(inv, _first(inv, "workers"), ["common"])
    bastion = HostVars(inv, _first(inv, "bastion"), ["common"])
    sshd = node.render("common", "sshd_config.j2")
    hardened = ("PermitRootLogin no", "PasswordAuthentication no", "AllowGroups govcloud-ssh", "AllowTcpForwarding no")
    for line in hardened:
        assert line in sshd.splitlines()
    assert "AllowTcpForwarding yes" in bastion.render("common", "sshd_config.j2").splitlines()
    sysctl = node.render("common", "sysctl.conf.j2").splitlines()
    assert "kernel.kptr_restrict = 2" in sysctl and "net.ipv4.conf.all.accept_redirects = 0" in sysctl
    # optional (depends on the kernel's security modules): the same file everywhere, '-' lets systemd-sysctl
    # skip the key where the kernel lacks it (the role applies it with `sysctl -e`)
    assert "-kernel.yama.ptrace_scope = 1" in sysctl and "kernel.yama.ptrace_scope = 1" not in sysctl
    sources = node.render("common", "govcloud.sources.j2")
    assert "URIs: https://mirror.staging.egov.gov.sy/debian\n" in sources
    assert "deb.debian.org" not in sources


def test_etcd_backup_script_is_valid_bash_with_the_models_retention(write) -> None:
    inv = _inventory("prod", write)
    hv = HostVars(inv, _first(inv, "control_plane"), ["etcd_backup"])
    script = hv.render("etcd_backup", "govcloud-etcd-backup.sh.j2")
    check = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
    assert check.returncode == 0, check.stderr
    keep = model_of("prod").backup.retention
    assert f"--keep-daily {keep.daily} --keep-weekly {keep.weekly} --keep-monthly {keep.monthly}" in script
    env = hv.render("etcd_backup", "etcd-backup.env.j2")
    assert f"RESTIC_REPOSITORY=swift:govcloud-prod-backup-etcd:/{_first(inv, 'control_plane')}" in env


def test_etcd_backup_verifies_with_etcdutl_from_3_5_and_etcdctl_before(write) -> None:
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar, trust_as_template

    defaults = yaml.safe_load((PLAYBOOKS / "roles/etcd_backup/defaults/main.yml").read_text())
    tools = {}
    for version in ("v3.5.15", "v3.4.23", "v3.6.0"):
        templar = Templar(loader=DataLoader(), variables={"etcd_backup_etcd_version": version})
        tools[version] = templar.template(trust_as_template(defaults["etcd_backup_etcd_tools"]))
    assert tools == {"v3.5.15": ["etcdctl", "etcdutl"], "v3.4.23": ["etcdctl"], "v3.6.0": ["etcdctl", "etcdutl"]}
    inv = _inventory("prod", write)
    hv = HostVars(inv, _first(inv, "control_plane"), ["etcd_backup"])
    new = hv.render("etcd_backup", "govcloud-etcd-backup.sh.j2", etcd_backup_etcd_tools=tools["v3.5.15"])
    old = hv.render("etcd_backup", "govcloud-etcd-backup.sh.j2", etcd_backup_etcd_tools=tools["v3.4.23"])
    assert '/usr/local/bin/etcdutl snapshot status "$SNAPSHOT.part"' in new
    assert "etcdutl" not in old and 'etcdctl snapshot status "$SNAPSHOT.part"' in old
