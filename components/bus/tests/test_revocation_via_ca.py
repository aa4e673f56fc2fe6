"""Revocation lookups go to the platform CA as wired (GOVCLOUD_URL_CA) when the certificate names its public host."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from bus.identity import Refused, RevocationChecker
from cryptography import x509

from .pki import build_pki, member

pytestmark = pytest.mark.asyncio


def _leaf_naming_an_unresolvable_ca(tmp_path: Path) -> tuple[object, x509.Certificate, x509.Certificate, str]:
    pki, server = build_pki(tmp_path)
    wired = pki.base_url
    pki.base_url = "http://ca.gov.invalid"  # the public host written into certificates; resolves nowhere here
    crt, _ = pki.issue("payment", member("payment", "mof"))
    leaf = x509.load_pem_x509_certificates(crt.read_bytes())[0]
    return server, leaf, pki.issuing.cert, wired


async def test_ocsp_asks_the_wired_ca_instead_of_the_public_host(tmp_path: Path) -> None:
    server, leaf, issuer, wired = _leaf_naming_an_unresolvable_ca(tmp_path)
    try:
        async with httpx.AsyncClient() as http:
            checker = RevocationChecker(http, ca_url=wired + "/")
            assert checker.via_ca("http://ca.gov.invalid/ocsp") == f"{wired}/ocsp"
            assert await checker.status(leaf, issuer) == "good"  # type: ignore[arg-type]
            assert checker.lookups == 1
            with pytest.raises(Refused, match="revocation status"):
                await RevocationChecker(http).status(leaf, issuer)  # type: ignore[arg-type]
    finally:
        server.shutdown()  # type: ignore[attr-defined]
