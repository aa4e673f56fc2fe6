"""Smoke tests of the loopback OpenStack test cloud through openstacksdk: what the cloud-facing code
(sweep, cloud health, Swift backups) relies on. Names are unique per run (tc-<hex>); everything a test
creates is deleted by its finalizers."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable

import openstack.connection
import pytest

from .conftest import unique

pytestmark = pytest.mark.testcloud
Conn = openstack.connection.Connection
Undo = list[Callable[[], object]]


def test_token_issued_for_admin_in_project_admin(os_conn: Conn) -> None:
    assert os_conn.auth_token
    assert os_conn.current_project.name == "admin"
    types = {service["type"] for service in os_conn.service_catalog}
    assert {"identity", "object-store", "image", "placement", "network", "compute"} <= types


def private_network(conn: Conn, cleanup: Undo, name: str, cidr: str = "10.77.0.0/24") -> tuple:
    """network + subnet + router with its gateway on 'public' and an interface on the subnet."""
    net = conn.network
    public = net.find_network("public", ignore_missing=False)
    assert public.is_router_external, "the fixture's network 'public' is not external"
    n = net.create_network(name=name)
    cleanup.append(lambda: net.delete_network(n))
    sn = net.create_subnet(network_id=n.id, name=name, ip_version=4, cidr=cidr)
    cleanup.append(lambda: net.delete_subnet(sn))
    r = net.create_router(name=name, external_gateway_info={"network_id": public.id})
    cleanup.append(lambda: net.delete_router(r))
    net.add_interface_to_router(r, subnet=sn.id)
    cleanup.append(lambda: net.remove_interface_from_router(r, subnet=sn.id))
    return public, n, sn, r


def test_network_subnet_router_with_external_gateway(os_conn: Conn, cleanup: Undo) -> None:
    name = unique()
    public, _n, sn, r = private_network(os_conn, cleanup, name)
    gw = os_conn.network.get_router(r.id).external_gateway_info
    assert gw["network_id"] == public.id
    assert ipaddress.ip_address(gw["external_fixed_ips"][0]["ip_address"]) in ipaddress.ip_network("172.24.4.0/24")
    ports = list(os_conn.network.ports(device_id=r.id, device_owner="network:router_interface"))
    assert [p.fixed_ips[0]["subnet_id"] for p in ports] == [sn.id]
    sg = os_conn.network.create_security_group(name=name, description="testcloud smoke")
    cleanup.append(lambda: os_conn.network.delete_security_group(sg))
    os_conn.network.create_security_group_rule(security_group_id=sg.id, direction="ingress", protocol="tcp",
                                               port_range_min=22, port_range_max=22, remote_ip_prefix="0.0.0.0/0")
    assert any(rule.port_range_min == 22 for rule in os_conn.network.security_group_rules(security_group_id=sg.id))


def test_server_goes_active_and_gets_a_floating_ip(os_conn: Conn, cleanup: Undo) -> None:
    name = unique()
    public, n, _sn, _r = private_network(os_conn, cleanup, name, cidr="10.78.0.0/24")
    image = os_conn.image.find_image("testcloud-tiny", ignore_missing=False)
    flavor = os_conn.compute.find_flavor("m1.tiny", ignore_missing=False)
    server = os_conn.compute.create_server(name=name, image_id=image.id, flavor_id=flavor.id,
                                           networks=[{"uuid": n.id}], metadata={"govcloud.stack": name})

    def delete_server() -> None:
        os_conn.compute.delete_server(server)
        os_conn.compute.wait_for_delete(server, wait=180)
    cleanup.append(delete_server)
    server = os_conn.compute.wait_for_server(server, status="ACTIVE", failures=["ERROR"], interval=1, wait=300)
    assert server.status == "ACTIVE"
    port = next(os_conn.network.ports(device_id=server.id))
    assert port.status == "ACTIVE" and port.binding_vif_type == "ovs"
    fip = os_conn.network.create_ip(floating_network_id=public.id, port_id=port.id, description=name)
    cleanup.append(lambda: os_conn.network.delete_ip(fip))
    fip = os_conn.network.get_ip(fip.id)
    assert fip.port_id == port.id
    assert fip.fixed_ip_address == port.fixed_ips[0]["ip_address"]
    assert ipaddress.ip_address(fip.floating_ip_address) in ipaddress.ip_network("172.24.4.0/24")


def test_swift_container_upload_download_delete(os_conn: Conn, cleanup: Undo) -> None:
    store = os_conn.object_store
    container = unique()
    store.create_container(name=container)
    cleanup.append(lambda: store.delete_container(container))
    data = os.urandom(1024 * 1024 + 7)
    store.upload_object(container=container, name="blob.bin", data=data)
    cleanup.append(lambda: store.delete_object("blob.bin", container=container))
    assert [o.name for o in store.objects(container)] == ["blob.bin"]
    assert store.download_object("blob.bin", container=container) == data
