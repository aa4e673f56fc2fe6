"""infra loads the components' shared modules from the checkout: the same code the bus runs judges for govcloud."""

from __future__ import annotations

import subprocess
import sys

from infra.contract import COMPONENTS_DIR


def test_loaded_by_file_where_the_components_package_is_not_importable() -> None:
    code = ("import sys\n"
            "try:\n    import govcloud_common\nexcept ImportError:\n    pass\nelse:\n    sys.exit('importable')\n"
            "from infra.shared import common\n"
            "m = common('x509sig')\n"
            "print(m.__file__, callable(m.ocsp_signed), common('x509sig') is m)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=COMPONENTS_DIR.parent).stdout.split()
    assert out == [str(COMPONENTS_DIR / "common" / "govcloud_common" / "x509sig.py"), "True", "True"]


def test_the_components_module_itself_when_already_imported() -> None:
    from govcloud_common import x509sig

    from infra.shared import common

    assert common("x509sig") is x509sig


def _cert(subject: str, key, issuer_name: str | None = None, issuer_key=None, ca: bool = False,  # type: ignore[no-untyped-def]
          ocsp_signing: bool = False):
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name or subject)])
    now = datetime.now(UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=1))
               .not_valid_after(now + timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ocsp_signing:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


def test_journey_accepts_the_ocsp_answers_the_bus_accepts() -> None:
    import pytest
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509 import ocsp

    from infra.ops.journey import StepFailed, ocsp_signed_by

    ca_key, delegate_key, rogue_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(4))
    ca = _cert("CA", ca_key, ca=True)
    leaf = _cert("leaf", leaf_key, "CA", ca_key)
    delegate = _cert("responder", delegate_key, "CA", ca_key, ocsp_signing=True)
    rogue = _cert("CA", rogue_key, ocsp_signing=True)  # same name, not issued by the CA

    def answer(responder, key):  # type: ignore[no-untyped-def]
        from datetime import UTC, datetime

        builder = ocsp.OCSPResponseBuilder().add_response(
            leaf, ca, hashes.SHA1(), ocsp.OCSPCertStatus.GOOD, datetime.now(UTC), None, None, None
        ).responder_id(ocsp.OCSPResponderEncoding.NAME, responder)
        if responder is not ca:
            builder = builder.certificates([responder])
        return builder.sign(key, hashes.SHA256())

    ocsp_signed_by(answer(ca, ca_key), ca)
    ocsp_signed_by(answer(delegate, delegate_key), ca)
    with pytest.raises(StepFailed, match="not signed by the issuing CA or its delegated responder"):
        ocsp_signed_by(answer(rogue, rogue_key), ca)
