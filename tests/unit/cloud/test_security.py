"""Least privilege: every security-group rule and listener checked against the rules of issue 3."""

from __future__ import annotations

from ipaddress import IPv4Network

from cloud_mocks import Built

from infra.cloud.security import INGRESS_NODE_PORT, KUBE_API, SSH, plan_rules

WORLD = {"0.0.0.0/0", "::/0"}
NODE_PORTS = (30000, 32767)


def _groups(b: Built) -> dict[str, str]:
    """Security group id -> role key (from the group's resource name ``sg-<key>``)."""
    return {r.id: r.name.removeprefix("sg-") for r in b.of("SecGroup")}


def _covers(rule, lo: int, hi: int) -> bool:
    return rule.inputs["portRangeMin"] <= hi and rule.inputs["portRangeMax"] >= lo


def _halves(b: Built) -> tuple[IPv4Network, IPv4Network]:
    public, internal = b.model.network.dmz.subnets(prefixlen_diff=1)
    return public, internal


def test_no_rule_is_open_to_the_world(openstack_stack: str, built) -> None:
    b: Built = built(openstack_stack)
    rules = b.of("SecGroupRule")
    assert rules
    for r in rules:
        prefix, group = r.inputs.get("remoteIpPrefix"), r.inputs.get("remoteGroupId")
        assert (prefix is None) != (group is None), f"{r.name}: needs exactly one remote (none means 0.0.0.0/0)"
        if prefix is not None:
            assert prefix not in WORLD and IPv4Network(prefix).prefixlen >= 8, r.name
        assert r.inputs["protocol"] in ("tcp", "udp") and r.inputs.get("portRangeMin"), r.name


def test_only_the_public_https_listener_is_open_to_the_world(openstack_stack: str, built) -> None:
    b: Built = built(openstack_stack)
    lbs = {r.id: r for r in b.of("LoadBalancer")}
    subnets = {r.id: IPv4Network(r.inputs["cidr"]) for r in b.of("Subnet")}
    open_listeners = [r for r in b.of("Listener") if WORLD & set(r.inputs.get("allowedCidrs", []))]
    assert len(open_listeners) == 1
    (listener,) = open_listeners
    assert listener.inputs["protocolPort"] == 443
    assert subnets[lbs[listener.inputs["loadbalancerId"]].inputs["vipSubnetId"]] == _halves(b)[0]
    for r in b.of("Listener"):
        assert r.inputs.get("allowedCidrs"), f"{r.name}: a listener without allowed_cidrs is open to all"


def test_ssh_only_from_the_bastion(openstack_stack: str, built) -> None:
    b: Built = built(openstack_stack)
    groups = _groups(b)
    admin = {str(c) for c in b.model.network.admin_cidrs}
    ssh = [r for r in b.of("SecGroupRule") if r.inputs["direction"] == "ingress" and _covers(r, SSH, SSH)]
    assert ssh
    for r in ssh:
        owner = groups[r.inputs["securityGroupId"]]
        if owner == "bastion":
            assert r.inputs.get("remoteIpPrefix") in admin, r.name
        else:
            assert groups.get(r.inputs.get("remoteGroupId", "")) == "bastion", r.name
    assert {groups[r.inputs["securityGroupId"]] for r in ssh} >= {"control-plane", "worker", "data"}


def test_bastion_ssh_from_admin_cidrs_only(variant: Built) -> None:
    b = variant
    admin = [str(c) for c in b.model.network.admin_cidrs]
    assert admin
    groups = _groups(b)
    into_bastion = [
        r
        for r in b.of("SecGroupRule")
        if r.inputs["direction"] == "ingress" and groups[r.inputs["securityGroupId"]] == "bastion"
    ]
    assert sorted(r.inputs["remoteIpPrefix"] for r in into_bastion) == sorted(admin)
    assert all(r.inputs["portRangeMin"] == r.inputs["portRangeMax"] == SSH for r in into_bastion)


def test_kube_api_only_from_mgmt_and_the_internal_lb(openstack_stack: str, built) -> None:
    b: Built = built(openstack_stack)
    allowed = {str(b.model.network.mgmt), str(_halves(b)[1])}
    api = [r for r in b.of("SecGroupRule") if r.inputs["direction"] == "ingress" and _covers(r, KUBE_API, KUBE_API)]
    assert {r.inputs.get("remoteIpPrefix") for r in api} == allowed
    assert all(r.inputs.get("remoteGroupId") is None for r in api)
    (listener,) = [r for r in b.of("Listener") if r.inputs["protocolPort"] == KUBE_API]
    assert set(listener.inputs["allowedCidrs"]) == {str(b.model.network.mgmt), str(b.model.network.app)}


def test_node_ports_only_from_the_public_lb(openstack_stack: str, built) -> None:
    b: Built = built(openstack_stack)
    public = str(_halves(b)[0])
    node_ports = [r for r in b.of("SecGroupRule") if r.inputs["direction"] == "ingress" and _covers(r, *NODE_PORTS)]
    assert node_ports
    assert {r.inputs.get("remoteIpPrefix") for r in node_ports} == {public}
    assert {r.inputs["portRangeMin"] for r in node_ports} == {INGRESS_NODE_PORT}
    members = [r for r in b.of("Member") if r.inputs["protocolPort"] == INGRESS_NODE_PORT]
    workers = sum(w.count for w in b.model.cluster.workers)
    assert len(members) == workers


def test_egress_is_explicit(openstack_stack: str, built) -> None:
    b: Built = built(openstack_stack)
    groups = b.of("SecGroup")
    assert all(g.inputs["deleteDefaultRules"] is True for g in groups)
    egress_owners = {r.inputs["securityGroupId"] for r in b.of("SecGroupRule") if r.inputs["direction"] == "egress"}
    assert egress_owners == {g.id for g in groups}
    dns = {f"{ns}/32" for ns in b.model.network.dns_nameservers}
    for r in b.of("SecGroupRule"):
        if r.inputs["direction"] == "egress" and r.inputs["portRangeMin"] == 53:
            assert r.inputs["remoteIpPrefix"] in dns


def test_egress_https_only_to_allowed_ranges(variant: Built) -> None:
    b = variant
    egress = [str(c) for c in b.model.network.egress_cidrs]
    assert egress
    https = [r for r in b.of("SecGroupRule") if r.inputs["direction"] == "egress" and _covers(r, 443, 443)]
    assert {r.inputs["remoteIpPrefix"] for r in https} == set(egress)
    assert len(https) == len(b.of("SecGroup"))


def test_registered_rules_are_the_plan(openstack_stack: str, built) -> None:
    b: Built = built(openstack_stack)
    assert sorted(r.name for r in b.of("SecGroupRule")) == sorted(rule.key for rule in plan_rules(b.model))


def test_every_port_has_its_groups(openstack_stack: str, built) -> None:
    b: Built = built(openstack_stack)
    groups = _groups(b)
    instances = {r.inputs["networks"][0]["port"]: r for r in b.of("Instance")}
    for port in b.of("Port"):
        assert port.inputs["portSecurityEnabled"] is True
        role = instances[port.id].inputs["metadata"]["govcloud-role"]
        assert [groups[g] for g in port.inputs["securityGroupIds"]] == [role]
