"""One authenticated openstacksdk connection per stack, with every failure turned into one clear line.

The cloud entry comes from ``clouds.yaml`` (``cloud.cloud`` in the stack file; ``OS_CLIENT_CONFIG_FILE``
points at another file), so credentials never appear on a command line or in the stack file.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from infra.model import StackModel

if TYPE_CHECKING:
    from openstack.connection import Connection


class CloudError(RuntimeError):
    """A cloud call failed; ``str()`` is the one line the user sees."""


def describe(exc: BaseException, cloud: str) -> str:
    """The one line a user sees for a failed cloud call: what went wrong and what to check."""
    from keystoneauth1 import exceptions as ks
    from openstack import exceptions as sdk

    cause: BaseException | None = exc  # the sdk wraps keystoneauth's failures (authorize() -> SDKException)
    while cause is not None and not isinstance(cause, ks.ClientException):
        cause = cause.__cause__ or cause.__context__
    if cause is not None and exc is not cause and not isinstance(exc, sdk.HttpException):
        exc = cause
    if isinstance(exc, ks.Unauthorized) or (isinstance(exc, sdk.HttpException) and exc.status_code == 401):
        return f"cloud {cloud!r}: Keystone refused the credentials (HTTP 401): fix the entry in clouds.yaml"
    if isinstance(exc, ks.ConnectFailure | ks.ConnectTimeout | ks.DiscoveryFailure):
        return f"cloud {cloud!r}: Keystone is unreachable ({type(exc).__name__}): check auth_url in clouds.yaml"
    if isinstance(exc, ks.EndpointNotFound | sdk.EndpointNotFound):
        return f"cloud {cloud!r}: the service is not in the catalog ({exc})"
    if isinstance(exc, sdk.ConfigException):
        return f"cloud {cloud!r}: {exc} (set OS_CLIENT_CONFIG_FILE or add the entry to clouds.yaml)"
    if isinstance(exc, sdk.HttpException):
        detail = (exc.details or exc.message or "").strip().splitlines()
        status = f"HTTP {exc.status_code}" if exc.status_code else type(exc).__name__
        return f"cloud {cloud!r}: {status}: {detail[0] if detail else 'no detail'}"
    return f"cloud {cloud!r}: {type(exc).__name__}: {exc}"


@contextmanager
def cloud_errors(cloud: str) -> Iterator[None]:
    """Re-raise keystoneauth/openstacksdk failures as ``CloudError`` with one line."""
    from keystoneauth1 import exceptions as ks
    from openstack import exceptions as sdk

    try:
        yield
    except (ks.ClientException, sdk.SDKException) as exc:
        raise CloudError(describe(exc, cloud)) from exc


def connect(model: StackModel | None = None, *, cloud: str | None = None, region: str | None = None) -> Connection:
    """Authenticate now (so bad credentials fail here, once) and return the connection."""
    import openstack

    for noisy in ("openstack", "keystoneauth"):  # they log tracebacks and retries we turn into one line
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    name = cloud or (model.cloud.cloud if model else "govcloud")
    region = region or (model.cloud.region if model else None)
    with cloud_errors(name):
        conn = openstack.connect(cloud=name, region_name=region)
        conn.authorize()
    return conn


def has_service(conn: Connection, service_type: str) -> bool:
    """Whether the catalog offers the service (e.g. no Octavia or Cinder on a small cloud)."""
    try:
        return bool(conn.has_service(service_type))
    except Exception:
        return False


def auth_env(conn: Connection) -> dict[str, str]:
    """``OS_*`` variables of an authenticated connection, for tools like restic (environment, never argv)."""
    auth: dict[str, Any] = dict(conn.config.config.get("auth", {}))
    env = {
        "OS_AUTH_URL": auth.get("auth_url", ""),
        "OS_USERNAME": auth.get("username", ""),
        "OS_PASSWORD": auth.get("password", ""),
        "OS_PROJECT_NAME": auth.get("project_name", ""),
        "OS_USER_DOMAIN_NAME": auth.get("user_domain_name") or auth.get("user_domain_id") or "Default",
        "OS_PROJECT_DOMAIN_NAME": auth.get("project_domain_name") or auth.get("project_domain_id") or "Default",
        "OS_REGION_NAME": conn.config.get_region_name() or "",
    }
    if auth.get("application_credential_id"):
        env = {"OS_AUTH_URL": env["OS_AUTH_URL"], "OS_REGION_NAME": env["OS_REGION_NAME"],
               "OS_APPLICATION_CREDENTIAL_ID": auth["application_credential_id"],
               "OS_APPLICATION_CREDENTIAL_SECRET": auth.get("application_credential_secret", "")}
    return {k: v for k, v in env.items() if v}
