"""Hosts: one floating IP (the bastion's), anti-affinity server groups, boot volumes, user data, labels."""

from __future__ import annotations

import yaml
from cloud_mocks import Built


def test_only_one_floating_ip_and_it_is_the_bastions(openstack_stack: str, built) -> None:
    b: Built = built(openstack_stack)
    (fip,) = b.of("FloatingIp")
    assert fip.inputs["pool"] == b.model.network.external_network
    (assoc,) = b.of("FloatingIpAssociate")
    ports = {p.id: p for p in b.of("Port")}
    bastion_ports = [
        i.inputs["networks"][0]["port"] for i in b.of("Instance") if i.inputs["metadata"]["govcloud-role"] == "bastion"
    ]
    assert [assoc.inputs["portId"]] == bastion_ports
    assert assoc.inputs["floatingIp"] == fip.outputs["address"] == b.outputs["bastion"]["address"]
    assert ports[assoc.inputs["portId"]].inputs["fixedIps"][0]["subnetId"] == "subnet-mgmt-id"


def test_every_instance_is_in_an_anti_affinity_group_of_its_pool(openstack_stack: str, built) -> None:
    b: Built = built(openstack_stack)
    groups = {g.id: g for g in b.of("ServerGroup")}
    assert all(g.inputs["policies"] == "anti-affinity" for g in groups.values())
    by_pool: dict[str, set[str]] = {}
    for inst in b.of("Instance"):
        (hint,) = inst.inputs["schedulerHints"]
        assert hint["group"] in groups, inst.name
        by_pool.setdefault(inst.inputs["metadata"]["govcloud-pool"], set()).add(hint["group"])
    assert all(len(ids) == 1 for ids in by_pool.values())  # one group per pool ...
    assert len({next(iter(ids)) for ids in by_pool.values()}) == len(by_pool)  # ... never shared


def test_every_instance_boots_from_its_own_volume(openstack_stack: str, built) -> None:
    b: Built = built(openstack_stack)
    m = b.model
    sizes = {"control-plane": m.cluster.control_plane.volume_gb} | {w.name: w.volume_gb for w in m.cluster.workers}
    volumes = {v.id: v for v in b.of("Volume")}
    used = []
    for inst in b.of("Instance"):
        (dev,) = inst.inputs["blockDevices"]
        assert dev["sourceType"] == dev["destinationType"] == "volume" and dev["bootIndex"] == 0
        volume = volumes[dev["uuid"]]
        used.append(volume.id)
        assert volume.inputs["imageId"] == f"image-{m.cluster.image}"
        pool = inst.inputs["metadata"]["govcloud-pool"]
        if pool in sizes:
            assert volume.inputs["size"] == sizes[pool]
        assert volume.inputs["metadata"]["govcloud-pool"] == pool
    assert sorted(used) == sorted(volumes)


def test_user_data_hardens_and_carries_the_models_keys(variant: Built) -> None:
    b = variant
    keys = list(b.model.cluster.ssh_public_keys)
    assert keys
    for inst in b.of("Instance"):
        text = inst.inputs["userData"]
        assert text.startswith("#cloud-config\n")
        doc = yaml.safe_load(text)
        assert doc["ssh_authorized_keys"] == keys
        assert doc["disable_root"] is True and doc["ssh_pwauth"] is False
        sshd = next(f["content"] for f in doc["write_files"] if f["path"].startswith("/etc/ssh/"))
        assert "PasswordAuthentication no" in sshd and "PermitRootLogin no" in sshd
        bastion = inst.inputs["metadata"]["govcloud-role"] == "bastion"
        assert ("AllowTcpForwarding yes" in sshd) == bastion


def test_inventory_labels(openstack_stack: str, built) -> None:
    b: Built = built(openstack_stack)
    roles = [i.inputs["metadata"]["govcloud-role"] for i in b.of("Instance")]
    m = b.model
    assert roles.count("bastion") == 1
    assert roles.count("control-plane") == m.cluster.control_plane.count
    assert roles.count("worker") == sum(w.count for w in m.cluster.workers)
    for inst in b.of("Instance"):
        md = inst.inputs["metadata"]
        assert md["kubernetes-version"] == m.cluster.kubernetes_version
        assert inst.inputs["availabilityZone"] == m.cloud.availability_zone
