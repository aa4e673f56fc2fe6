"""Cloud environments through Pulumi's Automation API: up, and a destroy that does not get stuck.

The Pulumi CLI is needed (the Automation API drives it); on machines without it every call fails with
one clear line. A destroy refreshes first, clears pending operations left by an interrupted run
(reporting each), then destroys; whatever survives is reported with the one command that finishes.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from infra.model import StackModel
from infra.model.loader import REPO_ROOT, config_values, stack_file


class CloudStackError(RuntimeError):
    pass


def require_cli() -> None:
    if shutil.which("pulumi") is None:
        raise CloudStackError("the Pulumi CLI is not installed on this machine: install it "
                              "(https://www.pulumi.com/docs/install/) to create or destroy OpenStack environments")


def workspace_stack(model: StackModel) -> Any:
    require_cli()
    from pulumi import automation as auto

    stack = auto.create_or_select_stack(stack_name=model.name, work_dir=str(REPO_ROOT))
    for key, value in config_values(stack_file(model.name)).items():
        stack.set_config(f"govcloud:{key}", auto.ConfigValue(value=_config_text(value)))
    return stack


def _config_text(value: Any) -> str:
    import json

    return value if isinstance(value, str) else json.dumps(value)


def clear_pending(stack: Any, say: Any) -> list[str]:
    """Drop pending operations from the stack's checkpoint (what `pulumi stack export/import` does by hand)."""
    from pulumi import automation as auto

    deployment = stack.export_stack()
    state = dict(deployment.deployment)
    pending = state.get("pending_operations") or []
    cleared = [f"{op.get('type', 'operation')} {op.get('resource', {}).get('urn', '?')}" for op in pending]
    if pending:
        for line in cleared:
            say(f"clearing pending operation: {line}")
        state["pending_operations"] = []
        stack.import_stack(auto.Deployment(version=deployment.version, deployment=state))
    return cleared


def up_cloud_stack(model: StackModel, say: Any) -> dict[str, Any]:
    stack = workspace_stack(model)
    result = stack.up(on_output=say)
    return {k: v.value for k, v in result.outputs.items()}


def destroy_cloud_stack(model: StackModel, say: Any) -> list[str]:
    stack = workspace_stack(model)
    done = [f"pending/{p}" for p in clear_pending(stack, say)]
    say("refreshing the stack's view of the cloud")
    stack.refresh(on_output=say)
    say("destroying")
    try:
        stack.destroy(on_output=say)
    except Exception as exc:
        raise CloudStackError(f"destroy of {model.name} failed part-way ({str(exc).splitlines()[-1]}); "
                              f"finish with: govcloud env destroy {model.name}") from None
    stack.workspace.remove_stack(model.name)
    done.append(f"pulumi-stack/{model.name}")
    return done


def project_dir() -> Path:
    return REPO_ROOT
