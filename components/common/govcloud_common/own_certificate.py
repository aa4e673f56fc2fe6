"""A component's own certificate from the platform CA, renewed before it expires.

The CA's ``tls-server`` certificates live 90 days, ``bus-client`` and ``document-signing`` a year: a component
that obtained one at its first start and kept it on a volume stops working on the day it expires. This keeps it
current the way step-ca's and cert-manager's renewers do: a certificate is *due* once less than ``renew_at``
(default a third) of its lifetime remains, or when the files are missing, unreadable or do not belong together
(a key that is not the certificate's). Renewal makes a new key here (only the CSR travels), writes the three
files with temp-file + rename (a crash leaves the old pair or the new one, and a mismatched pair is re-issued at
the next start), then tells the component (``on_renewed``) so it reloads its TLS contexts and signers.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from govcloud_common.ca_client import IssuedCertificate, request_certificate

log = logging.getLogger("govcloud.certificate")

RETRY_S = 300.0  # after a failed renewal (CA down): retry this often, well before the certificate runs out


@dataclass
class OwnCertificate:
    """The certificate, its key and the issuing chain (issuing CA .. root), as three PEM files."""

    cert_path: Path
    key_path: Path
    chain_path: Path
    profile: str
    names: list[str]
    token: str | None = field(default=None, repr=False)
    ca_url: str | None = None
    subject: x509.Name | None = None
    renew_at: float = 1 / 3
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC), repr=False)

    def current(self) -> x509.Certificate | None:
        """The certificate on disk when it is readable and its key is beside it, else None."""
        self._recover()
        try:
            cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
            key = serialization.load_pem_private_key(self.key_path.read_bytes(), None)
            if not self.chain_path.read_bytes().strip():
                return None
        except (OSError, ValueError, TypeError):
            return None
        return cert if cert.public_key() == key.public_key() else None

    def renew_after(self, cert: x509.Certificate) -> datetime:
        """When ``cert`` becomes due: ``renew_at`` of its lifetime before its end."""
        lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
        return cert.not_valid_after_utc - lifetime * self.renew_at

    def due(self) -> bool:
        cert = self.current()
        return cert is None or self.clock() >= self.renew_after(cert)

    def ensure(self) -> str:
        """Issue or renew when due; a one-line account of what was found or done (for the start-up log).

        A valid certificate that is due is kept when no CA can be asked (the component still starts and says so);
        a missing or expired one with no CA to ask is an error naming what is needed."""
        cert = self.current()
        now = self.clock()
        if cert is not None and now < self.renew_after(cert):
            return f"present: serial {cert.serial_number:x}, valid until {cert.not_valid_after_utc:%Y-%m-%d %H:%M}Z"
        if not self.token or not self.ca_url:
            if cert is not None and now < cert.not_valid_after_utc:
                return (f"present but due for renewal (valid until {cert.not_valid_after_utc:%Y-%m-%d %H:%M}Z); "
                        "no CA to ask: set GOVCLOUD_URL_CA and GOVCLOUD_SECRET_CA_TOKEN")
            what = "expired" if cert is not None else "missing"
            raise RuntimeError(f"certificate {self.cert_path} {what} and no CA to ask (GOVCLOUD_SECRET_CA_TOKEN and "
                               "GOVCLOUD_URL_CA are needed to obtain one)")
        issued = request_certificate(self.profile, self.names, token=self.token, subject=self.subject,
                                     base_url=self.ca_url)
        self._write(issued)
        if cert is None:
            return f"issued serial {issued.serial}"
        return f"renewed: serial {cert.serial_number:x} -> {issued.serial}"

    def _paths(self) -> tuple[Path, Path, Path]:
        return self.key_path, self.cert_path, self.chain_path

    @staticmethod
    def _new(path: Path) -> Path:
        return path.with_name(path.name + ".new")

    def _write(self, issued: IssuedCertificate) -> None:
        """All three ``.new`` files written and synced first, then renamed key first: a crash leaves either the old
        set with (some) ``.new`` files beside it, or a rename in progress - ``_recover`` tells them apart."""
        for path, data, mode in zip(self._paths(), (issued.key_pem(), issued.cert_pem(), issued.chain_pem()),
                                    (0o600, 0o644, 0o644), strict=True):
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._new(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        self._rename_new()

    def _rename_new(self) -> None:
        for path in self._paths():
            if self._new(path).exists():
                os.replace(self._new(path), path)

    def _recover(self) -> None:
        """Finish or drop what a crash in ``_write`` left: renames under way (the key already moved) are finished, a
        complete set not yet renamed is taken, an incomplete one is removed."""
        new = [self._new(p).exists() for p in self._paths()]
        if not any(new):
            return
        if not new[0] or all(new):
            self._rename_new()
        else:
            for path in self._paths():
                self._new(path).unlink(missing_ok=True)

    async def keep(self, on_renewed: Callable[[], None], check_every_s: float = 3600.0) -> None:
        """Run forever: wake when the certificate becomes due (at least every ``check_every_s``), renew, and call
        ``on_renewed``; a failed renewal is logged and retried every ``RETRY_S`` (or sooner). Returns at once when
        no CA can be asked (``ensure`` said so at start-up)."""
        if not self.token or not self.ca_url:
            return
        while True:
            cert = self.current()
            wait = 0.0 if cert is None else (self.renew_after(cert) - self.clock()).total_seconds()
            await asyncio.sleep(min(max(wait, 0.0), check_every_s))  # a schedule, not synchronisation
            if not self.due():
                continue
            try:
                outcome = await asyncio.to_thread(self.ensure)
            except Exception as exc:  # the CA may be down: the current certificate still serves
                log.warning("certificate renewal failed (%s); retrying in %.0f s", exc, min(RETRY_S, check_every_s))
                await asyncio.sleep(min(RETRY_S, check_every_s))  # a schedule, not synchronisation
                continue
            log.info("own certificate %s", outcome)
            try:
                on_renewed()
            except Exception:  # the new files are in place: a restart serves them; keep renewing meanwhile
                log.exception("reloading the renewed certificate failed")
            if self.due():  # born due (the CA capped its lifetime): not again at once
                await asyncio.sleep(min(RETRY_S, check_every_s))  # a schedule, not synchronisation
