"""The playbooks: syntax of every playbook against every stack's inventory, ansible-lint, air-gap."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hostsdata import PLAYBOOKS, STACKS, hosts_file_for, model_of, outputs_for

from infra.hosts import build_inventory

BIN = Path(sys.executable).parent
ENTRY_PLAYBOOKS = ["site.yml", "upgrade.yml", "rotate-certs.yml", "backup-etcd.yml"]


def _env() -> dict[str, str]:
    return {**os.environ, "ANSIBLE_CONFIG": str(PLAYBOOKS / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_LOCAL_TEMP": "/tmp/.ansible-tmp", "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}


@pytest.mark.parametrize("stack", STACKS)
def test_syntax_check_against_every_stacks_inventory(stack: str, write) -> None:
    model = model_of(stack)
    source = {"outputs": write("out.json", json.dumps(outputs_for(stack)))} if model.target == "openstack" else {
        "hosts": write("hosts", hosts_file_for(outputs_for(stack)))}
    inventory = build_inventory(model, **source).write(write("inventory.yml", "").parent / "inventory.yml")
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), "--syntax-check", "-i", str(inventory), *ENTRY_PLAYBOOKS],
        cwd=PLAYBOOKS, env=_env(), capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [line for line in proc.stdout.splitlines() if line.startswith("playbook:")] == [
        f"playbook: {p}" for p in ENTRY_PLAYBOOKS
    ]
    listed = subprocess.run(
        [str(BIN / "ansible-inventory"), "-i", str(inventory), "--graph"],
        env=_env(), capture_output=True, text=True, timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    for group in ("@bastion:", "@k8s_cluster:", "@control_plane:", "@workers:"):
        assert group in listed.stdout


def test_ansible_lint_production_profile_is_clean() -> None:
    proc = subprocess.run(
        [str(BIN / "ansible-lint"), "--offline", "--profile", "production", "--nocolor", "-q"],
        cwd=PLAYBOOKS, env=_env(), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


URL = re.compile(r"\b(?:https?|ftp)://[^\s\"'}]+")


def test_no_task_reaches_the_internet() -> None:
    """Every URL in the playbooks is built from the mirror variables of group_vars/all/mirror.yml."""
    offenders = []
    for path in sorted(PLAYBOOKS.rglob("*")):
        if path.suffix not in (".yml", ".j2", ".cfg") or not path.is_file():
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.lstrip().startswith("#"):
                continue
            for url in URL.findall(line):
                if "{{" not in url and not url.startswith(("https://127.0.0.1:", "unix://")):
                    offenders.append(f"{path.relative_to(PLAYBOOKS)}:{number}: {url}")
    assert offenders == []
    mirror = yaml.safe_load((PLAYBOOKS / "group_vars" / "all" / "mirror.yml").read_text(encoding="utf-8"))
    for key, value in mirror.items():  # the stack's own mirror, or derived from it
        assert value.startswith(("https://mirror.{{ govcloud_domain }}", "{{ govcloud_mirror }}", "registry.{{")), key
    assert "get_url" not in (PLAYBOOKS / "roles" / "common" / "tasks" / "packages.yml").read_text(encoding="utf-8")
