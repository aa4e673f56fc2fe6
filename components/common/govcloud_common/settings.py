"""The environment contract between govcloud's renderers and a component (see docs/component-contract.md)."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    stack: str
    component: str
    bind: str

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            stack=os.environ.get("GOVCLOUD_STACK", "dev"),
            component=os.environ.get("GOVCLOUD_COMPONENT", "unknown"),
            bind=os.environ.get("GOVCLOUD_BIND", "127.0.0.1"),
        )

    @staticmethod
    def port(name: str = "http", default: int = 8000) -> int:
        return int(os.environ.get(f"GOVCLOUD_PORT_{name.upper()}", default))

    @staticmethod
    def url(component: str) -> str:
        """Base URL of another component's http port (``GOVCLOUD_URL_<NAME>``)."""
        key = f"GOVCLOUD_URL_{component.upper()}"
        try:
            return os.environ[key].rstrip("/")
        except KeyError:
            raise RuntimeError(f"{key} is not set: declare {component!r} in depends_on or calls") from None

    @staticmethod
    def secret(name: str) -> str:
        key = "GOVCLOUD_SECRET_" + name.upper().replace("-", "_")
        try:
            return os.environ[key]
        except KeyError:
            raise RuntimeError(f"{key} is not set: declare {name!r} under secrets in component.yaml") from None

    @staticmethod
    def setting(name: str, default: str) -> str:
        return os.environ.get("GOVCLOUD_SETTING_" + name.upper().replace("-", "_"), default)
