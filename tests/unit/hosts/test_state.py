"""``govcloud_state``: each role's declared state, and the one-pass check that skips a role with nothing to do.

A role's first task compares what it manages (``vars/main.yml``) with the host in one module run; its
ordinary tasks (``converge.yml``) run only where something differs. So the declaration must cover every
task: a file a task writes but the check does not know would never be repaired once the rest is in place.
The check itself runs for real here (local connection): rendered like the ``template`` module renders,
each kind of drift named, nothing named on a host in the declared state.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hostsdata import PLAYBOOKS

from infra.hosts.runner import run_playbook

ROLES = ["common", "ca_trust", "container_runtime", "etcd_backup"]
WRITES = ("ansible.builtin.template", "ansible.builtin.copy")


def _tasks(role: str) -> list[dict[str, Any]]:
    folder = PLAYBOOKS / "roles" / role / "tasks"
    out: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.yml")):
        if path.name != "main.yml":
            out.extend(yaml.safe_load(path.read_text(encoding="utf-8")) or [])
    return out


def _vars(role: str) -> dict[str, Any]:
    return yaml.safe_load((PLAYBOOKS / "roles" / role / "vars" / "main.yml").read_text(encoding="utf-8"))


def _item_refs(text: str) -> str:
    """A task's ``{{ item }}``/``{{ item.name }}`` as a declaration writes them (``{item}``/``{item[name]}``)."""
    text = re.sub(r"\{\{ item\.(\w+) \}\}", r"{item[\1]}", text)
    return text.replace("{{ item }}", "{item}")


def check_args(main: str) -> dict[str, Any]:
    return next(t for t in yaml.safe_load(main) if "govcloud_state" in t)["govcloud_state"]


