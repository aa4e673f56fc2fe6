"""Every committed stack under mocks: OpenStack stacks construct, local ones are refused; counts and outputs."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pulumi
import pytest
from cloud_mocks import Built, construct, merged, stack_values

from infra.cloud import program
from infra.model.stack import TIERS


def test_there_are_stacks_of_both_kinds(openstack_stack: str) -> None:
    assert stack_values(openstack_stack)["target"] == "openstack"


def test_local_stacks_are_refused_in_one_line(local_stack: str) -> None:
    with pytest.raises(pulumi.RunError) as err:
        construct(local_stack)
    message = str(err.value)
    assert "\n" not in message
    assert f"stack {local_stack!r} has target 'local'" in message and "OpenStack only" in message


def _hosts(model) -> int:  # bastion + control plane + every worker
    return 1 + model.cluster.control_plane.count + sum(w.count for w in model.cluster.workers)


def test_resource_counts_follow_the_model(openstack_stack: str, built) -> None:
    b: Built = built(openstack_stack)
    m = b.model
    count = {kind: len(b.of(kind)) for kind in {r.kind for r in b.resources}}  # openstack types only
    nodes = m.cluster.control_plane.count + sum(w.count for w in m.cluster.workers)
    subnets = len(TIERS) + 1  # the dmz is split into public and internal halves
    expected = {
        "Network": len(TIERS),
        "Subnet": subnets,
        "Router": 1,
        "RouterInterface": subnets,
        "Instance": _hosts(m),
        "Port": _hosts(m),
        "Volume": _hosts(m),
        "ServerGroup": 2 + len(m.cluster.workers),  # bastion, control plane, one per worker pool
        "FloatingIp": 1,
        "FloatingIpAssociate": 1,
        "LoadBalancer": 2,
        "Listener": 2,
        "Pool": 2,
        "Monitor": 2,
        "Member": nodes,
        "Container": 2,  # the restic repository and etcd snapshots
        "Zone": 0,
        "RecordSet": 0,
    }
    assert {k: count.get(k, 0) for k in expected} == expected


def test_instances_per_pool_and_sizes(openstack_stack: str, built) -> None:
    b: Built = built(openstack_stack)
    m = b.model
    pools = {"control-plane": (m.cluster.control_plane.count, m.cluster.control_plane.flavor)}
    pools |= {w.name: (w.count, w.flavor) for w in m.cluster.workers}
    for pool, (n, flavor) in pools.items():
        instances = [r for r in b.of("Instance") if r.inputs["metadata"]["govcloud-pool"] == pool]
        assert len(instances) == n, pool
        assert {i.inputs["flavorId"] for i in instances} <= {f"flavor-{flavor}"}
    looked_up = {(tok.rsplit(":", 1)[-1], args["name"]) for tok, args in b.calls}
    assert ("getImage", m.cluster.image) in looked_up
    assert ("getNetwork", m.network.external_network) in looked_up
    assert {("getFlavor", f) for _, f in pools.values()} | {("getFlavor", m.cluster.bastion_flavor)} <= looked_up


def test_outputs_shape(openstack_stack: str, built) -> None:
    b: Built = built(openstack_stack)
    m, out = b.model, b.outputs
    assert tuple(out) == program.OUTPUT_KEYS
    assert out["stack"] == m.name
    assert IPv4Address(out["bastion"]["address"])
    assert IPv4Address(out["bastion"]["private_address"]) in m.network.mgmt
    expected_pools = {"control-plane": m.cluster.control_plane.count} | {w.name: w.count for w in m.cluster.workers}
    assert {p: len(hosts) for p, hosts in out["nodes"].items()} == expected_pools
    addresses = [h["address"] for hosts in out["nodes"].values() for h in hosts]
    assert len(set(addresses)) == len(addresses)
    assert all(IPv4Address(a) in m.network.app for a in addresses)
    assert {h["role"] for h in out["nodes"]["control-plane"]} == {"control-plane"}
    halves = list(m.network.dmz.subnets(prefixlen_diff=1))
    api = out["load_balancers"]["kube-api"]
    ingress = out["load_balancers"]["ingress"]
    assert IPv4Address(api["vip"]) in halves[1] and IPv4Address(ingress["vip"]) in halves[0]
    assert out["kubernetes"]["api_endpoint"] == f"https://{api['vip']}:6443"
    assert out["kubernetes"]["version"] == m.cluster.kubernetes_version
    assert out["backup_containers"] == {"restic": f"govcloud-{m.name}-backups", "etcd": f"govcloud-{m.name}-backup-etcd"}
    from infra.ops.repository import repository_url

    assert repository_url(m) == f"swift:{out['backup_containers']['restic']}:/restic"  # what backups write to
    cidrs = {k: IPv4Network(v["cidr"]) for k, v in out["networks"].items()}
    assert {cidrs[t] for t in ("app", "data", "mgmt")} == {m.network.app, m.network.data, m.network.mgmt}
    assert {cidrs["dmz-public"], cidrs["dmz-internal"]} == set(halves)
    assert out["dns"] is None


def test_provider_comes_from_the_model_and_is_used_everywhere(openstack_stack: str, built) -> None:
    b: Built = built(openstack_stack)
    (provider,) = [r for r in b.resources if r.typ == "pulumi:providers:openstack"]
    assert provider.inputs["cloud"] == b.model.cloud.cloud
    assert provider.inputs["region"] == b.model.cloud.region
    custom = [r for r in b.resources if r.typ.startswith("openstack:")]
    assert custom and all(r.provider and r.provider.endswith(f"::openstack::{provider.id}") for r in custom)


def test_designate_zone_and_records(variant: Built) -> None:
    b = variant
    m = b.model
    (zone,) = b.of("Zone")
    assert zone.inputs["name"] == f"{m.domain}."
    records = {r.inputs["name"]: r.inputs["records"] for r in b.of("RecordSet")}
    out = b.outputs
    assert records[f"api.{m.domain}."] == [out["load_balancers"]["kube-api"]["vip"]]
    assert records[f"bastion.{m.domain}."] == [out["bastion"]["address"]]
    hostnames = [s.hostname for s in m.components.values() if s.enabled and s.hostname]
    for hostname in hostnames:
        assert records[f"{hostname}."] == [out["load_balancers"]["ingress"]["vip"]]
    assert len(records) == 3 + len(hostnames)
    assert out["dns"]["zone"] == f"{m.domain}."


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"cluster": {"controlPlane": {"count": 2}}}, "control plane count must be odd"),
        ({"network": {"data": "10.99.0.0/24"}}, "outside network.cidr"),
        ({"network": {"data": "10.30.0.0/24"}}, "overlaps"),
        ({"netwrok": {}}, "unknown field"),
        ({"cluster": {"image": ""}}, "cluster.image"),
    ],
)
def test_bad_stacks_fail_before_any_resource(override: dict, expected: str) -> None:
    values = merged(stack_values("staging"), override)
    with pytest.raises(pulumi.RunError) as err:
        construct("staging", values)
    assert expected in str(err.value)
    assert all(line.startswith("/") and ": " in line for line in str(err.value).splitlines())
