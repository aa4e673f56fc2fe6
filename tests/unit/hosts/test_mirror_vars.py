"""`bundle mirror`'s mirror-vars.yml rendered through the roles' own templates and defaults: every source is the mirror."""

from __future__ import annotations

import json

import yaml
from hostsdata import HostVars, model_of, outputs_for

from infra.bundle.mirror import mirror_vars
from infra.hosts import build_inventory

URL, REGISTRY = "http://10.30.48.9:8080", "10.30.48.9:5000"


def test_mirror_vars_point_every_role_at_the_mirror(write) -> None:
    inv = build_inventory(model_of("staging"), outputs=write("out.json", json.dumps(outputs_for("staging")))).as_dict()
    inv["all"]["vars"].update(mirror_vars(URL + "/", REGISTRY))  # as --vars would (extra vars win over all of these)
    cp = sorted(inv["all"]["children"]["k8s_cluster"]["children"]["control_plane"]["hosts"])[0]
    hv = HostVars(inv, cp, ["common", "container_runtime", "kubernetes", "etcd_backup"])
    sources = hv.render("common", "govcloud.sources.j2")
    assert f"URIs: {URL}/debian\n" in sources and f"URIs: {URL}/debian-security\n" in sources
    assert sources.count("Check-Valid-Until: no\n") == 2  # the bundle's indices are a frozen, signed snapshot
    assert "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" in sources  # Debian's signature still checked
    v = hv.values
    assert v["kubernetes_apt_repo"] == f"{URL}/kubernetes/v1.31/deb/"
    assert v["etcd_backup_etcd_url"] == f"{URL}/artifacts/etcd/v3.5.15/etcd-v3.5.15-linux-amd64.tar.gz"
    assert v["kubernetes_cni_manifest_url"] == f"{URL}/artifacts/calico/v3.28.2/calico.yaml"
    assert v["container_runtime_sandbox_image"] == f"{REGISTRY}/pause:3.10"
    hosts = hv.render("container_runtime", "hosts.toml.j2", item="registry.k8s.io")
    assert f'server = "https://{REGISTRY}"' in hosts
    kubeadm = {d["kind"]: d for d in yaml.safe_load_all(hv.render("kubernetes", "kubeadm-config.yaml.j2"))}
    assert kubeadm["ClusterConfiguration"]["imageRepository"] == f"{REGISTRY}/registry.k8s.io"
    # and without the mirror's vars, the default mirror checks Valid-Until as before
    default = build_inventory(model_of("staging"), outputs=write("o2.json", json.dumps(outputs_for("staging")))).as_dict()
    assert "Check-Valid-Until" not in HostVars(default, cp, ["common"]).render("common", "govcloud.sources.j2")
