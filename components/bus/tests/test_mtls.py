"""Mutual TLS: the member's identity from its certificate; refusals each with a clear reason."""

from __future__ import annotations

import ssl

import httpx
import pytest

pytestmark = pytest.mark.asyncio

PERSON = "/r1/cra/population/persons/persons/01010000001"


async def test_good_certificate_routes_with_identity_and_correlation(harness) -> None:
    async with harness.client("portal") as c:
        r = await c.get(PERSON, headers={"x-correlation-id": "corr-123"})
    assert r.status_code == 200, r.text
    assert r.json()["givenName"] == "Rami"
    assert r.headers["x-correlation-id"] == "corr-123"
    assert r.headers["x-bus-message-id"]


async def test_identity_headers_cannot_be_spoofed(harness) -> None:
    async with harness.client("portal") as c:
        r = await c.post("/r1/mof/inbox/notices/payment-notices", headers={"x-bus-client": "mof/treasury"},
                         json={"noticeId": "N-1", "nationalId": "01010000001", "amount": "100", "reference": "R"})
    assert r.status_code == 201, r.text
    inbox = harness.bodysystems.server.config.app.state.sim["notices"]["mof"]
    assert [n["client"] for n in inbox.values()] == ["moi/portal"]


async def test_no_certificate_is_refused_with_401(harness) -> None:
    async with harness.client(None) as c:
        r = await c.get(PERSON)
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"] == "urn:govcloud:bus:client-certificate-required"


def chain(exc: BaseException | None) -> str:
    parts = []
    while exc is not None:
        parts.append(f"{type(exc).__name__}: {exc}")
        exc = exc.__cause__ or exc.__context__
    return " <- ".join(parts)


async def test_foreign_ca_is_refused_in_the_handshake_with_unknown_ca(harness) -> None:
    async with harness.client("foreign") as c:
        with pytest.raises((httpx.ConnectError, httpx.ReadError, ssl.SSLError)) as info:
            await c.get(PERSON)
    assert "alert unknown ca" in chain(info.value).lower(), chain(info.value)


async def refusal(harness, client: str) -> dict:
    """The bus's problem document refusing a request made with ``client``'s certificate (HTTP 403)."""
    async with harness.client(client) as c:
        r = await c.get(PERSON)
    assert r.status_code == 403
    return r.json()


async def test_expired_certificate_is_refused(harness) -> None:
    problem = await refusal(harness, "expired")
    assert problem["type"] == "urn:govcloud:bus:certificate-expired"
    assert "expired at" in problem["detail"]


async def test_revoked_certificate_is_refused_via_ocsp_and_cached(harness) -> None:
    before = harness.pki.ocsp_requests
    async with harness.client("revoked") as c:
        r1 = await c.get(PERSON)
        r2 = await c.get(PERSON)
    assert r1.status_code == r2.status_code == 403
    assert r1.json()["type"] == "urn:govcloud:bus:certificate-revoked"
    assert harness.pki.ocsp_requests - before == 1  # the second call was answered from the cache


async def test_revocation_falls_back_to_crl_when_ocsp_is_down(harness) -> None:
    harness.pki.ocsp_down = True
    try:
        async with harness.client("revoked") as c:
            r = await c.get(PERSON)
        async with harness.client("portal") as c:
            ok = await c.get(PERSON)
    finally:
        harness.pki.ocsp_down = False
    assert r.status_code == 403 and r.json()["type"] == "urn:govcloud:bus:certificate-revoked"
    assert ok.status_code == 200


async def test_certificate_for_another_purpose_is_refused_in_the_handshake(harness) -> None:
    async with harness.client("server-profile") as c:  # extendedKeyUsage serverAuth only
        with pytest.raises((httpx.ConnectError, httpx.ReadError, ssl.SSLError)) as info:
            await c.get(PERSON)
    assert "alert unsupported certificate" in chain(info.value).lower(), chain(info.value)


@pytest.mark.parametrize(("client", "problem"), [
    ("anonymous", "not-a-bus-client-certificate"),     # a certificate naming no member
    ("other-domain", "not-a-bus-client-certificate"),  # a member name of another domain
    ("stranger", "unknown-member"),                    # a member the registry does not know
])
async def test_client_that_is_no_known_member_is_refused(harness, client: str, problem: str) -> None:
    assert (await refusal(harness, client))["type"] == f"urn:govcloud:bus:{problem}"


async def test_no_access_right_is_refused(harness) -> None:
    problem = await refusal(harness, "clinic")
    assert problem["type"] == "urn:govcloud:bus:access-denied"
    assert "moh/clinic has no access right to cra/population/persons" in problem["detail"]


async def test_refusal_for_a_soap_client_is_a_fault(harness) -> None:
    from conftest import soap_request

    async with harness.client("clinic") as c:
        r = await c.post("/r1/mola/landregistry/parcels", content=soap_request("GetParcel", "urn:x", parcelId="1"),
                         headers={"content-type": "text/xml"})
    assert r.status_code == 500
    assert b"<faultcode>soap:Client</faultcode>" in r.content
    assert b"access-denied" in r.content
