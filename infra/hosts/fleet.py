"""The hosts of a stack, whatever their source: Pulumi outputs or a plain hosts file for handed-over VMs.

Hosts file format (one host per line, ``#`` comments, sections name the inventory groups)::

    [bastion]
    dc-bastion 203.0.113.10 private=10.30.48.5
    [control_plane]
    dc-cp-1 10.30.16.11
    [workers]
    dc-w-1 10.30.16.21 pool=general
    [kubernetes]
    api_endpoint = https://10.30.0.140:6443
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, ip_address
from pathlib import Path

from infra.hosts.outputs import OutKubernetes, Outputs
from infra.model import StackError, StackModel

GROUPS = ("bastion", "control_plane", "workers")
_ROLE_GROUP = {"control-plane": "control_plane", "worker": "workers"}
DEFAULT_POOL = {"control_plane": "control-plane", "workers": "general", "bastion": "bastion"}


@dataclass(frozen=True)
class Host:
    name: str
    group: str
    address: IPv4Address  # what Ansible connects to (the bastion's public address; nodes' private ones)
    private_address: IPv4Address
    pool: str


@dataclass
class Fleet:
    source: str
    hosts: list[Host]
    api_endpoint: str
    backup_containers: dict[str, str] = field(default_factory=dict)

    def group(self, name: str) -> list[Host]:
        return [h for h in self.hosts if h.group == name]


def fleet_from_outputs(out: Outputs, source: str) -> Fleet:
    b = out.bastion
    hosts = [Host(b.name, "bastion", b.address, b.private_address, "bastion")]
    for pool, nodes in out.nodes.items():
        hosts += [Host(n.name, _ROLE_GROUP[n.role], n.address, n.address, pool) for n in nodes]
    return Fleet(source, hosts, out.kubernetes.api_endpoint, dict(out.backup_containers))


def _address(text: str, where: str, problems: list[str]) -> IPv4Address | None:
    try:
        addr = ip_address(text)
    except ValueError:
        problems.append(f"{where}: expected an IPv4 address, got {text!r}")
        return None
    if not isinstance(addr, IPv4Address):
        problems.append(f"{where}: expected an IPv4 address, got {text!r}")
        return None
    return addr


def parse_hosts_file(text: str, source: str) -> Fleet:
    problems: list[str] = []
    hosts: list[Host] = []
    section = ""
    api_endpoint = ""
    backups: dict[str, str] = {}
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        where = f"{source}: line {number}"
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            if section not in (*GROUPS, "kubernetes", "backup_containers"):
                problems.append(f"{where}: unknown section [{section}] (expected {', '.join(GROUPS)}, kubernetes)")
            continue
        if section in ("kubernetes", "backup_containers"):
            key, eq, value = (p.strip() for p in line.partition("="))
            if not eq or not value:
                problems.append(f"{where}: expected 'key = value' in [{section}], got {line!r}")
            elif section == "backup_containers":
                backups[key] = value
            elif key == "api_endpoint":
                api_endpoint = value
            else:
                problems.append(f"{where}: unknown key {key!r} in [kubernetes] (expected api_endpoint)")
            continue
        if section not in GROUPS:
            problems.append(f"{where}: host line outside a [bastion], [control_plane] or [workers] section")
            continue
        name, *rest = line.split()
        if not rest:
            problems.append(f"{where}: expected 'NAME ADDRESS [key=value ...]', got {line!r}")
            continue
        if name in seen:
            problems.append(f"{where}: host {name!r} already listed on line {seen[name]}")
        seen[name] = number
        address = _address(rest[0], where, problems)
        opts: dict[str, str] = {}
        for item in rest[1:]:
            key, eq, value = item.partition("=")
            allowed = ("private", "pool") if section == "bastion" else ("pool",)
            if not eq or key not in allowed:
                problems.append(f"{where}: unknown option {item!r} (expected {', '.join(k + '=' for k in allowed)})")
            opts[key] = value
        private = _address(opts["private"], where, problems) if "private" in opts else address
        if section == "bastion" and "private" not in opts:
            problems.append(f"{where}: the bastion needs private=ADDRESS (its mgmt-tier address)")
        if address and private:
            hosts.append(Host(name, section, address, private, opts.get("pool", DEFAULT_POOL[section])))
    try:
        OutKubernetes.model_validate(
            {"api_endpoint": api_endpoint, "version": "1.00.0", "pod_cidr": "10.0.0.0/8", "service_cidr": "10.0.0.0/8"}
        )
    except Exception:
        problems.append(f"{source}: [kubernetes] api_endpoint: expected 'https://HOST:PORT', got {api_endpoint!r}")
    if problems:
        raise StackError(problems)
    return Fleet(source, hosts, api_endpoint, backups)


def load_hosts_file(path: Path) -> Fleet:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise StackError([f"{path}: cannot read hosts file ({exc.strerror})"]) from None
    return parse_hosts_file(text, str(path))


def check_against_model(fleet: Fleet, model: StackModel, versions: OutKubernetes | None = None) -> None:
    """Hosts must be where the model says (firewall rules are the model's tiers); one line per problem."""
    net = model.network
    problems: list[str] = []
    tiers: dict[str, tuple[str, IPv4Network]] = {
        "bastion": ("mgmt", net.mgmt), "control_plane": ("app", net.app), "workers": ("app", net.app),
    }
    for group in GROUPS:
        if not fleet.group(group):
            problems.append(f"{fleet.source}: no {group} host (every stack has a bastion, a control plane and workers)")
    for host in fleet.hosts:
        tier, cidr = tiers[host.group]
        if host.private_address not in cidr:
            problems.append(
                f"{fleet.source}: {host.group} {host.name}: address {host.private_address} is outside the "
                f"{tier} tier {cidr} of stack {model.name!r} (fix the hosts or the stack's network)"
            )
    cp = len(fleet.group("control_plane"))
    if cp and cp % 2 == 0:
        problems.append(f"{fleet.source}: {cp} control plane hosts: expected an odd number for etcd quorum")
    if versions is not None:
        cl = model.cluster
        pairs = (("version", cl.kubernetes_version), ("pod_cidr", cl.pod_cidr), ("service_cidr", cl.service_cidr))
        for key, mine in pairs:
            theirs = getattr(versions, key)
            if str(theirs) != str(mine):
                problems.append(
                    f"{fleet.source}: kubernetes.{key}: outputs say {theirs} but stack {model.name!r} says {mine} "
                    f"(run 'pulumi up -s {model.name}' first)"
                )
    if problems:
        raise StackError(problems)
