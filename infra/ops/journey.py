"""The citizen journey as a health layer: one real payment of a published service's fee, end to end.

portal (find a published service with a fee) → payment (create the fee order) → switch (its decision arrives by
callback: the simulator approves, the real switch after the citizen confirms in their wallet; there is no step
for us to drive) → payment (the signed receipt) → the receipt's signature and chain, checked here offline against
the CA's own hierarchy → the signing certificate's OCSP status from the CA's responder → the bus delivers the
payment notice to the competent body's system (bodysystems' inbox; the bus's message state) → payment's signed
notification reached the portal, which now answers the order as paid (``GET /api/payments/{order}``).

One ``Check`` per step (layer ``journey``) with its duration; the first failing step is ``down`` with the reason
on one line, the steps after it are reported as not run (``degraded``: unknown, the failure is already counted).
URLs come from the runtime, tokens from the stack's state, so it runs against any target.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID

from infra.model import StackModel
from infra.ops.health import DEGRADED, DOWN, OK, Check
from infra.runtime.base import Runtime

LAYER = "journey"
NEEDS = frozenset({"portal", "payment", "switch", "ca", "bus", "bodysystems"})
STEPS = ("portal: find a service", "payment: create the fee order", "switch: confirm the payment",
         "payment: signed receipt", "receipt: signature and chain", "ca: OCSP status", "bus: notice delivered",
         "portal: order known paid")


class StepFailed(Exception):
    pass


def one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def wants_journey(model: StackModel) -> bool:
    from infra.manifests.workloads import stack_components

    return {s.name for s in stack_components(model)} >= NEEDS


@dataclass
class Journey:
    client: httpx.Client
    url: Callable[[str, str], str]                 # (component, port) -> base URL (runtime.endpoint)
    secret: Callable[[str, str], str | None]       # (component, key) -> token from the stack's state
    deadline_s: float = 30.0                        # for the asynchronous steps (switch callback, bus delivery)
    poll_s: float = 0.2
    wait: Callable[[float], None] = time.sleep      # between polls of a bounded wait, never as synchronisation
    clock: Callable[[], float] = time.monotonic
    ctx: dict[str, Any] = field(default_factory=dict)

    # -- HTTP ------------------------------------------------------------------------------------------------------
    def call(self, method: str, component: str, path: str, expect: tuple[int, ...] = (200,), **kw: Any) -> Any:
        url = self.url(component, "http").rstrip("/") + path
        try:
            resp = self.client.request(method, url, **kw)
        except httpx.HTTPError as exc:
            raise StepFailed(f"{component} {method} {path}: {type(exc).__name__}: {exc}") from None
        if resp.status_code not in expect:
            raise StepFailed(f"{component} {method} {path} answered HTTP {resp.status_code}: {resp.text[:200]}")
        if not resp.content:
            return None
        try:
            return resp.json() if "json" in resp.headers.get("content-type", "") else resp.content
        except ValueError:
            raise StepFailed(f"{component} {method} {path}: malformed JSON") from None

    def until(self, what: str, probe: Callable[[], Any]) -> Any:
        """Bounded polling of an asynchronous outcome: ``probe`` returns a result, or None to look again."""
        end = self.clock() + self.deadline_s
        while True:
            result = probe()
            if result is not None:
                return result
            if self.clock() >= end:
                raise StepFailed(f"{what} not within {self.deadline_s:g} s")
            self.wait(self.poll_s)

    # -- the steps -------------------------------------------------------------------------------------------------
    def find_service(self) -> str:
        page = self.call("GET", "portal", "/api/services", params={"fee_min": 1, "limit": 20})
        items = [i for i in page.get("items", []) if i.get("fee_syp", 0) > 0]
        if not items:
            raise StepFailed(f"no published service with a fee among {page.get('total', 0)} published")
        service = items[secrets.randbelow(len(items))]
        fee = self.call("GET", "portal", f"/api/services/{service['id']}/fee")
        if not isinstance(fee.get("amount"), int) or fee["amount"] <= 0:
            raise StepFailed(f"fee of {service['id']} is not a positive integer: {fee.get('amount')!r}")
        self.ctx.update(service=service["id"], body=fee.get("body_id") or service["body_id"], amount=fee["amount"])
        return f"{service['id']} of {self.ctx['body']}, fee {fee['amount']} SYP ({page['total']} published with a fee)"

    def create_order(self) -> str:
        channels = [c for c in self.call("GET", "payment", "/api/channels") if c.get("enabled")]
        if not channels:
            raise StepFailed("payment has no enabled channel")
        channel = channels[0]["id"]
        order = self.call("POST", "payment", "/api/orders", expect=(201,),
                          headers={"Idempotency-Key": f"journey-{secrets.token_hex(12)}"},
                          json={"kind": "fee", "service_id": self.ctx["service"], "channel": channel,
                                "payer_account": f"09{secrets.randbelow(10**8):08d}"})
        if order.get("amount") != self.ctx["amount"] or order.get("status") != "pending":
            raise StepFailed(f"order {order.get('id')} is {order.get('status')} for {order.get('amount')} "
                             f"(expected pending for {self.ctx['amount']})")
        self.ctx.update(order=order["id"], switch_ref=order["switch_ref"])
        return f"{order['id']} via {channel}, switch ref {order['switch_ref']}"

    def confirm(self) -> str:
        def decided() -> dict[str, Any] | None:
            order = self.call("GET", "payment", f"/api/orders/{self.ctx['order']}")
            return None if order["status"] == "pending" else order

        order = self.until("the switch's decision", decided)
        if order["status"] != "paid":
            raise StepFailed(f"order {order['id']} {order['status']}: {order.get('reason')}")
        return f"{order['id']} paid"

    def receipt(self) -> str:
        doc = self.call("GET", "payment", f"/api/orders/{self.ctx['order']}/receipt")
        try:
            fields = json.loads(doc["payload"])
        except (KeyError, TypeError, ValueError) as exc:
            raise StepFailed(f"malformed receipt: {exc}") from None
        want = {"order_id": self.ctx["order"], "amount": self.ctx["amount"], "switch_ref": self.ctx["switch_ref"],
                "service_id": self.ctx["service"]}
        wrong = {k: fields.get(k) for k, v in want.items() if fields.get(k) != v}
        if wrong:
            raise StepFailed(f"receipt does not match the order: {wrong}")
        self.ctx["receipt"] = doc
        return f"{fields['receipt_id']} ({doc.get('algorithm')}, chain of {len(doc.get('chain', []))})"

    def verify_receipt(self) -> str:
        doc = self.ctx["receipt"]
        cas = {c["name"]: x509.load_pem_x509_certificate(c["certificate"].encode())
               for c in self.call("GET", "ca", "/api/v1/cas")}
        anchors = [c for c in cas.values() if c.issuer == c.subject]
        if not anchors:
            raise StepFailed("the CA lists no root")
        try:
            chain = [x509.load_pem_x509_certificate(p.encode()) for p in doc["chain"]]
            signature = base64.b64decode(doc["signature"], validate=True)
        except (KeyError, TypeError, ValueError) as exc:
            raise StepFailed(f"malformed receipt: {exc}") from None
        issuing = verify_chain(chain, anchors, list(cas.values()))
        verify_signature(chain[0], signature, doc["payload"].encode())
        self.ctx.update(leaf=chain[0], issuer=issuing)
        name = next(n for n, c in cas.items() if c == issuing)
        return f"signed by {chain[0].subject.rfc4514_string()}, issued by CA {name!r}, chain to the root verified"

    def ocsp_status(self) -> str:
        leaf: x509.Certificate = self.ctx["leaf"]
        issuer: x509.Certificate = self.ctx["issuer"]
        try:
            aia = leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
            public = next(d.access_location.value for d in aia if d.access_method == AuthorityInformationAccessOID.OCSP)
        except (x509.ExtensionNotFound, StopIteration):
            raise StepFailed("the receipt's certificate names no OCSP responder") from None
        path = urlsplit(public).path  # the certificate names the CA's public host; ask the CA where it runs
        req = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA1()).build()
        der = self.call("POST", "ca", path, content=req.public_bytes(serialization.Encoding.DER),
                        headers={"content-type": "application/ocsp-request"})
        try:
            answer = ocsp.load_der_ocsp_response(der)
        except ValueError as exc:
            raise StepFailed(f"malformed OCSP response: {exc}") from None
        if answer.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
            raise StepFailed(f"OCSP responder answered {answer.response_status.name}")
        if answer.serial_number != leaf.serial_number:
            raise StepFailed("OCSP response is for another certificate")
        ocsp_signed_by(answer, issuer)
        now = datetime.now(UTC)
        if answer.next_update_utc is not None and answer.next_update_utc < now:
            raise StepFailed(f"OCSP response is stale (nextUpdate {answer.next_update_utc.isoformat()})")
        if answer.certificate_status != ocsp.OCSPCertStatus.GOOD:
            raise StepFailed(f"certificate {leaf.serial_number:X} is {answer.certificate_status.name.lower()}")
        return f"serial {leaf.serial_number:X} good (responder {responder_name(answer)})"

    def notice_delivered(self) -> str:
        body, order = self.ctx["body"], self.ctx["order"]

        def arrived() -> dict[str, Any] | None:
            inbox = self.call("GET", "bodysystems", f"/{body}/inbox/payment-notices")
            return next((n for n in inbox.get("notices", []) if n.get("notice", {}).get("order_id") == order
                         and n["notice"].get("status") == "paid"), None)

        notice = self.until(f"the payment notice in {body}'s inbox", arrived)
        if not notice.get("client"):
            raise StepFailed(f"the notice in {body}'s inbox did not come through the bus (no bus client)")
        detail = f"{body} inbox receipt {notice['receipt']} from {notice['client']}"
        token = self.secret("bus", "admin-token")
        if token:
            state = self.call("GET", "bus", f"/admin/messages/{notice['messageId']}",
                              headers={"authorization": f"Bearer {token}"})
            if state.get("state") != "delivered":
                raise StepFailed(f"bus message {notice['messageId']} is {state.get('state')}")
            detail += f", bus message {state['messageId']} delivered after {state.get('attempts')} attempt(s)"
        return detail

    def portal_told(self) -> str:
        """payment → portal: the gateway's signed notification was delivered (a 404 or 401 there is retried by the
        gateway, then dead-lettered: this step is where that shows)."""
        order = self.ctx["order"]
        receipt_id = json.loads(self.ctx["receipt"]["payload"]).get("receipt_id")

        def known() -> dict[str, Any] | None:
            doc = self.call("GET", "portal", f"/api/payments/{order}", expect=(200, 404))
            return doc if isinstance(doc, dict) and doc.get("order_id") == order else None

        try:
            doc = self.until(f"the portal knowing order {order}", known)
        except StepFailed as exc:
            raise StepFailed(f"{exc}{self._dead_letter(order)}") from None
        want = {"status": "paid", "amount": self.ctx["amount"], "service_id": self.ctx["service"],
                "receipt_id": receipt_id}
        wrong = {k: doc.get(k) for k, v in want.items() if doc.get(k) != v}
        if wrong:
            raise StepFailed(f"the portal has order {order} as {wrong} (expected {want})")
        return f"{order} paid for {doc['service_id']}, receipt {doc['receipt_id']}, told at {doc.get('updated_at')}"

    def _dead_letter(self, order: str) -> str:
        """Why payment could not tell the portal, from its dead letters (when the stack's admin token is known)."""
        token = self.secret("payment", "admin-token")
        if not token:
            return ""
        try:
            dead = self.call("GET", "payment", "/api/admin/notifications/dead",
                             headers={"authorization": f"Bearer {token}"})
        except StepFailed:
            return ""
        mine = [d for d in dead or [] if d.get("order_id") == order and d.get("target") == "portal"]
        return f"; payment dead-lettered it: {mine[0].get('last_error')}" if mine else ""

    # -- running ---------------------------------------------------------------------------------------------------
    def run(self) -> list[Check]:
        steps = (self.find_service, self.create_order, self.confirm, self.receipt, self.verify_receipt,
                 self.ocsp_status, self.notice_delivered, self.portal_told)
        checks: list[Check] = []
        failed: str | None = None
        for name, step in zip(STEPS, steps, strict=True):
            if failed is not None:
                checks.append(Check(LAYER, name, DEGRADED, f"not run: {failed!r} failed"))
                continue
            start = time.perf_counter()
            try:
                detail, status = step(), OK
            except StepFailed as exc:
                detail, status, failed = f"{name} failed: {one_line(str(exc))}", DOWN, name
            except Exception as exc:  # an unexpected answer shape: still one line naming the step
                detail, status, failed = f"{name} failed: {type(exc).__name__}: {one_line(str(exc))}", DOWN, name
            checks.append(Check(LAYER, name, status, detail, round(time.perf_counter() - start, 3)))
        return checks


# -- offline verification ---------------------------------------------------------------------------------------------

def verify_chain(chain: list[x509.Certificate], anchors: list[x509.Certificate], known: list[x509.Certificate],
                 at: datetime | None = None) -> x509.Certificate:
    """Check ``chain`` (leaf first) links up to one of ``anchors``; returns the leaf's issuer (one of ``known``)."""
    when = at or datetime.now(UTC)
    if not chain:
        raise StepFailed("empty certificate chain")
    path = [c for c in chain if c not in anchors]
    if not path:
        raise StepFailed("the chain holds only the trust anchor")
    for i, cert in enumerate(path):
        issuer = path[i + 1] if i + 1 < len(path) else next((a for a in anchors if a.subject == cert.issuer), None)
        if issuer is None:
            raise StepFailed(f"{cert.subject.rfc4514_string()} does not chain to the CA's root")
        if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
            raise StepFailed(f"{cert.subject.rfc4514_string()} is not valid now "
                             f"({cert.not_valid_before_utc:%Y-%m-%d}..{cert.not_valid_after_utc:%Y-%m-%d})")
        try:
            cert.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            raise StepFailed(f"{cert.subject.rfc4514_string()} is not issued by "
                             f"{issuer.subject.rfc4514_string()}") from None
        try:
            if not issuer.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
                raise StepFailed(f"{issuer.subject.rfc4514_string()} is not a CA")
        except x509.ExtensionNotFound:
            raise StepFailed(f"{issuer.subject.rfc4514_string()} lacks basicConstraints") from None
    issuing = path[1] if len(path) > 1 else next(a for a in anchors if a.subject == path[0].issuer)
    if issuing not in known:
        raise StepFailed(f"the receipt's issuer {issuing.subject.rfc4514_string()} is not one of the CA's CAs")
    return issuing


def verify_signature(cert: x509.Certificate, signature: bytes, data: bytes) -> None:
    pub = cert.public_key()
    try:
        if isinstance(pub, ec.EllipticCurvePublicKey):
            pub.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(pub, rsa.RSAPublicKey):
            pub.verify(signature, data, padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.AUTO), hashes.SHA256())
        else:
            raise StepFailed(f"unsupported key type {type(pub).__name__}")
    except InvalidSignature:
        raise StepFailed("the receipt's signature does not match its payload") from None


