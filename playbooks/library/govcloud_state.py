#!/usr/bin/python
"""Compare what a role declares with the host, in one Python process, and name every difference.

Read-only (never changes the host, so check mode behaves as a normal run). The controller side
(``action_plugins/govcloud_state.py``) renders each declared file with Ansible's own templating and
sends only its checksum; this module reads the host and returns ``drift``: one line per item that
differs (``file /etc/x: content differs``, ``service chrony: not enabled``, ``sysctl k: 0 (want 1)``...).
An empty list means the role has nothing to do on this host.
"""

from __future__ import annotations

import fnmatch
import grp
import hashlib
import os
import pwd
import stat

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
---
module: govcloud_state
short_description: Compare a role's declared state with the host in one pass (read-only)
description:
  - Checks files (checksum, mode, owner, group), directories, absent and present paths, the exact set
    of files in a directory, packages, services (enabled, started), groups, users (shell, groups),
    running kernel parameters and loaded kernel modules.
  - Returns C(drift), one line per difference; empty when the host is in the declared state.
  - Used through the action plugin of the same name, which renders C(src) templates on the controller.
options:
  files:
    description: Regular files, each C(dest) with optional C(checksum) (C(algo:hex)), C(mode), C(owner), C(group).
    type: list
    elements: dict
    default: []
  directories:
    description: Directories, each C(path) with optional C(mode), C(owner), C(group).
    type: list
    elements: dict
    default: []
  absent:
    description: Paths that must not exist.
    type: list
    elements: str
    default: []
  present:
    description: Paths that must exist.
    type: list
    elements: str
    default: []
  exclusive:
    description: Directories (C(path)) whose files matching C(pattern) must be exactly C(names).
    type: list
    elements: dict
    default: []
  packages:
    description: Debian packages that must be installed.
    type: list
    elements: str
    default: []
  services:
    description: Systemd units, each C(name) with C(enabled) and C(started) (false means not checked).
    type: list
    elements: dict
    default: []
  groups:
    description: Groups that must exist.
    type: list
    elements: str
    default: []
  users:
    description: Users that must exist, each C(name) with optional C(shell) and C(groups) (at least these).
    type: list
    elements: dict
    default: []
  sysctl:
    description: Running kernel parameters, each C(key), C(value), C(optional) (absent from this kernel is fine).
    type: list
    elements: dict
    default: []
  modules:
    description: Kernel modules that must be loaded.
    type: list
    elements: str
    default: []
author: govcloud
"""

RETURN = r"""
drift:
  description: One line per declared item that differs from the host.
  returned: always
  type: list
  elements: str
