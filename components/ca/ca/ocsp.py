"""OCSP over HTTP without the Django request stack: django-ca's responder (GenericOCSPView) called directly,
plus a short in-process cache of signed answers to nonce-less requests.

The cache is cleared in this process on every revocation (post_revoke_cert). With several workers another
worker may serve a cached "good" for at most GOVCLOUD_SETTING_OCSP_CACHE_SECONDS (default 60; 0 disables) —
far inside the hour for which every answer is valid (its nextUpdate) and relying parties may cache it anyway.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from typing import Any

from cryptography.x509 import ocsp
from cryptography.x509.oid import OCSPExtensionOID
from django_ca.signals import post_revoke_cert
from django_ca.views import GenericOCSPView

TTL = float(os.environ.get("GOVCLOUD_SETTING_OCSP_CACHE_SECONDS", "60"))
MAX_ENTRIES = 100_000
_cache: OrderedDict[tuple[str, bytes], tuple[float, bytes]] = OrderedDict()
_lock = threading.Lock()
CONTENT_TYPE = "application/ocsp-response"


def clear(**_: Any) -> None:
    with _lock:
        _cache.clear()


post_revoke_cert.connect(clear, dispatch_uid="govcloud-ca-ocsp-cache")


def cached(ca_serial: str, der: bytes) -> bytes | None:
    if TTL <= 0:
        return None
    hit = _cache.get((ca_serial, der))
    if hit is None or hit[0] < time.monotonic():
        return None
    return hit[1]


def answer(ca_serial: str, der: bytes) -> tuple[int, bytes]:
    """(HTTP status, DER OCSPResponse) from django-ca's responder; caches successful nonce-less answers."""
    view = GenericOCSPView()
    view.kwargs = {"serial": ca_serial}
    response = view.handle_ocsp_request_data(der)
    body = bytes(response.content)
    if TTL > 0 and response.status_code == 200:
        try:
            request = ocsp.load_der_ocsp_request(der)
            has_nonce = any(e.oid == OCSPExtensionOID.NONCE for e in request.extensions)
            ok = ocsp.load_der_ocsp_response(body).response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
        except ValueError:
            has_nonce, ok = True, False
        if ok and not has_nonce:
            with _lock:
                _cache[(ca_serial, der)] = (time.monotonic() + TTL, body)
                if len(_cache) > MAX_ENTRIES:
                    _cache.popitem(last=False)
    return response.status_code, body
