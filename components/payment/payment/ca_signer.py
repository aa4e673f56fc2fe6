"""The production receipt signer: a key generated here, certified by the platform CA at startup.

Kept apart from the rest of the gateway: it is the only code that talks to the CA. It uses
``govcloud_common.ca_client.request_certificate`` (the key never leaves this process, only the CSR travels). The CA
has no profile for an organisation's document seal yet; ``document-signing`` (digitalSignature + contentCommitment,
issued by the platform CA) is what the gateway asks for - see the component's README.
"""

from __future__ import annotations

import httpx
from cryptography import x509
from cryptography.x509.oid import NameOID

from payment.receipts import KeySigner

PROFILE = "document-signing"


def signer_from_ca(token: str, common_name: str = "govcloud payment receipts", profile: str = PROFILE,
                   client: httpx.Client | None = None) -> KeySigner:
    from govcloud_common.ca_client import request_certificate

    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "govcloud"),
                         x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    issued = request_certificate(profile, [], token=token, subject=subject, client=client)
    return KeySigner(issued.key, [issued.certificate, *issued.chain])
