"""The members' side (mutual TLS): ``/r1/{body}/{system}/{service}/...`` routed to the provider, converting
REST/JSON <-> SOAP/XML when the client's protocol differs from the provider's.

A raw ASGI app (no framework on the hot path). Every exchange — refused ones too — is recorded in the message
log. Errors are problem+json for REST clients and SOAP Faults for SOAP clients.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

import aiohttp
from lxml import etree

from bus import metrics
from bus.breaker import Breakers, CircuitOpen
from bus.identity import ClientIdentity, IdentityVerifier, Refused
from bus.msglog import MessageLog
from bus.registry import Registry, Route
from bus.soap import (
    SOAP11,
    SoapError,
    envelope,
    fault_envelope,
    fault_to_problem,
    generate_wsdl,
    parse_envelope,
    problem_to_fault,
    relocate_wsdl,
    xml_to_json,
)

log = logging.getLogger("bus.router")
HOP = {b"host", b"connection", b"keep-alive", b"transfer-encoding", b"te", b"trailer", b"upgrade", b"content-length",
       b"proxy-authorization", b"proxy-connection", b"accept-encoding"}
PROBLEM = "application/problem+json"
XML = "text/xml; charset=utf-8"


@dataclass
class Exchange:
    """One call as the bus sees it, independent of how it arrived (sync mTLS request or async delivery)."""

    route: Route
    client: ClientIdentity | str
    method: str
    rest_path: str
    query: str
    headers: list[tuple[bytes, bytes]]
    body: bytes
    soap_client: bool
    correlation_id: str
    message_id: str

    @property
    def client_member(self) -> str:
        return self.client.member if isinstance(self.client, ClientIdentity) else self.client


@dataclass
class Result:
    status: int
    content_type: str
    body: bytes
    operation: str | None = None


def problem_body(status: int, code: str, detail: str, **extra: Any) -> bytes:
    return json.dumps({"type": f"urn:govcloud:bus:{code}", "title": code.replace("-", " "), "status": status,
                       "detail": detail, **extra}).encode()


def is_soap_request(headers: dict[bytes, bytes]) -> bool:
    ctype = headers.get(b"content-type", b"").lower()
    return b"soapaction" in headers or b"xml" in ctype


class ProviderTimeout(Exception):
    pass


class ProviderUnreachable(Exception):
    pass


@dataclass
class UpstreamResponse:
    status_code: int
    headers: Mapping[str, str]
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


class Upstream:
    """HTTP client to the providers: aiohttp keeps a pool of keep-alive connections that stays cheap under
    hundreds of concurrent calls (httpx's pool bookkeeping grows with the number of connections)."""

    def __init__(self, max_connections: int = 512) -> None:
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    async def request(self, method: str, url: str, headers: dict[str, str], content: bytes | None,
                      timeout: float) -> UpstreamResponse:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_connections, limit_per_host=0, ttl_dns_cache=60),
                skip_auto_headers=("user-agent",))
        try:
            async with self._session.request(method, url, headers=headers, data=content, allow_redirects=False,
                                             timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                body = await resp.read()
                return UpstreamResponse(resp.status, resp.headers, body)
        except TimeoutError:
            raise ProviderTimeout() from None
        except aiohttp.ClientError as exc:
            raise ProviderUnreachable(f"{type(exc).__name__}: {exc}") from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class Router:
    def __init__(self, registry: Registry, verifier: IdentityVerifier, breakers: Breakers, msglog: MessageLog,
                 http: Upstream) -> None:
        self.registry, self.verifier, self.breakers, self.msglog, self.http = (
            registry, verifier, breakers, msglog, http)
        self.enqueue: Callable[[Exchange], Awaitable[dict[str, Any]]] | None = None  # set by async delivery
        self.max_body = 10 * 1024 * 1024

    # ---- ASGI ---------------------------------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":  # served with lifespan="off"
            return
        body = b""
        too_large = False
        while True:
            event = await receive()
            if not too_large:
                body += event.get("body", b"")
                too_large = len(body) > self.max_body
            if not event.get("more_body"):
                break
        raw_headers: list[tuple[bytes, bytes]] = scope["headers"]
        headers = dict(raw_headers)
        start = time.perf_counter()
        soap_client = is_soap_request(headers)
        corr = (headers.get(b"x-correlation-id") or b"").decode("latin1")[:128] or uuid.uuid4().hex
        msg_id = (headers.get(b"x-bus-message-id") or b"").decode("latin1")[:128] or uuid.uuid4().hex
        service_key, client_name, op = "-", "-", None
        try:
            if too_large:
                body = b""
                raise Refused(413, "message-too-large", f"the bus carries messages up to {self.max_body} bytes")
            der = (scope.get("extensions") or {}).get("tls", {}).get("client_cert_der")
            identity = await self.verifier.identify(der)
            client_name = identity.member
            if (identity.body, identity.system) not in self.registry.members:
                raise Refused(403, "unknown-member", f"{identity.member} is not a registered member system")
            parts = scope["path"].split("/", 5)  # ['', 'r1', body, system, service, rest]
            if len(parts) < 5 or parts[1] != "r1" or not all(parts[2:5]):
                raise Refused(404, "bad-address",
                              f"address services as /r1/{{body}}/{{system}}/{{service}}/..., not {scope['path']}")
            route = self.registry.routes.get((parts[2], parts[3], parts[4]))
            if route is None:
                raise Refused(404, "unknown-service", f"no service {'/'.join(parts[2:5])} in the registry")
            service_key = route.key
            if not self.registry.allowed(identity.body, identity.system, route):
                raise Refused(403, "access-denied", f"{identity.member} has no access right to {route.key}")
            ex = Exchange(route, identity, scope["method"], parts[5] if len(parts) > 5 else "",
                          scope.get("query_string", b"").decode("latin1"), raw_headers, body, soap_client, corr, msg_id)
            if scope["method"] == "GET" and ex.rest_path == "" and ex.query.lower() == "wsdl":
                host = (headers.get(b"host") or b"bus").decode("latin1")
                result = self.service_wsdl(route, f"https://{host}/r1/{route.key}")
                mode = "wsdl"
            elif b"respond-async" in headers.get(b"prefer", b""):
                if self.enqueue is None:
                    raise Refused(501, "async-unavailable", "asynchronous delivery is not configured")
                accepted = await self.enqueue(ex)
                result = Result(202, "application/json", json.dumps(accepted).encode())
                mode = "async-accept"
            else:
                result = await self.exchange(ex)
                mode = "sync"
            op = result.operation
        except Refused as r:
            metrics.ERRORS.labels(service_key, r.code).inc()
            result = self.error(r, soap_client)
            mode = "refused"
        elapsed = time.perf_counter() - start
        metrics.REQUESTS.labels(service_key, str(result.status)).inc()
        metrics.LATENCY.labels(service_key).observe(elapsed)
        self.msglog.append({
            "mode": mode, "correlationId": corr, "messageId": msg_id, "client": client_name, "service": service_key,
            "operation": op, "method": scope["method"], "status": result.status, "durationUs": int(elapsed * 1e6),
            "respSha256": hashlib.sha256(result.body).hexdigest(),
        }, body)
        await send({"type": "http.response.start", "status": result.status, "headers": [
            (b"content-type", result.content_type.encode()), (b"content-length", str(len(result.body)).encode()),
            (b"x-correlation-id", corr.encode()), (b"x-bus-message-id", msg_id.encode())]})
        await send({"type": "http.response.body", "body": result.body})

    @staticmethod
    def service_wsdl(route: Route, location: str) -> Result:
        """The WSDL a SOAP client uses for this service through the bus (generated from OpenAPI for REST)."""
        if route.protocol == "soap":
            if not route.description:
                raise Refused(404, "no-service-description", f"{route.key} was registered without a WSDL")
            return Result(200, XML, relocate_wsdl(route.description, location))
        if not route.rest_ops:
            raise Refused(404, "no-service-description", f"{route.key} has no OpenAPI operations")
        ns = route.mapping.get("namespace") or f"urn:govcloud:bus:{route.body}:{route.system}:{route.service}"
        name = "".join(p.capitalize() for p in route.key.replace("-", "/").split("/"))
        return Result(200, XML, generate_wsdl(ns, sorted(route.rest_ops), location, name))

    @staticmethod
    def error(r: Refused, soap_client: bool) -> Result:
        if soap_client:
            problem = {"type": f"urn:govcloud:bus:{r.code}", "status": r.status, "detail": r.detail}
            return Result(500, XML, fault_envelope("Client" if r.status < 500 else "Server",
                                                   f"{r.code}: {r.detail}", problem))
        return Result(r.status, PROBLEM, problem_body(r.status, r.code, r.detail))

    # ---- the exchange with the provider -------------------------------------------------------------------

    async def exchange(self, ex: Exchange) -> Result:
        route = ex.route
        if route.protocol == "rest" and not ex.soap_client:
            return await self._rest_passthrough(ex)
        if route.protocol == "soap" and ex.soap_client:
            return await self._soap_passthrough(ex)
        if route.protocol == "soap":
            return await self._rest_to_soap(ex)
        return await self._soap_to_rest(ex)

    def _bus_headers(self, ex: Exchange) -> dict[str, str]:
        return {"x-bus-client": ex.client_member, "x-bus-service": ex.route.key,
                "x-correlation-id": ex.correlation_id, "x-bus-message-id": ex.message_id}

    async def _send(self, ex: Exchange, method: str, url: str, headers: dict[str, str], content: bytes | None,
                    soap_provider: bool) -> UpstreamResponse:
        breaker = self.breakers.get(ex.route.provider)
        try:
            breaker.before()
        except CircuitOpen as exc:
            raise Refused(503, "circuit-open", str(exc)) from None
        try:
            resp = await self.http.request(method, url, headers, content, ex.route.timeout)
        except ProviderTimeout:
            breaker.failure()
            raise Refused(504, "provider-timeout",
                          f"{ex.route.provider} did not answer within {ex.route.timeout:g} s") from None
        except ProviderUnreachable as exc:
            breaker.failure()
            raise Refused(502, "provider-unreachable", f"{ex.route.provider}: {exc}") from None
        failed = resp.status_code in (502, 503, 504) or (resp.status_code >= 500 and not soap_provider)
        if soap_provider and resp.status_code == 500:
            failed = b"Fault" not in resp.content  # a SOAP Fault is an answer, not an outage
        if failed:
            breaker.failure()
        else:
            breaker.success()
        return resp

    def _forward_headers(self, ex: Exchange) -> dict[str, str]:
        out = {k.decode("latin1"): v.decode("latin1") for k, v in ex.headers
               if k not in HOP and not k.startswith(b"x-bus-") and k != b"prefer"}
        out.update(self._bus_headers(ex))
        return out

    async def _rest_passthrough(self, ex: Exchange) -> Result:
        url = ex.route.url + ("/" + ex.rest_path if ex.rest_path else "") + (f"?{ex.query}" if ex.query else "")
        resp = await self._send(ex, ex.method, url, self._forward_headers(ex), ex.body or None, False)
        return Result(resp.status_code, resp.headers.get("content-type", "application/octet-stream"), resp.content)

    async def _soap_passthrough(self, ex: Exchange) -> Result:
        resp = await self._send(ex, "POST", ex.route.url, self._forward_headers(ex), ex.body, True)
        return Result(resp.status_code, resp.headers.get("content-type", XML), resp.content)

    async def _rest_to_soap(self, ex: Exchange) -> Result:
        wsdl = ex.route.wsdl
        if wsdl is None:
            raise Refused(502, "no-service-description", f"{ex.route.key} has no usable WSDL or mapping")
        op = ex.rest_path.strip("/").split("/")[0]
        if op not in wsdl.operations:
            raise Refused(404, "unknown-operation",
                          f"{ex.route.key} has no operation {op!r}; operations: {', '.join(sorted(wsdl.operations))}")
        if ex.method in ("GET", "DELETE"):
            args: Any = dict(parse_qsl(ex.query))
        else:
            try:
                args = json.loads(ex.body) if ex.body else {}
            except ValueError as exc:
                raise Refused(400, "malformed-json", f"request body is not JSON: {exc}") from None
        headers = {"content-type": XML, "soapaction": f'"{wsdl.operations[op]}"', **self._bus_headers(ex)}
        resp = await self._send(ex, "POST", ex.route.url, headers, envelope(op, wsdl.namespace, args), True)
        try:
            parsed = parse_envelope(resp.content)
        except SoapError as exc:
            status = resp.status_code if resp.status_code in (503, 504) else 502
            raise Refused(status, "provider-error",
                          f"{ex.route.provider} answered HTTP {resp.status_code} without a SOAP envelope ({exc})"
                          ) from None
        if parsed.fault is not None:
            problem = fault_to_problem(parsed.fault, parsed.soap_ns, ex.route.mapping.get("faults"))
            return Result(problem["status"], PROBLEM, json.dumps(problem).encode(), op)
        data = xml_to_json(parsed.body_child) if parsed.body_child is not None else {}
        return Result(200, "application/json", json.dumps(data, ensure_ascii=False).encode(), op)

    async def _soap_to_rest(self, ex: Exchange) -> Result:
        try:
            parsed = parse_envelope(ex.body)
        except SoapError as exc:
            raise Refused(400, "malformed-soap", str(exc)) from None
        if parsed.body_child is None:
            raise Refused(400, "malformed-soap", "the SOAP Body has no operation element")
        qn = etree.QName(parsed.body_child)
        op = ex.route.rest_ops.get(qn.localname)
        if op is None:
            raise Refused(404, "unknown-operation", f"{ex.route.key} has no operation {qn.localname!r}; operations: "
                          f"{', '.join(sorted(ex.route.rest_ops))}")
        args = xml_to_json(parsed.body_child)
        try:
            path, query, payload = op.render(args if isinstance(args, dict) else {})
        except KeyError as exc:
            raise Refused(400, "missing-parameter", str(exc.args[0])) from None
        url = ex.route.url + path + (f"?{urlencode(query)}" if query else "")
        headers = {"accept": "application/json", **self._bus_headers(ex)}
        content = None
        if payload is not None:
            headers["content-type"] = "application/json"
            content = json.dumps(payload).encode()
        resp = await self._send(ex, op.method, url, headers, content, False)
        ns = ex.route.mapping.get("namespace") or qn.namespace or ""
        if resp.status_code >= 400:
            return Result(500, XML, problem_to_fault(resp.status_code, resp.content,
                                                     resp.headers.get("content-type", ""), soap_ns=parsed.soap_ns),
                          qn.localname)
        try:
            data = resp.json() if resp.content else {}
        except ValueError:
            data = resp.text
        return Result(200, XML if parsed.soap_ns == SOAP11 else "application/soap+xml; charset=utf-8",
                      envelope(qn.localname + "Response", ns, data, soap_ns=parsed.soap_ns), qn.localname)
