#!/usr/bin/python3
"""API-side setup of the loopback test cloud, in one process (an ``openstack`` CLI call costs
about 2 s of imports on 2 cores). Runs with Debian's python3 and its keystoneauth1 (installed
with the services); plain REST, so it does not depend on any client library's version.

    setup_cloud.py register NAME:TYPE:URL ...   service user + service + endpoints (idempotent)
    setup_cloud.py resources                    compute host, image, flavors, 'public', quotas

Passwords come from the environment (ADMIN_PASS, SERVICE_PASS), never from the command line.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from keystoneauth1 import session
from keystoneauth1.identity import v3

KS = "http://127.0.0.1:5000/v3"
REGION = "RegionOne"
IMAGE = "testcloud-tiny"
FLAVORS = [  # the fake driver has room for thousands of these
    {"name": "m1.tiny", "id": "1", "ram": 512, "vcpus": 1, "disk": 1},
    {"name": "m1.small", "id": "2", "ram": 2048, "vcpus": 1, "disk": 20},
]
PUBLIC_CIDR, PUBLIC_GW, PUBLIC_POOL = "172.24.4.0/24", "172.24.4.1", ("172.24.4.10", "172.24.4.250")
# room for an environment of ~20 servers and then some (the sweep benchmark)
COMPUTE_QUOTAS = {"instances": 100, "cores": 200, "ram": 512000, "key_pairs": 100}
NETWORK_QUOTAS = {"network": 100, "subnet": 100, "port": 500, "router": 50, "floatingip": 100,
                  "security_group": 100, "security_group_rule": 1000}


def admin_session() -> session.Session:
    auth = v3.Password(auth_url=KS, username="admin", password=os.environ["ADMIN_PASS"],
                       project_name="admin", user_domain_id="default", project_domain_id="default")
    return session.Session(auth=auth)


class Api:
    """JSON calls to one service of the catalog (public endpoint, RegionOne; paths after the
    catalog URL, e.g. identity's is .../v3)."""

    def __init__(self, sess: session.Session, service_type: str, headers: dict[str, str] | None = None):
        self.sess, self.filt = sess, {"service_type": service_type, "interface": "public", "region_name": REGION}
        self.headers = headers or {}

    def call(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200, 201, 202, 204)) -> Any:
        r = self.sess.request(path, method, endpoint_filter=self.filt, json=body, headers=self.headers,
                              raise_exc=False)
        if r.status_code not in ok:
            raise SystemExit(f"setup_cloud: {method} {self.filt['service_type']}{path}: HTTP {r.status_code} {r.text[:300]}")
        return r.json() if r.content and "json" in r.headers.get("content-type", "") else None

    def get(self, path: str) -> Any:
        return self.call("GET", path)


def register(specs: list[str]) -> None:
    ks = Api(admin_session(), "identity")
    service_pass = os.environ["SERVICE_PASS"]

    def one(kind: str, query: str) -> dict[str, Any] | None:
        items = ks.get(f"/{kind}?{query}")[kind]
        return items[0] if items else None

    project = one("projects", "name=service") or ks.call(
        "POST", "/projects", {"project": {"name": "service", "domain_id": "default"}})["project"]
    admin_role = one("roles", "name=admin")
    assert admin_role, "keystone has no admin role: was keystone-manage bootstrap run?"
    for name in ("service", "member"):
        if not one("roles", f"name={name}"):
            ks.call("POST", "/roles", {"role": {"name": name}})
    service_role = one("roles", "name=service")
    assert service_role
    for spec in specs:
        name, stype, url = spec.split(":", 2)
        user = one("users", f"name={name}&domain_id=default")
        if user:  # the password follows secrets.env
            ks.call("PATCH", f"/users/{user['id']}", {"user": {"password": service_pass}})
        else:
            user = ks.call("POST", "/users", {"user": {"name": name, "domain_id": "default",
                                                          "password": service_pass}})["user"]
        for role in (admin_role, service_role):
            ks.call("PUT", f"/projects/{project['id']}/users/{user['id']}/roles/{role['id']}")
        svc = one("services", f"type={stype}") or ks.call(
            "POST", "/services", {"service": {"name": name, "type": stype}})["service"]
        have = {e["interface"]: e for e in ks.get(f"/endpoints?service_id={svc['id']}")["endpoints"]}
        for itf in ("public", "internal", "admin"):
            if itf not in have:
                ks.call("POST", "/endpoints", {"endpoint": {"service_id": svc["id"], "interface": itf,
                                                               "url": url, "region_id": REGION}})
            elif have[itf]["url"] != url:
                ks.call("PATCH", f"/endpoints/{have[itf]['id']}", {"endpoint": {"url": url}})
        print(f"registered {name} ({stype}) at {url}")


