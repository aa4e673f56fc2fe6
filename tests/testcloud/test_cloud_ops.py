"""The cloud-facing operations against a real OpenStack (the loopback test cloud): the cloud layer of
``govcloud health``, the inventory read from the cloud, and the orphan sweep."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from infra.cloud.tags import Tagger
from infra.hosts import build_inventory
from infra.model import StackModel, state_root
from infra.ops.cloud_health import cloud_layer
from infra.ops.health import DEGRADED, DOWN, OK
from infra.ops.sweep import Marks, Sweeper, sweep
from tests.integration.conftest import govcloud
from tests.testcloud.cloudenv import CloudEnv, build, cloud_stack

pytestmark = pytest.mark.testcloud


def _forget(model: StackModel) -> None:
    (state_root() / "envs" / f"Pulumi.{model.name}.yaml").unlink(missing_ok=True)


def leftovers(conn: Any, stack: str, others: tuple[str, ...] = ()) -> list[str]:
    """Everything the sweep's discovery still finds for the stack, as 'kind name'."""
    sweeper = Sweeper(conn, Marks(stack, others), lambda _: None)
    return [f"{f.kind} {f.name}" for discover, _ in sweeper.order() for f in discover()]


@pytest.fixture
def env(os_conn: Any) -> Iterator[CloudEnv]:
    model = cloud_stack(os_conn)
    try:
        yield build(os_conn, model)
    finally:
        sweep(os_conn, model.name, lambda _: None)
        _forget(model)


def test_cloud_layer_reports_what_is_broken(env: CloudEnv, os_conn: Any) -> None:
    model = env.model
    checks = cloud_layer(model, os_conn)
    assert [c for c in checks if c.status != OK] == []
    assert {c.name for c in checks} >= {"networks", "subnets", "routers", "security groups", "floating ips",
                                        "backup containers", *(f"server {n}" for n in env.servers),
                                        "load balancer kube-api", "load balancer ingress"}

    worker = next(n for n, s in env.servers.items() if s.metadata["govcloud-role"] == "worker")
    os_conn.compute.stop_server(env.servers[worker])
    os_conn.compute.wait_for_server(env.servers[worker], status="SHUTOFF", wait=120)
    os_conn.network.update_ip(env.floating_ip, port_id=None)
    os_conn.network.delete_security_group(env.groups["data"])
    os_conn.network.update_router(env.router, external_gateway_info={})
    lbs = os_conn.load_balancer
    only = next(m for m in lbs.members(env.pools["ingress"]) if m.name == worker)  # the ingress pool's only member
    lbs.delete_member(only, env.pools["ingress"], ignore_missing=False)
    lbs.wait_for_load_balancer(env.balancers["ingress"].id, status="ACTIVE", interval=0.5, wait=60)
    api_listener = next(iter(lbs.listeners(load_balancer_id=env.balancers["kube-api"].id)))
    lbs.delete_pool(env.pools["kube-api"])  # its monitor and members go with it
    lbs.wait_for_load_balancer(env.balancers["kube-api"].id, status="ACTIVE", interval=0.5, wait=60)
    lbs.delete_listener(api_listener)
    lbs.wait_for_load_balancer(env.balancers["kube-api"].id, status="ACTIVE", interval=0.5, wait=60)

    bad = {c.name: c for c in cloud_layer(model, os_conn) if c.status != OK}
    assert set(bad) == {f"server {worker}", "floating ips", "security groups", "routers",
                        "load balancer ingress", "load balancer kube-api"}
    assert bad["load balancer ingress"].status == DOWN and f"no members (expected {worker})" in bad[
        "load balancer ingress"].detail
    assert bad["load balancer kube-api"].status == DOWN and "no listener on port 6443" in bad[
        "load balancer kube-api"].detail
    assert bad[f"server {worker}"].status == DOWN and "SHUTOFF" in bad[f"server {worker}"].detail
    assert bad["floating ips"].status == DEGRADED and env.floating_ip.floating_ip_address in bad["floating ips"].detail
    assert bad["security groups"].status == DOWN and Tagger(model.name).name("data", "data") in bad["security groups"].detail
    assert bad["routers"].status == DOWN and "no external gateway" in bad["routers"].detail

    proc = govcloud("health", "-s", model.name, "--layer", "cloud", "--json", check=False)
    report = json.loads(proc.stdout)
    assert proc.returncode == 2 and report["status"] == "down"
    assert {c["layer"] for c in report["checks"]} == {"cloud"}


