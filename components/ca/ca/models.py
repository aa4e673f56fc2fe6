"""govcloud's own tables beside django-ca's: pre-produced OCSP responses (ca.ocsp)."""

from __future__ import annotations

from django.db import models


class OcspResponse(models.Model):
    """One signed, nonce-less DER OCSPResponse per (issuing CA, certificate serial, CertID hash algorithm).

    Regenerable from django-ca's tables at any time, so not part of the backup."""

    ca_serial = models.CharField(max_length=64)
    serial = models.CharField(max_length=64)
    algorithm = models.CharField(max_length=8)  # the CertID hash: sha1 | sha256
    status = models.CharField(max_length=8)  # good | revoked
    der = models.BinaryField()
    this_update = models.DateTimeField()
    next_update = models.DateTimeField()

    class Meta:
        db_table = "govcloud_ca_ocsp_response"
        constraints = [models.UniqueConstraint(fields=["ca_serial", "serial", "algorithm"],
                                               name="govcloud_ca_ocsp_response_key")]
        indexes = [models.Index(fields=["ca_serial", "this_update"], name="govcloud_ca_ocsp_resp_age")]
