"""Cloud-init user data: SSH keys from the model and base hardening (the Ansible layer does the rest)."""

from __future__ import annotations

import yaml

from infra.model import StackModel

_SSHD = """\
PermitRootLogin no
PasswordAuthentication no
KbdInteractiveAuthentication no
X11Forwarding no
MaxAuthTries 3
AllowTcpForwarding {forwarding}
"""

_SYSCTL = """\
net.ipv4.conf.all.accept_redirects = 0
net.ipv4.conf.all.send_redirects = 0
net.ipv4.conf.all.accept_source_route = 0
net.ipv4.conf.all.log_martians = 1
net.ipv4.tcp_syncookies = 1
kernel.kptr_restrict = 2
kernel.dmesg_restrict = 1
"""


def user_data(model: StackModel, hostname: str, role: str) -> str:
    """``#cloud-config`` for one host. The bastion may forward SSH (ProxyJump); nodes may not."""
    config = {
        "hostname": hostname,
        "fqdn": f"{hostname}.{model.domain}",
        "disable_root": True,
        "ssh_pwauth": False,
        "ssh_authorized_keys": list(model.cluster.ssh_public_keys),
        "package_update": False,  # air-gapped clouds: packages come from the mirror via Ansible
        "write_files": [
            {
                "path": "/etc/ssh/sshd_config.d/10-govcloud.conf",
                "permissions": "0600",
                "content": _SSHD.format(forwarding="yes" if role == "bastion" else "no"),
            },
            {"path": "/etc/sysctl.d/10-govcloud.conf", "permissions": "0644", "content": _SYSCTL},
            {
                "path": "/etc/govcloud/host.yaml",
                "permissions": "0644",
                "content": yaml.safe_dump({"stack": model.name, "role": role, "domain": model.domain}),
            },
        ],
        "runcmd": [["sysctl", "--system"], ["systemctl", "restart", "ssh"]],
    }
    return "#cloud-config\n" + yaml.safe_dump(config, sort_keys=False)