def _declared(role: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    values, main = _vars(role), (PLAYBOOKS / "roles" / role / "tasks" / "main.yml").read_text(encoding="utf-8")
    files = [f for key, v in values.items() if key.endswith("_files") and isinstance(v, list) for f in v]
    dirs = [d for key, v in values.items() if key.endswith("_directories") and isinstance(v, list) for d in v]
    dirs += [d for d in check_args(main).get("directories") or [] if isinstance(d, dict)]
    return files, dirs, main


@pytest.mark.parametrize("role", ROLES)
def test_the_declaration_covers_every_task_of_the_role(role: str) -> None:
    files, dirs, main = _declared(role)
    by_dest = {f["dest"]: f for f in files}
    assert len(by_dest) == len(files), "a file declared twice"
    written = []
    for task in _tasks(role):
        module = next((m for m in WRITES if m in task), None)
        if module:
            args = task[module]
            dest = _item_refs(args["dest"])
            written.append(dest)
            assert dest in by_dest, f"{task['name']}: {dest} is written but not declared in vars/main.yml"
            want = by_dest[dest]
            if module.endswith("template"):
                assert want.get("src") == args["src"], task["name"]
            else:
                assert want.get("content") == args["content"], task["name"]
            for key in ("owner", "group", "mode"):
                assert _item_refs(str(want.get(key))) == _item_refs(str(args.get(key))), (task["name"], key)
            if "loop" in task:
                assert want.get("loop") == task["loop"], task["name"]
        if task.get("ansible.builtin.file", {}).get("state") == "directory":
            args = task["ansible.builtin.file"]
            found = [d for d in dirs if d["path"] == _item_refs(args["path"])]
            assert found, f"{task['name']}: directory {args['path']} not declared"
            assert all(str(found[0][k]) == _item_refs(str(args[k])) for k in ("owner", "group", "mode")), task["name"]
        if "ansible.builtin.get_url" in task:
            args = task["ansible.builtin.get_url"]
            written.append(args["dest"])
            assert by_dest.get(args["dest"], {}).get("checksum") == args["checksum"].replace(" or omit", ""), \
                f"{task['name']}: the download is declared with the same checksum"
        if "ansible.builtin.apt" in task and "name" in task["ansible.builtin.apt"]:
            names = task["ansible.builtin.apt"]["name"]
            declared = check_args(main)["packages"]
            as_list = [names] if isinstance(names, str) and "{{" not in names else names
            assert declared == as_list, f"{task['name']}: packages {names} declared as {declared}"
        if "ansible.builtin.service" in task and task["ansible.builtin.service"].get("enabled"):
            name = task["ansible.builtin.service"]["name"]
            assert name in json.dumps(_vars(role)) + main, f"service {name} is enabled by a task but not declared"
    assert sorted(written) == sorted(by_dest), "declared files no task writes"


def test_the_check_names_each_difference_and_nothing_when_in_place(tmp_path: Path) -> None:
    books = tmp_path / "books"
    (books / "templates").mkdir(parents=True)
    (books / "templates" / "conf.j2").write_text("# {{ ansible_managed }}\nname = {{ item }}\nport = {{ port }}\n")
    (books / "ansible.cfg").write_text(
        f"[defaults]\nlibrary = {PLAYBOOKS / 'library'}\naction_plugins = {PLAYBOOKS / 'action_plugins'}\n")
    state = tmp_path / "state"
    check = {
        "files": [{"src": "conf.j2", "dest": f"{state}/{{item}}.conf", "mode": "0640", "loop": ["a", "b"]},
                  {"content": "plain\n", "dest": f"{state}/plain.txt", "mode": "0644"}],
        "directories": [{"path": str(state), "mode": "0755"}],
        "absent": [f"{state}/gone"],
        "exclusive": [{"path": str(state), "pattern": "*.conf", "names": ["a.conf", "b.conf"]}],
        "packages": ["dpkg"],
        "users": [{"name": "root", "groups": ["root"]}],
        "groups": ["root"],
        "sysctl": [{"key": "kernel.ostype", "value": "Linux"},
                   {"key": "kernel.govcloud_nonexistent", "value": 1, "optional": True}],
    }
    play = [{
        "name": "State check", "hosts": "all", "gather_facts": False, "connection": "local",
        "vars": {"port": 8080},
        "tasks": [
            {"name": "Directory", "ansible.builtin.file": {"path": str(state), "state": "directory", "mode": "0755"}},
            {"name": "Rendered", "ansible.builtin.template": {"src": "conf.j2", "dest": f"{state}/{{{{ item }}}}.conf",
                                                              "mode": "0640"}, "loop": ["a", "b"]},
            {"name": "Plain", "ansible.builtin.copy": {"content": "plain\n", "dest": f"{state}/plain.txt",
                                                       "mode": "0644"}},
            {"name": "Clean", "govcloud_state": check, "register": "clean"},
            {"name": "Drift", "ansible.builtin.shell": f"echo edited >> {state}/a.conf && chmod 0600 {state}/plain.txt"
                                                       f" && touch {state}/stale.conf {state}/gone",
             "changed_when": True},
            {"name": "Drifted", "govcloud_state": {**check, "packages": ["dpkg", "govcloud-not-a-package"],
                                                   "sysctl": [{"key": "kernel.ostype", "value": "Hurd"}]}},
        ],
    }]
    (books / "play.yml").write_text(yaml.safe_dump(play, sort_keys=False), encoding="utf-8")
    inventory = tmp_path / "inventory.yml"
    inventory.write_text("all:\n  vars:\n    ansible_python_interpreter: /usr/bin/python3\n  hosts:\n    alpha: {}\n")
    pdd = tmp_path / "runner"
    result = run_playbook("play.yml", inventory, playbooks_dir=books, private_data_dir=pdd)
    assert result.ok, [f.line() for f in result.failures]
    drift = {}
    for path in pdd.glob("artifacts/*/job_events/*.json"):
        event = json.loads(path.read_text(encoding="utf-8"))
        data = event.get("event_data") or {}
        if event.get("event") == "runner_on_ok" and data.get("task") in ("Clean", "Drifted"):
            drift[data["task"]] = data["res"]["drift"]
            assert data["res"]["changed"] is False
            assert "sha1:" not in json.dumps(data["res"])  # checksums are never echoed back
    assert drift["Clean"] == []
    assert sorted(drift["Drifted"]) == sorted([
        f"file {state}/a.conf: content differs",
        f"file {state}/plain.txt: mode 0600 (want 0644)",
        f"file {state}/stale.conf: not declared (stale)",
        f"path {state}/gone: present",
        "package govcloud-not-a-package: not installed",
        "sysctl kernel.ostype: Linux (want Hurd)",
    ])


@pytest.mark.parametrize("role", ROLES)
def test_the_check_and_the_include_run_under_every_tag_of_the_roles_tasks(role: str) -> None:
    """``--tags ssh`` must still check the host and include the tasks tagged ``ssh`` (tags do not flow up)."""
    main = yaml.safe_load((PLAYBOOKS / "roles" / role / "tasks" / "main.yml").read_text(encoding="utf-8"))
    check = next(t for t in main if "govcloud_state" in t)
    include = next(t for t in main if "ansible.builtin.include_tasks" in t)
    inner = {tag for task in _tasks(role) for tag in task.get("tags") or []}
    assert inner <= set(check.get("tags") or []) and inner <= set(include.get("tags") or [])
    assert include["when"] == f"{check['register']}.drift | length > 0"
