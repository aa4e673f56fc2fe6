"""Operations of a REST provider, read from its OpenAPI document (operationId -> method + path template)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_METHODS = ("get", "put", "post", "delete", "patch")
_PARAM = re.compile(r"{([^}/]+)}")


@dataclass(frozen=True)
class RestOperation:
    method: str
    path: str  # template, e.g. /persons/{nationalId}
    path_params: tuple[str, ...]
    query_params: tuple[str, ...]
    has_body: bool

    def render(self, args: dict[str, Any]) -> tuple[str, dict[str, str], dict[str, Any] | None]:
        """Path, query and JSON body for the operation called with ``args``."""
        missing = [p for p in self.path_params if p not in args]
        if missing:
            raise KeyError(f"missing path parameter(s) {', '.join(missing)}")
        path = _PARAM.sub(lambda m: _quote(str(args[m.group(1)])), self.path)
        rest = {k: v for k, v in args.items() if k not in self.path_params}
        if self.has_body:
            return path, {}, rest
        return path, {k: str(v) for k, v in rest.items()}, None


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def parse_openapi(text: str | dict[str, Any]) -> dict[str, RestOperation]:
    doc = json.loads(text) if isinstance(text, str) else text
    ops: dict[str, RestOperation] = {}
    for path, item in (doc.get("paths") or {}).items():
        for method in _METHODS:
            op = item.get(method)
            if not op or not op.get("operationId"):
                continue
            params = [*item.get("parameters", []), *op.get("parameters", [])]
            ops[op["operationId"]] = RestOperation(
                method=method.upper(),
                path=path,
                path_params=tuple(_PARAM.findall(path)),
                query_params=tuple(p["name"] for p in params if p.get("in") == "query"),
                has_body="requestBody" in op,
            )
    return ops


def mapping_operations(mapping: dict[str, Any]) -> dict[str, RestOperation]:
    """Declarative override: ``{"operations": {"Op": {"method": "GET", "path": "/x/{id}", "body": false}}}``."""
    out: dict[str, RestOperation] = {}
    for name, spec in (mapping.get("operations") or {}).items():
        if "method" not in spec or "path" not in spec:
            continue
        method = str(spec["method"]).upper()
        out[name] = RestOperation(method, spec["path"], tuple(_PARAM.findall(spec["path"])), (),
                                  bool(spec.get("body", method in ("POST", "PUT", "PATCH"))))
    return out
