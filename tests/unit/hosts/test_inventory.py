"""Inventory from Pulumi outputs and from a hosts file: one shape, validated with one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hostsdata import STACKS, hosts_file_for, model_of, outputs_for

from infra.hosts import build_inventory
from infra.hosts.outputs import outputs_from_pulumi
from infra.model import StackError
from infra.model.loader import REPO_ROOT


@pytest.mark.parametrize("stack", STACKS)
def test_outputs_and_hosts_file_give_the_same_inventory(stack: str, write) -> None:
    model, outputs = model_of(stack), outputs_for(stack)
    from_outputs = build_inventory(model, outputs=write("out.json", json.dumps(outputs))).as_dict()
    from_hosts = build_inventory(model, hosts=write("hosts", hosts_file_for(outputs))).as_dict()
    assert from_outputs == from_hosts
    groups = from_outputs["all"]["children"]
    cluster = groups["k8s_cluster"]["children"]
    assert len(groups["bastion"]["hosts"]) == 1
    assert len(cluster["control_plane"]["hosts"]) == model.cluster.control_plane.count
    assert len(cluster["workers"]["hosts"]) == sum(max(p.count, 1 if model.target == "local" else 0)
                                                    for p in model.cluster.workers)


def test_inventory_reaches_nodes_through_the_bastion(write) -> None:
    model, outputs = model_of("prod"), outputs_for("prod")
    inv = build_inventory(model, outputs=write("out.json", json.dumps(outputs))).as_dict()["all"]
    bastion_public = outputs["bastion"]["address"]
    (bastion,) = inv["children"]["bastion"]["hosts"].values()
    assert bastion["ansible_host"] == bastion_public
    assert f"ProxyJump=debian@{bastion_public}" in inv["children"]["k8s_cluster"]["vars"]["ansible_ssh_common_args"]
    workers = inv["children"]["k8s_cluster"]["children"]["workers"]["hosts"]
    assert {h["govcloud_pool"] for h in workers.values()} == {p.name for p in model.cluster.workers}
    for host in workers.values():
        assert host["ansible_host"] == host["govcloud_private_address"]
    api = outputs["kubernetes"]["api_endpoint"]
    assert api == f"https://{inv['vars']['kubernetes_api_host']}:{inv['vars']['kubernetes_api_port']}"
    assert inv["vars"]["kubernetes_pod_cidr"] == str(model.cluster.pod_cidr)
    assert inv["vars"]["kubernetes_service_cidr"] == str(model.cluster.service_cidr)
    assert inv["vars"]["etcd_backup_schedule"] == {"minute": "0", "hour": "1", "day": "*", "month": "*", "weekday": "*"}
    assert inv["vars"]["etcd_backup_keep"] == {"daily": 14, "weekly": 4, "monthly": 12}


def _broken(change) -> dict:
    outputs = outputs_for("staging")
    change(outputs)
    return outputs


BAD_OUTPUTS = {
    "missing bastion": (lambda o: o.pop("bastion"), "out.json: bastion: required field is missing"),
    "bad address": (
        lambda o: o["nodes"]["general"][0].update(address="10.30.16.999"),
        "out.json: nodes.general[0].address: Input is not a valid IPv4 address, got '10.30.16.999'",
    ),
    "unknown role": (
        lambda o: o["nodes"]["general"][0].update(role="etcd"),
        "out.json: nodes.general[0].role: expected one of 'control-plane' or 'worker'",
    ),
    "other stack": (lambda o: o.update(stack="prod"), "out.json: stack: outputs are of stack 'prod', not 'staging'"),
    "endpoint": (
        lambda o: o["kubernetes"].update(api_endpoint="10.30.0.140"),
        "out.json: kubernetes.api_endpoint: expected 'https://HOST:PORT'",
    ),
    "version drift": (
        lambda o: o["kubernetes"].update(version="1.30.2"),
        "out.json: kubernetes.version: outputs say 1.30.2 but stack 'staging' says 1.31.4",
    ),
    "outside tier": (
        lambda o: o["nodes"]["general"][0].update(address="10.30.32.7"),
        "is outside the app tier 10.30.16.0/20 of stack 'staging'",
    ),
    "masked secret": (lambda o: o.update(kubernetes="[secret]"), "secret outputs are masked"),
    "repeated name": (
        lambda o: o["nodes"]["general"][1].update(name=o["nodes"]["general"][0]["name"]),
        "out.json: nodes.general[1].name: 'govcloud-staging-general-1' repeats nodes.general[0]",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_OUTPUTS))
def test_bad_outputs_give_one_line_errors(case: str, tmp_path: Path, monkeypatch) -> None:
    change, expected = BAD_OUTPUTS[case]
    monkeypatch.chdir(tmp_path)
    Path("out.json").write_text(json.dumps(_broken(change)), encoding="utf-8")
    with pytest.raises(StackError) as err:
        build_inventory(model_of("staging"), outputs=Path("out.json"))
    assert len(err.value.lines) == 1, err.value.lines
    assert expected in err.value.lines[0]
    assert "\n" not in err.value.lines[0]


def test_not_json_is_one_line(write) -> None:
    with pytest.raises(StackError) as err:
        build_inventory(model_of("staging"), outputs=write("out.json", "Current stack outputs (3):\n"))
    assert err.value.lines == [f"{err.value.lines[0].split(':')[0]}: line 1: not JSON (Expecting value); "
                               "expected 'pulumi stack output --json'"]


BAD_HOSTS = {
    "unknown section": ("[etcd]\nx 10.30.16.2\n", "line 1: unknown section [etcd]"),
    "bad address": ("[workers]\nw1 10.30.16.300\n", "line 2: expected an IPv4 address, got '10.30.16.300'"),
    "repeated host": ("[workers]\nw1 10.30.16.3\nw1 10.30.16.4\n", "line 3: host 'w1' already listed on line 2"),
    "bastion private": ("[bastion]\nb 203.0.113.1\n", "line 2: the bastion needs private=ADDRESS"),
    "unknown option": ("[workers]\nw1 10.30.16.3 role=x\n", "line 2: unknown option 'role=x' (expected pool=)"),
    "no endpoint": ("[workers]\nw1 10.30.16.3\n", "[kubernetes] api_endpoint: expected 'https://HOST:PORT', got ''"),
}


@pytest.mark.parametrize("case", sorted(BAD_HOSTS))
def test_bad_hosts_file_names_the_line(case: str, write) -> None:
    text, expected = BAD_HOSTS[case]
    with pytest.raises(StackError) as err:
        build_inventory(model_of("staging"), hosts=write("hosts", text))
    assert any(expected in line for line in err.value.lines), err.value.lines
    assert all("\n" not in line for line in err.value.lines)


def test_even_control_plane_and_missing_groups(write) -> None:
    outputs = outputs_for("prod")
    text = hosts_file_for(outputs).replace("[workers]", "[ignored]\n[workers]")
    cps = [line for line in text.splitlines() if "# control-plane" in line]
    text = text.replace(cps[0] + "\n", "")
    text = "\n".join(line for line in text.splitlines() if "# worker" not in line and "[ignored]" not in line)
    with pytest.raises(StackError) as err:
        build_inventory(model_of("prod"), hosts=write("hosts", text + "\n"))
    assert any("no workers host" in line for line in err.value.lines)
    assert any("2 control plane hosts: expected an odd number" in line for line in err.value.lines)


def test_pulumi_cli_missing_is_one_line(monkeypatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(StackError) as err:
        outputs_from_pulumi("staging")
    assert len(err.value.lines) == 1
    assert "the Pulumi CLI is not installed" in err.value.lines[0] and "--outputs FILE" in err.value.lines[0]


def test_cli_writes_inventory_and_refuses_bad_outputs(write, tmp_path: Path) -> None:
    good = write("out.json", json.dumps(outputs_for("staging")))
    env = {"GOVCLOUD_STATE_DIR": str(tmp_path / "state"), "PATH": "/usr/bin:/bin"}
    cli = [sys.executable, "-c", "from infra.cli import main; main()", "inventory", "-s", "staging"]
    ok = subprocess.run([*cli, "--outputs", str(good)], capture_output=True, text=True, env=env, cwd=REPO_ROOT)
    assert ok.returncode == 0, ok.stderr
    path = Path(ok.stdout.strip())
    assert path == tmp_path / "state" / "hosts" / "staging" / "inventory.yml" and path.is_file()
    bad = write("bad.json", json.dumps(_broken(lambda o: o.update(stack="prod"))))
    fail = subprocess.run([*cli, "--outputs", str(bad)], capture_output=True, text=True, env=env, cwd=REPO_ROOT)
    assert fail.returncode == 2
    assert fail.stderr.strip().splitlines() == [f"error: {bad}: stack: outputs are of stack 'prod', not 'staging' "
                                                "(wrong file?)"]


def test_cluster_command_reports_a_failed_run_in_one_line(write, tmp_path: Path) -> None:
    """The whole CLI path (inventory, ansible-runner, summary) with a limit that matches no host."""
    good = write("out.json", json.dumps(outputs_for("staging")))
    env = {"GOVCLOUD_STATE_DIR": str(tmp_path / "state"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    cli = [sys.executable, "-c", "from infra.cli import main; main()", "cluster", "harden", "-s", "staging",
           "--outputs", str(good), "--limit", "no-such-host"]
    proc = subprocess.run(cli, capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "no hosts" in errors[0].lower(), proc.stderr