def ocsp_signed_by(answer: ocsp.OCSPResponse, issuer: x509.Certificate) -> None:
    """The answer is signed by the issuer itself or a delegated responder it issued for OCSP signing: the bus's own
    check (``govcloud_common.x509sig``), so the journey accepts exactly the answers the bus accepts."""
    from infra.shared import common

    if not common("x509sig").ocsp_signed(answer, issuer):
        raise StepFailed("OCSP response is not signed by the issuing CA or its delegated responder")


def responder_name(answer: ocsp.OCSPResponse) -> str:
    if answer.responder_name is not None:
        return answer.responder_name.rfc4514_string()
    return "key " + (answer.responder_key_hash or b"").hex()[:16]


# -- the layer --------------------------------------------------------------------------------------------------------

def stack_secret(model: StackModel) -> Callable[[str, str], str | None]:
    from infra.state import StackState, StateError

    state = StackState(model.name)

    def get(component: str, key: str) -> str | None:
        try:
            return state.get(component, key)
        except StateError:
            return None
    return get


def journey_layer(model: StackModel, runtime: Runtime, client: httpx.Client | None = None) -> list[Check]:
    own = client is None
    http = client or httpx.Client(timeout=httpx.Timeout(5.0, connect=2.0))
    try:
        return Journey(http, runtime.endpoint, stack_secret(model)).run()
    finally:
        if own:
            http.close()
