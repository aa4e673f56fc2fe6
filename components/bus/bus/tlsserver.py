"""The mutual-TLS listener: an SSL context that requests a client certificate, and a uvicorn protocol that
hands the peer's certificate to the app (``scope["extensions"]["tls"]["client_cert_der"]``).

The context trusts only the platform CA bundle. ``CERT_OPTIONAL`` lets a call without a certificate through
the handshake so that the app can refuse it with a clear HTTP error; time validity is checked by the app for
the same reason (``X509_V_FLAG_NO_CHECK_TIME``). A certificate from another CA, or for another purpose, fails
the handshake: ``install_handshake_alerts`` makes asyncio send the TLS alert that says why (``unknown ca``,
``unsupported certificate``) — without it asyncio drops the connection silently — and logs the refusal.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto as sslproto
import logging
import ssl
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

X509_V_FLAG_NO_CHECK_TIME = 0x200000
log = logging.getLogger("bus.tls")


def install_handshake_alerts() -> bool:
    """Flush the TLS alert OpenSSL queued when a handshake fails, before asyncio closes the connection.

    asyncio (3.11+) aborts the transport on a failed handshake without writing what OpenSSL queued, so a refused
    client sees only a reset. Returns False (and changes nothing) when asyncio's SSL protocol is not the known one.
    """
    proto = sslproto.SSLProtocol
    if getattr(proto, "_govcloud_alerts", False):
        return True
    needed = ("_do_handshake", "_on_handshake_complete", "_process_outgoing")
    if not all(hasattr(proto, n) for n in needed) or not hasattr(sslproto, "SSLAgainErrors"):
        return False

    def _do_handshake(self: Any) -> None:
        try:
            self._sslobj.do_handshake()
        except sslproto.SSLAgainErrors:
            self._process_outgoing()
        except ssl.SSLError as exc:
            try:
                alert = self._outgoing.read()
                if alert:
                    self._transport.write(alert)
            except Exception:  # the peer may be gone already; the refusal stands either way
                pass
            peer = self._transport.get_extra_info("peername") if self._transport else None
            reason = getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or str(exc)
            log.warning("TLS handshake refused", extra={"fields": {"peer": str(peer), "reason": reason}})
            self._on_handshake_complete(exc)
        else:
            self._on_handshake_complete(None)

    proto._do_handshake = _do_handshake  # type: ignore[method-assign]
    proto._govcloud_alerts = True  # type: ignore[attr-defined]
    return True


def server_context(cert_file: str, key_file: str, ca_bundle: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    ctx.load_verify_locations(cafile=ca_bundle)
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.verify_flags = ctx.verify_flags | X509_V_FLAG_NO_CHECK_TIME  # type: ignore[assignment]
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class PeerCertProtocol(HttpToolsProtocol):
    _peer_der: bytes | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        sslobj = transport.get_extra_info("ssl_object")
        self._peer_der = sslobj.getpeercert(binary_form=True) if sslobj is not None else None

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = {"tls": {"client_cert_der": self._peer_der}}  # type: ignore[typeddict-unknown-key]


def mtls_server(app: Any, host: str, port: int, context: ssl.SSLContext, **kwargs: Any) -> uvicorn.Server:
    config = uvicorn.Config(app, host=host, port=port, http=PeerCertProtocol, lifespan="off", log_config=None,
                            access_log=False, ssl_context_factory=lambda _cfg, _default: context, **kwargs)
    return uvicorn.Server(config)


def plain_server(app: Any, host: str, port: int, **kwargs: Any) -> uvicorn.Server:
    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, **kwargs))
