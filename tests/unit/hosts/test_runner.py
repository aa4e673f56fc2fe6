"""The ansible-runner wrapper: per-host counts and a failure named by host and task (a real local run)."""

from __future__ import annotations

from pathlib import Path

from infra.hosts.runner import run_playbook

PLAY = """\
- name: Two local hosts
  hosts: all
  gather_facts: false
  connection: local
  tasks:
    - name: Always fine
      ansible.builtin.debug:
        msg: hello
    - name: Changes something
      ansible.builtin.command: "true"
      changed_when: true
    - name: Refuse on the second host
      ansible.builtin.fail:
        msg: "disk {{ inventory_hostname }} is full"
      when: inventory_hostname == 'beta'
"""


def test_summary_and_failure_line(tmp_path: Path) -> None:
    books = tmp_path / "playbooks"
    (books / "roles").mkdir(parents=True)
    (books / "ansible.cfg").write_text("[defaults]\n", encoding="utf-8")
    (books / "play.yml").write_text(PLAY, encoding="utf-8")
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(
        "all:\n  vars:\n    ansible_python_interpreter: /usr/bin/python3\n  hosts:\n    alpha: {}\n    beta: {}\n",
        encoding="utf-8",
    )
    steps: list[str] = []
    result = run_playbook("play.yml", inventory, say=steps.append, playbooks_dir=books,
                          private_data_dir=tmp_path / "runner")
    assert not result.ok and result.rc != 0
    assert result.hosts["alpha"].changed == 1 and result.hosts["alpha"].failed == 0
    assert result.hosts["beta"].failed == 1
    assert [f.line() for f in result.failures] == ["beta: task 'Refuse on the second host' failed: disk beta is full"]
    assert "task: Changes something" in steps and "play: Two local hosts" in steps