def wait(what: str, secs: float, check: Any) -> Any:
    deadline = time.monotonic() + secs
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise SystemExit(f"setup_cloud: timed out after {secs:.0f}s waiting for {what}")
        time.sleep(0.5)


def resources() -> None:
    sess = admin_session()
    nova = Api(sess, "compute", {"OpenStack-API-Version": "compute 2.79"})
    glance, neutron = Api(sess, "image"), Api(sess, "network")
    project_id = sess.get_project_id()

    # nova-compute reports itself, then the scheduler maps it into cell1 (discover_hosts_in_cells_interval)
    wait("nova-compute to report up", 180, lambda: [
        s for s in nova.get("/os-services?binary=nova-compute")["services"] if s["state"] == "up"])
    wait("the compute host to be mapped into a cell", 120, lambda: nova.get("/os-hypervisors")["hypervisors"])

    if not glance.get(f"/v2/images?name={IMAGE}")["images"]:
        # a 1 MiB raw image: the fake virt driver never reads it
        img = glance.call("POST", "/v2/images", {"name": IMAGE, "disk_format": "raw", "container_format": "bare",
                                                 "visibility": "public"})
        sess.request(f"/v2/images/{img['id']}/file", "PUT", endpoint_filter=glance.filt, data=b"\0" * 1048576,
                     headers={"Content-Type": "application/octet-stream"})
        print(f"image {IMAGE} uploaded")

    flavors = {f["name"] for f in nova.get("/flavors")["flavors"]}
    for fl in FLAVORS:
        if fl["name"] not in flavors:
            nova.call("POST", "/flavors", {"flavor": fl})
            print(f"flavor {fl['name']} created")

    nets = neutron.get("/v2.0/networks?name=public")["networks"]
    net = nets[0] if nets else neutron.call("POST", "/v2.0/networks", {"network": {
        "name": "public", "router:external": True, "shared": False,
        "provider:network_type": "flat", "provider:physical_network": "public"}})["network"]
    if not neutron.get(f"/v2.0/subnets?network_id={net['id']}")["subnets"]:
        neutron.call("POST", "/v2.0/subnets", {"subnet": {
            "network_id": net["id"], "name": "public-subnet", "ip_version": 4, "cidr": PUBLIC_CIDR,
            "gateway_ip": PUBLIC_GW, "enable_dhcp": False,
            "allocation_pools": [{"start": PUBLIC_POOL[0], "end": PUBLIC_POOL[1]}]}})
        print("external network public created")

    # (a quota PUT costs ~2 s on nova: only when a value differs)
    have = nova.get(f"/os-quota-sets/{project_id}")["quota_set"]
    if any(have.get(k) != v for k, v in COMPUTE_QUOTAS.items()):
        nova.call("PUT", f"/os-quota-sets/{project_id}", {"quota_set": COMPUTE_QUOTAS})
    have = neutron.get(f"/v2.0/quotas/{project_id}")["quota"]
    if any(have.get(k) != v for k, v in NETWORK_QUOTAS.items()):
        neutron.call("PUT", f"/v2.0/quotas/{project_id}", {"quota": NETWORK_QUOTAS})
    print("resources ok")


def main(argv: list[str]) -> None:
    if len(argv) >= 2 and argv[0] == "register":
        register(argv[1:])
    elif argv == ["resources"]:
        resources()
    else:
        raise SystemExit("usage: setup_cloud.py register NAME:TYPE:URL ... | setup_cloud.py resources")


if __name__ == "__main__":
    main(sys.argv[1:])
