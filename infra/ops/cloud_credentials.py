"""OpenStack credentials for restic's Swift backend, from clouds.yaml: environment only, never argv."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from infra.model import StackModel


class CredentialsError(RuntimeError):
    pass


def _clouds_files() -> list[Path]:
    env = os.environ.get("OS_CLIENT_CONFIG_FILE")
    return [Path(env)] if env else [Path.cwd() / "clouds.yaml", Path.home() / ".config/openstack/clouds.yaml",
                                    Path("/etc/openstack/clouds.yaml")]


def restic_env(model: StackModel) -> dict[str, str]:
    """``OS_*`` variables for the stack's cloud entry (``cloud.cloud`` in the stack file)."""
    for path in _clouds_files():
        if path.is_file():
            clouds = (yaml.safe_load(path.read_text()) or {}).get("clouds", {})
            if model.cloud.cloud in clouds:
                entry = clouds[model.cloud.cloud]
                auth = entry.get("auth", {})
                return {
                    "OS_AUTH_URL": auth["auth_url"],
                    "OS_USERNAME": auth["username"],
                    "OS_PASSWORD": auth["password"],
                    "OS_PROJECT_NAME": auth["project_name"],
                    "OS_USER_DOMAIN_NAME": auth.get("user_domain_name", "Default"),
                    "OS_PROJECT_DOMAIN_NAME": auth.get("project_domain_name", "Default"),
                    "OS_REGION_NAME": entry.get("region_name", model.cloud.region),
                }
    raise CredentialsError(
        f"stack {model.name}: no entry {model.cloud.cloud!r} in clouds.yaml "
        f"(looked in {', '.join(str(p) for p in _clouds_files())}); add it or set OS_CLIENT_CONFIG_FILE"
    )