def test_inventory_from_the_cloud_has_the_shape_of_the_one_from_outputs(env: CloudEnv, tmp_path: Path,
                                                                         os_conn: Any) -> None:
    model = env.model
    def address(name: str) -> str:
        return env.ports[name].fixed_ips[0]["ip_address"]

    bastion = next(n for n, s in env.servers.items() if s.metadata["govcloud-role"] == "bastion")
    nodes: dict[str, list[dict[str, str]]] = {}
    for name, server in sorted(env.servers.items()):
        if server.metadata["govcloud-role"] != "bastion":
            nodes.setdefault(server.metadata["govcloud-pool"], []).append(
                {"name": name, "address": address(name), "role": server.metadata["govcloud-role"]})
    outputs = {  # what `pulumi stack output --json` prints for this fleet
        "stack": model.name,
        "bastion": {"name": bastion, "address": env.floating_ip.floating_ip_address,
                    "private_address": address(bastion)},
        "nodes": nodes,
        "kubernetes": {"api_endpoint": f"https://{env.balancers['kube-api'].vip_address}:6443", "version": model.cluster.kubernetes_version,
                       "pod_cidr": str(model.cluster.pod_cidr), "service_cidr": str(model.cluster.service_cidr)},
        "backup_containers": {"restic": f"govcloud-{model.name}-backups",
                              "etcd": f"govcloud-{model.name}-backup-etcd"},
    }
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(outputs))
    from_outputs = build_inventory(model, outputs=path).as_dict()
    from_cloud = build_inventory(model, from_cloud=True).as_dict()
    assert from_cloud == from_outputs

    printed = govcloud("inventory", "-s", model.name, "--from-cloud", "--print").stdout
    assert yaml.safe_load(printed) == from_outputs


def _public_key() -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def test_sweep_leaves_nothing_and_can_be_rerun(os_conn: Any) -> None:
    model = cloud_stack(os_conn)
    neighbour = cloud_stack(os_conn, prefix=f"{model.name}-2")  # its names start with ours: must survive
    try:
        build(os_conn, model, wait=False)
        t = Tagger(model.name)
        os_conn.compute.create_keypair(name=t.name("ops"), public_key=_public_key())
        os_conn.compute.create_server_group(name=t.name("general"), policies=["anti-affinity"])
        for i in range(5):
            os_conn.object_store.upload_object(container=t.name("backups"), name=f"restic/data/{i}", data=b"x" * i)
        theirs = os_conn.network.create_network(name=Tagger(neighbour.name).name("app"))
        os_conn.network.set_tags(theirs, Tagger(neighbour.name).tags("network"))
        their_key = os_conn.compute.create_keypair(name=Tagger(neighbour.name).name("ops"), public_key=_public_key())

        listed = govcloud("env", "sweep", "-s", model.name, "--dry-run", "--json")
        dry = json.loads(listed.stdout)
        kinds = [f["kind"] for f in dry["found"]]
        assert kinds.count("server") == 3 and kinds.count("network") == 4 and kinds.count("container") == 2
        assert kinds.count("load balancer") == 2  # deleted with cascade: listeners, pools, monitors, members
        assert {"keypair", "server group", "floating ip", "router", "router interface", "port", "subnet",
                "security group"} <= set(kinds)
        assert dry["deleted"] == [] and len(leftovers(os_conn, model.name, (neighbour.name,))) == len(dry["found"])
        assert not any(neighbour.name in f["name"] for f in dry["found"])

        class Interrupted(Exception):
            pass

        def stop_at_ports(message: str) -> None:
            if "port" in message:
                raise Interrupted(message)

        with pytest.raises(Interrupted):  # a sweep stopped midway (servers gone, the rest still there) ...
            sweep(os_conn, model.name, stop_at_ports, other_stacks=[neighbour.name])
        assert leftovers(os_conn, model.name, (neighbour.name,))

        done = govcloud("env", "sweep", "-s", model.name, "--json")  # ... is finished by running it again
        assert json.loads(done.stdout)["failed"] == []
        assert leftovers(os_conn, model.name, (neighbour.name,)) == []
        again = json.loads(govcloud("env", "sweep", "-s", model.name, "--json").stdout)
        assert again["found"] == [] and again["deleted"] == []

        assert os_conn.network.get_network(theirs.id).name == theirs.name
        assert os_conn.compute.find_keypair(their_key.name) is not None
    finally:
        for m in (model, neighbour):
            sweep(os_conn, m.name, lambda _: None)
            _forget(m)
