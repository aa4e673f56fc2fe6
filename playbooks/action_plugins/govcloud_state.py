"""Controller side of ``govcloud_state``: render the declared files, hash them, check the host in one module run.

A file entry names its content as a role template (``src``, rendered exactly as the ``template`` module
renders it: same templar, same ``ansible_managed``/``template_*`` variables, same options), as ``content``
(the text a ``copy`` task writes), or as a ``checksum`` (``algo:hex``) it already knows. Only checksums
travel to the host, never contents (some are credentials).

Any entry may carry ``loop: [values]``: it then stands for one entry per value, the value being ``item``
in its template, and ``{item}`` / ``{item[key]}`` in its string fields being filled in with Python's
``str.format`` (Jinja braces are already spent when the task's arguments reach this plugin), e.g.
``{src: hosts.toml.j2, dest: "/etc/containerd/certs.d/{item}/hosts.toml", loop: [docker.io, quay.io]}``.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from ansible._internal._templating import _template_vars
from ansible.errors import AnsibleActionFail, AnsibleError
from ansible.plugins.action import ActionBase
from ansible.template import trust_as_template

KINDS = ("files", "directories", "absent", "present", "exclusive", "packages", "services", "groups", "users",
         "sysctl", "modules")


def _fill(value: Any, item: Any) -> Any:
    if isinstance(value, str):
        return value.format(item=item)
    if isinstance(value, list):
        return [_fill(v, item) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, item) for k, v in value.items()}
    return value


def _expand(entries: list[Any]) -> list[tuple[Any, Any]]:
    """(entry, item) pairs: an entry with ``loop`` becomes one entry per value (``item`` None otherwise)."""
    out: list[tuple[Any, Any]] = []
    for entry in entries or []:
        if isinstance(entry, dict) and "loop" in entry:
            rest = {k: v for k, v in entry.items() if k != "loop"}
            for item in entry["loop"] or []:
                try:
                    out.append((_fill(rest, item), item))
                except (KeyError, IndexError, AttributeError) as e:
                    raise AnsibleActionFail(f"govcloud_state: {rest.get('dest') or rest.get('path') or rest.get('name')}"
                                            f" needs {e} from each of its loop's items, not in {item!r}") from e
        else:
            out.append((entry, None))
    return out


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True

    def _render(self, src: str, dest: str, item: Any, task_vars: dict[str, Any]) -> str:
        try:
            source = self._find_needle("templates", src)
        except AnsibleError as e:
            raise AnsibleActionFail(str(e)) from e
        data = trust_as_template(self._loader.get_text_file_contents(source))
        searchpath = [*task_vars.get("ansible_search_path", []), self._loader._basedir, os.path.dirname(source)]
        searchpath = [p for base in searchpath for p in (os.path.join(base, "templates"), base)]
        variables = task_vars.copy()
        variables.update(_template_vars.generate_ansible_template_vars(
            path=src, fullpath=source, dest_path=dest, include_ansible_managed="ansible_managed" not in variables))
        if item is not None:
            variables["item"] = item
        templar = self._templar.copy_with_new_env(searchpath=searchpath, available_variables=variables)
        rendered = templar.template(data, escape_backslashes=False, overrides={"trim_blocks": True, "lstrip_blocks": False})
        return "" if rendered is None else str(rendered)

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        unknown = set(self._task.args) - set(KINDS)
        if unknown:
            raise AnsibleActionFail(f"govcloud_state: unknown argument(s) {', '.join(sorted(unknown))}")
        args: dict[str, Any] = {}
        for kind in KINDS:
            entries = _expand(self._task.args.get(kind) or [])
            if kind != "files":
                args[kind] = [entry for entry, _ in entries]
                continue
            files = []
            for entry, item in entries:
                spec = {k: entry[k] for k in ("dest", "mode", "owner", "group") if entry.get(k) is not None}
                if "src" in entry:
                    text = self._render(entry["src"], entry["dest"], item, task_vars)
                    spec["checksum"] = "sha1:" + hashlib.sha1(text.encode("utf-8")).hexdigest()
                elif "content" in entry:
                    spec["checksum"] = "sha1:" + hashlib.sha1(str(entry["content"]).encode("utf-8")).hexdigest()
                elif entry.get("checksum"):
                    spec["checksum"] = str(entry["checksum"])
                files.append(spec)
            args[kind] = files
        result.update(self._execute_module(module_name="govcloud_state", module_args=args, task_vars=task_vars))
        return result
