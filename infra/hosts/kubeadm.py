"""Structural checks of the kubeadm configuration the ``kubernetes`` role renders, against the stack.

``kubeadm`` itself is not at hand where the configuration is rendered (and not before the packages are
installed), so this checks what kubeadm would reject or what would silently build the wrong cluster:
the API versions and kinds, required fields, the API endpoint = the internal load balancer, the pod and
service networks and the version from the model, the control plane images from the registry mirror,
and the join discovery (token, CA hash, certificate key) in kubeadm's formats.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from ipaddress import IPv4Network, ip_address, ip_network
from typing import Any

KUBEADM_API = "kubeadm.k8s.io/v1beta4"
CRI_SOCKET = "unix:///run/containerd/containerd.sock"
TOKEN = re.compile(r"^[a-z0-9]{6}\.[a-z0-9]{16}$")
CA_HASH = re.compile(r"^sha256:[0-9a-f]{64}$")
CERT_KEY = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Expected:
    """What the stack says the configuration must carry."""

    version: str  # "1.31.4"
    endpoint: str  # "10.30.0.140:6443", the internal API load balancer
    pod_cidr: str
    service_cidr: str
    registry: str  # the stack's registry mirror (imageRepository must be on it)
    node_network: str  # the tier the nodes' addresses sit in


def _get(doc: dict[str, Any], path: str, problems: list[str], kind: str) -> Any:
    node: Any = doc
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node or node[key] in (None, ""):
            problems.append(f"{kind}: {path} missing")
            return None
        node = node[key]
    return node


def _node_registration(doc: dict[str, Any], host: str, problems: list[str], kind: str) -> None:
    if _get(doc, "nodeRegistration.name", problems, kind) not in (None, host):
        problems.append(f"{kind}: nodeRegistration.name is {doc['nodeRegistration']['name']!r}, expected {host!r}")
    if _get(doc, "nodeRegistration.criSocket", problems, kind) not in (None, CRI_SOCKET):
        problems.append(f"{kind}: nodeRegistration.criSocket is not containerd's socket {CRI_SOCKET}")
    args = (doc.get("nodeRegistration") or {}).get("kubeletExtraArgs") or []
    if not isinstance(args, list) or not all(isinstance(a, dict) and set(a) == {"name", "value"} for a in args):
        problems.append(f"{kind}: nodeRegistration.kubeletExtraArgs must be a list of name/value (v1beta4)")


def _address(value: Any, expected: Expected, problems: list[str], what: str) -> None:
    try:
        if ip_address(str(value)) not in ip_network(expected.node_network):
            problems.append(f"{what} {value} is outside the nodes' network {expected.node_network}")
    except ValueError:
        problems.append(f"{what} {value!r} is not an IP address")


def check(docs: list[dict[str, Any]], host: str, expected: Expected, *, secrets_known: bool = True) -> list[str]:
    """Problems (one line each) with one node's kubeadm documents; ``[]`` when they are sound.

    ``docs`` are the documents of ``kubeadm-config.yaml`` (first control plane node) or of
    ``kubeadm-join.yaml`` (every other node). ``secrets_known=False`` accepts empty join secrets (check mode,
    where the commands that fetch them do not run).
    """
    problems: list[str] = []
    by_kind: dict[str, dict[str, Any]] = {}
    for doc in docs:
        kind = str(doc.get("kind"))
        by_kind[kind] = doc
        if kind in ("InitConfiguration", "ClusterConfiguration", "JoinConfiguration") and doc.get("apiVersion") != KUBEADM_API:
            problems.append(f"{kind}: apiVersion {doc.get('apiVersion')!r}, expected {KUBEADM_API}")

    if "JoinConfiguration" in by_kind:
        join = by_kind["JoinConfiguration"]
        kind = "JoinConfiguration"
        if _get(join, "discovery.bootstrapToken.apiServerEndpoint", problems, kind) not in (None, expected.endpoint):
            problems.append(f"{kind}: discovery goes to {join['discovery']['bootstrapToken']['apiServerEndpoint']}, "
                            f"not the API load balancer {expected.endpoint}")
        token = (join.get("discovery") or {}).get("bootstrapToken") or {}
        hashes = token.get("caCertHashes") or []
        if (secrets_known or token.get("token")) and not TOKEN.match(str(token.get("token", ""))):
            problems.append(f"{kind}: discovery.bootstrapToken.token is not a bootstrap token ([a-z0-9]{{6}}.[a-z0-9]{{16}})")
        if not isinstance(hashes, list) or len(hashes) != 1:
            problems.append(f"{kind}: discovery.bootstrapToken.caCertHashes must pin exactly the cluster CA")
        elif (secrets_known or hashes[0]) and not CA_HASH.match(str(hashes[0])):
            problems.append(f"{kind}: caCertHashes[0] is not sha256:<64 hex>")
        _node_registration(join, host, problems, kind)
        plane = join.get("controlPlane")
        if plane is not None:
            _address(_get(join, "controlPlane.localAPIEndpoint.advertiseAddress", problems, kind), expected, problems,
                     f"{kind}: controlPlane.localAPIEndpoint.advertiseAddress")
            key = str(plane.get("certificateKey") or "")
            if (secrets_known or key) and not CERT_KEY.match(key):
                problems.append(f"{kind}: controlPlane.certificateKey is not 64 hex digits")
        return problems

    for kind in ("InitConfiguration", "ClusterConfiguration", "KubeletConfiguration"):
        if kind not in by_kind:
            problems.append(f"{kind} missing")
    if problems:
        return problems
    init, cluster, kubelet = by_kind["InitConfiguration"], by_kind["ClusterConfiguration"], by_kind["KubeletConfiguration"]
    _address(_get(init, "localAPIEndpoint.advertiseAddress", problems, "InitConfiguration"), expected, problems,
             "InitConfiguration: localAPIEndpoint.advertiseAddress")
    _node_registration(init, host, problems, "InitConfiguration")
    kind = "ClusterConfiguration"
    if _get(cluster, "kubernetesVersion", problems, kind) not in (None, f"v{expected.version}"):
        problems.append(f"{kind}: kubernetesVersion {cluster['kubernetesVersion']}, the stack says v{expected.version}")
    if _get(cluster, "controlPlaneEndpoint", problems, kind) not in (None, expected.endpoint):
        problems.append(f"{kind}: controlPlaneEndpoint {cluster['controlPlaneEndpoint']} is not the API load balancer "
                        f"{expected.endpoint}")
    repo = _get(cluster, "imageRepository", problems, kind)
    if repo is not None and not str(repo).startswith(expected.registry + "/"):
        problems.append(f"{kind}: imageRepository {repo} is not on the registry mirror {expected.registry}")
    nets: list[IPv4Network] = []
    for field, want in (("podSubnet", expected.pod_cidr), ("serviceSubnet", expected.service_cidr)):
        got = _get(cluster, f"networking.{field}", problems, kind)
        if got is not None and str(got) != want:
            problems.append(f"{kind}: networking.{field} {got}, the stack says {want}")
        elif got is not None:
            nets.append(IPv4Network(str(got)))
    if len(nets) == 2 and nets[0].overlaps(nets[1]):
        problems.append(f"{kind}: pod and service networks overlap")
    if len(nets) == 2 and any(n.overlaps(ip_network(expected.node_network)) for n in nets):
        problems.append(f"{kind}: pod or service network overlaps the nodes' network {expected.node_network}")
    sans = (cluster.get("apiServer") or {}).get("certSANs") or []
    if expected.endpoint.rsplit(":", 1)[0] not in sans:
        problems.append(f"{kind}: apiServer.certSANs lacks the load balancer address {expected.endpoint.rsplit(':', 1)[0]}")
    if kubelet.get("cgroupDriver") != "systemd":
        problems.append("KubeletConfiguration: cgroupDriver must be systemd (containerd's SystemdCgroup)")
    return problems