"""


def _name(table, ident):
    try:
        return table(ident)[0]
    except KeyError:
        return str(ident)


def _meta(kind, path, st, item, drift):
    mode = item.get("mode")
    if mode is not None and stat.S_IMODE(st.st_mode) != int(str(mode), 8):
        drift.append(f"{kind} {path}: mode {stat.S_IMODE(st.st_mode):04o} (want {int(str(mode), 8):04o})")
    owner = item.get("owner")
    if owner and _name(pwd.getpwuid, st.st_uid) != owner:
        drift.append(f"{kind} {path}: owner {_name(pwd.getpwuid, st.st_uid)} (want {owner})")
    group = item.get("group")
    if group and _name(grp.getgrgid, st.st_gid) != group:
        drift.append(f"{kind} {path}: group {_name(grp.getgrgid, st.st_gid)} (want {group})")


def _digest(path, algorithm):
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_files(items, drift):
    for item in items:
        path = item["dest"]
        try:
            st = os.stat(path)
        except FileNotFoundError:
            drift.append(f"file {path}: missing")
            continue
        if not stat.S_ISREG(st.st_mode):
            drift.append(f"file {path}: not a regular file")
            continue
        checksum = item.get("checksum")
        if checksum:
            algorithm, _, want = checksum.partition(":")
            if _digest(path, algorithm) != want.lower():
                drift.append(f"file {path}: content differs")
        _meta("file", path, st, item, drift)


def check_directories(items, drift):
    for item in items:
        path = item["path"]
        try:
            st = os.stat(path)
        except FileNotFoundError:
            drift.append(f"directory {path}: missing")
            continue
        if not stat.S_ISDIR(st.st_mode):
            drift.append(f"directory {path}: not a directory")
            continue
        _meta("directory", path, st, item, drift)


def check_exclusive(items, drift):
    for item in items:
        path, pattern, names = item["path"], item.get("pattern") or "*", set(item.get("names") or [])
        try:
            found = {n for n in os.listdir(path) if fnmatch.fnmatch(n, pattern)}
        except FileNotFoundError:
            found = set()
        drift.extend(f"file {os.path.join(path, n)}: not declared (stale)" for n in sorted(found - names))


def installed_packages(status="/var/lib/dpkg/status"):
    installed, package = set(), None
    with open(status, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.startswith("Package: "):
                package = line[9:].strip()
            elif line.startswith("Status: ") and package and line.split()[-1] == "installed":
                installed.add(package)
    return installed


def check_packages(names, drift):
    if not names:
        return
    installed = installed_packages()
    drift.extend(f"package {n}: not installed" for n in names if n not in installed)


ENABLED = {"enabled", "enabled-runtime", "alias"}
STARTED = {"active", "activating", "reloading"}


def unit_states(module, names):
    """name -> {property: value} for the units, from one `systemctl show`."""
    rc, out, err = module.run_command(["systemctl", "show", "--property=Id,LoadState,UnitFileState,ActiveState", "--", *names])
    if rc != 0:
        module.fail_json(msg=f"systemctl show failed: {err.strip()}")
    blocks = out.strip().split("\n\n")
    states = {}
    for name, block in zip(names, blocks, strict=False):
        states[name] = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
    return states


def check_services(module, items, drift):
    items = [i for i in items if i.get("enabled") or i.get("started")]
    if not items:
        return
    states = unit_states(module, [i["name"] for i in items])
    for item in items:
        state = states.get(item["name"], {})
        if state.get("LoadState") != "loaded":
            drift.append(f"service {item['name']}: {state.get('LoadState', 'unknown')}")
            continue
        if item.get("enabled") and state.get("UnitFileState") not in ENABLED:
            drift.append(f"service {item['name']}: not enabled ({state.get('UnitFileState') or 'unknown'})")
        if item.get("started") and state.get("ActiveState") not in STARTED:
            drift.append(f"service {item['name']}: not running ({state.get('ActiveState') or 'unknown'})")


def check_accounts(groups, users, drift):
    for name in groups:
        try:
            grp.getgrnam(name)
        except KeyError:
            drift.append(f"group {name}: missing")
    if not users:
        return
    members = {}
    for entry in grp.getgrall():
        for member in entry.gr_mem:
            members.setdefault(member, set()).add(entry.gr_name)
    for item in users:
        name = item["name"]
        try:
            account = pwd.getpwnam(name)
        except KeyError:
            drift.append(f"user {name}: missing")
            continue
        if item.get("shell") and account.pw_shell != item["shell"]:
            drift.append(f"user {name}: shell {account.pw_shell} (want {item['shell']})")
        has = members.get(name, set()) | {_name(grp.getgrgid, account.pw_gid)}
        missing = [g for g in item.get("groups") or [] if g not in has]
        if missing:
            drift.append(f"user {name}: not in {', '.join(missing)}")


def check_sysctl(items, drift):
    for item in items:
        path = "/proc/sys/" + item["key"].replace(".", "/")
        try:
            with open(path, encoding="utf-8") as handle:
                value = " ".join(handle.read().split())
        except FileNotFoundError:
            if not item.get("optional"):
                drift.append(f"sysctl {item['key']}: unknown to this kernel")
            continue
        want = " ".join(str(item["value"]).split())
        if value != want:
            drift.append(f"sysctl {item['key']}: {value} (want {want})")


def main():
    module = AnsibleModule(
        argument_spec={
            # checksums of files holding credentials say something about them: never echoed back
            "files": {"type": "list", "elements": "dict", "default": [], "options": {
                "dest": {"type": "path", "required": True},
                "checksum": {"type": "str", "no_log": True},
                "mode": {"type": "raw"},
                "owner": {"type": "str"},
                "group": {"type": "str"},
            }},
            "directories": {"type": "list", "elements": "dict", "default": []},
            "absent": {"type": "list", "elements": "str", "default": []},
            "present": {"type": "list", "elements": "str", "default": []},
            "exclusive": {"type": "list", "elements": "dict", "default": []},
            "packages": {"type": "list", "elements": "str", "default": []},
            "services": {"type": "list", "elements": "dict", "default": []},
            "groups": {"type": "list", "elements": "str", "default": []},
            "users": {"type": "list", "elements": "dict", "default": []},
            "sysctl": {"type": "list", "elements": "dict", "default": []},
            "modules": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    p = module.params
    drift = []
    check_packages(p["packages"], drift)
    check_accounts(p["groups"], p["users"], drift)
    check_directories(p["directories"], drift)
    check_files(p["files"], drift)
    check_exclusive(p["exclusive"], drift)
    drift.extend(f"path {path}: present" for path in p["absent"] if os.path.lexists(path))
    drift.extend(f"path {path}: missing" for path in p["present"] if not os.path.lexists(path))
    check_services(module, p["services"], drift)
    check_sysctl(p["sysctl"], drift)
    drift.extend(f"module {name}: not loaded" for name in p["modules"] if not os.path.isdir(f"/sys/module/{name}"))
    module.exit_json(changed=False, drift=drift)


if __name__ == "__main__":
    main()
