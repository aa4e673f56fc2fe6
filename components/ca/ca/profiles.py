"""Certificate profiles and the naming rules of each: pure data and checks, no Django.

Naming rules (GOVCLOUD_DOMAIN is the stack's domain, ``<body>`` one of the 26 ids of infra/data/bodies.yaml):

* ``tls-server``: DNS names under the stack domain (``portal.<domain>``, ``*.<domain>`` is refused) or
  ``localhost``; IP addresses only from private/loopback ranges. CN = the first name.
* ``bus-client``: exactly the names ``<system>.<body>.bus.<domain>`` of the requesting body, where
  ``<system>`` is ``[a-z][a-z0-9-]{0,30}``. Subject ``CN=<name>, OU=<body>, O=<organization>``.
  A caller authenticated with a body's enrolment token can only get names of that body.
* ``citizen-signing``: no DNS/IP names; subject needs CN (the citizen's name) and serialNumber (national
  number, 11 digits); an optional rfc822 (e-mail) SAN.
* ``document-signing``: an organisation's seal on documents it issues (payment receipts): platform CA,
  digitalSignature + nonRepudiation, subject ``CN=<purpose>, O=<organization>``, no subjectAltNames.
* ``ocsp-responder``: delegated OCSP signing for the issuing CA itself; empty subject or CN only.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


class PolicyError(ValueError):
    """A request the CA policy refuses; the message is safe to return to the caller."""


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    cas: tuple[str, ...]              # issuing CAs (django-ca names) allowed to sign this profile
    key_usage: frozenset[str]         # cryptography KeyUsage attribute names
    eku: frozenset[x509.ObjectIdentifier]
    default_days: int
    max_days: int
    ocsp_no_check: bool = False


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("tls-server", "TLS server of a platform component", ("platform",),
                frozenset({"digital_signature"}), frozenset({ExtendedKeyUsageOID.SERVER_AUTH}), 90, 397),
        Profile("bus-client", "Client certificate identifying a government body's system on the bus", ("platform",),
                frozenset({"digital_signature"}), frozenset({ExtendedKeyUsageOID.CLIENT_AUTH}), 365, 397),
        Profile("citizen-signing", "A citizen's signature certificate (non-repudiation)", ("citizen",),
                frozenset({"digital_signature", "content_commitment"}), frozenset(), 730, 1095),
        Profile("document-signing", "An organisation's seal on documents it issues (e.g. payment receipts)",
                ("platform",), frozenset({"digital_signature", "content_commitment"}), frozenset(), 365, 397),
        Profile("ocsp-responder", "Delegated OCSP responder of an issuing CA", ("platform", "citizen", "root"),
                frozenset({"digital_signature"}), frozenset({ExtendedKeyUsageOID.OCSP_SIGNING}), 3, 30,
                ocsp_no_check=True),
    )
}
# django-ca generates OCSP delegate certificates with its built-in profile name "ocsp": same rules.
PROFILE_ALIASES = {"ocsp": "ocsp-responder"}

_KU_DJANGO = {"digital_signature": "digitalSignature", "content_commitment": "nonRepudiation",
              "key_encipherment": "keyEncipherment"}
_EKU_DJANGO = {ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth", ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
               ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning"}
_KU_ATTRS = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
             "key_cert_sign", "crl_sign")
_SYSTEM = r"[a-z][a-z0-9-]{0,30}"
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_NATIONAL_NUMBER = re.compile(r"^[0-9]{11}$")
_CITIZEN_ATTRS = {NameOID.COMMON_NAME, NameOID.SERIAL_NUMBER, NameOID.GIVEN_NAME, NameOID.SURNAME,
                  NameOID.COUNTRY_NAME}


def django_ca_profiles() -> dict[str, dict[str, object] | None]:
    """CA_PROFILES for django-ca: ours, its "ocsp" kept (used for delegate keys), its other defaults removed."""
    out: dict[str, dict[str, object] | None] = {"client": None, "server": None, "webserver": None, "enduser": None}
    for p in [*PROFILES.values(), PROFILES["ocsp-responder"]]:
        exts: dict[str, object] = {
            "key_usage": {"critical": True, "value": sorted(_KU_DJANGO[k] for k in p.key_usage)},
        }
        if p.eku:
            exts["extended_key_usage"] = {"critical": False, "value": sorted(_EKU_DJANGO[o] for o in p.eku)}
        if p.ocsp_no_check:
            exts["ocsp_no_check"] = {}
        out[p.name] = {"description": p.description, "expires": p.default_days, "extensions": exts,
                       "add_ocsp_url": not p.ocsp_no_check}
    out["ocsp"] = {**out["ocsp-responder"], "add_crl_url": False}  # type: ignore[dict-item]
    return out


def domain() -> str:
    return os.environ.get("GOVCLOUD_DOMAIN", "gov.local").lower()


@cache
def bodies() -> frozenset[str]:
    """Body ids: GOVCLOUD_SETTING_BODIES (comma-separated), else GOVCLOUD_BODIES_FILE, else the repo's file."""
    if listed := os.environ.get("GOVCLOUD_SETTING_BODIES"):
        return frozenset(b.strip() for b in listed.split(",") if b.strip())
    candidates = [Path(os.environ["GOVCLOUD_BODIES_FILE"])] if os.environ.get("GOVCLOUD_BODIES_FILE") else []
    candidates += [p / "infra" / "data" / "bodies.yaml" for p in Path(__file__).resolve().parents]
    for path in candidates:
        if path.is_file():
            return frozenset(str(b["id"]) for b in yaml.safe_load(path.read_text(encoding="utf-8")))
    raise RuntimeError("government bodies unknown: set GOVCLOUD_SETTING_BODIES or GOVCLOUD_BODIES_FILE")


def bus_name_body(name: str) -> str:
    """The body a bus-client name belongs to, or PolicyError explaining the rule."""
    m = re.fullmatch(rf"({_SYSTEM})\.([a-z0-9]+)\.bus\.{re.escape(domain())}", name)
    if not m:
        raise PolicyError(f"bus-client name {name!r} does not follow <system>.<body>.bus.{domain()}")
    if m.group(2) not in bodies():
        raise PolicyError(f"bus-client name {name!r}: {m.group(2)!r} is not a known government body")
    return m.group(2)


def check_key(public_key: object) -> None:
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < 2048:
            raise PolicyError(f"weak key: RSA-{public_key.key_size} (at least 2048 bits required)")
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        if public_key.curve.name not in ("secp256r1", "secp384r1", "secp521r1"):
            raise PolicyError(f"key curve {public_key.curve.name} is not allowed (P-256, P-384, P-521)")
    elif not isinstance(public_key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        raise PolicyError(f"key type {type(public_key).__name__} is not allowed")


def _names(extensions: list[x509.Extension[x509.ExtensionType]]) -> list[x509.GeneralName]:
    for ext in extensions:
        if isinstance(ext.value, x509.SubjectAlternativeName):
            return list(ext.value)
    return []


def check_names(profile: Profile, subject: x509.Name, sans: list[x509.GeneralName], body: str | None) -> str | None:
    """Enforce the profile's naming rule; returns the body of a bus-client certificate."""
    cns = [str(a.value) for a in subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if len(cns) > 1:
        raise PolicyError("subject has more than one commonName")
    dns = [n.value.lower() for n in sans if isinstance(n, x509.DNSName)]
    ips = [n.value for n in sans if isinstance(n, x509.IPAddress)]
    others = [n for n in sans if not isinstance(n, x509.DNSName | x509.IPAddress | x509.RFC822Name)]
    if others:
        kinds = sorted({type(n).__name__ for n in others})
        raise PolicyError(f"{profile.name}: subjectAltName types not allowed: {kinds}")
    if profile.name == "tls-server":
        if not dns and not ips:
            raise PolicyError("tls-server: at least one DNS name or IP address is required")
        for name in dns:
            labels = name.split(".")
            inside = name.endswith("." + domain()) or name == "localhost"
            if not inside or not all(_LABEL.match(label) for label in labels):
                raise PolicyError(f"tls-server: name {name!r} is not a host name under {domain()} (no wildcards)")
        for ip in ips:
            if not (ip.is_private or ip.is_loopback):  # type: ignore[union-attr]
                raise PolicyError(f"tls-server: IP address {ip} is not private")
        for cn in cns:
            if cn.lower() not in dns and not _is_ip_in(cn, ips):
                raise PolicyError(f"tls-server: commonName {cn!r} is not one of the subjectAltNames")
        return None
    if profile.name == "bus-client":
        if ips or any(isinstance(n, x509.RFC822Name) for n in sans):
            raise PolicyError("bus-client: only DNS names are allowed")
        names = sorted({*dns, *(c.lower() for c in cns)})
        if not names:
            raise PolicyError("bus-client: a name <system>.<body>.bus.<domain> is required")
        owners = {bus_name_body(n) for n in names}
        if len(owners) > 1:
            raise PolicyError(f"bus-client: names of more than one body requested: {sorted(owners)}")
        owner = owners.pop()
        if body is not None and owner != body:
            raise PolicyError(f"bus-client: body {body!r} may only get names of its own body, not of {owner!r}")
        ous = [str(a.value) for a in subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)]
        if any(ou != owner for ou in ous):
            raise PolicyError(f"bus-client: organizationalUnit must be the body id {owner!r}")
        return owner
    if profile.name == "citizen-signing":
        if dns or ips:
            raise PolicyError("citizen-signing: DNS names and IP addresses are not allowed")
        extra = {a.oid for a in subject} - _CITIZEN_ATTRS - {NameOID.ORGANIZATION_NAME}
        if extra:
            oids = sorted(o.dotted_string for o in extra)
            raise PolicyError(f"citizen-signing: subject attributes not allowed: {oids}")
        if not cns:
            raise PolicyError("citizen-signing: commonName (the citizen's name) is required")
        numbers = [str(a.value) for a in subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)]
        if len(numbers) != 1 or not _NATIONAL_NUMBER.match(numbers[0]):
            raise PolicyError("citizen-signing: serialNumber must be the 11-digit national number")
        return None
    if profile.name == "document-signing":
        if sans:
            raise PolicyError("document-signing: subjectAltNames are not allowed")
        if not cns or not subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME):
            raise PolicyError("document-signing: subject needs commonName (purpose) and organizationName")
        return None
    # ocsp-responder
    if sans:
        raise PolicyError("ocsp-responder: subjectAltNames are not allowed")
    return None


def _is_ip_in(value: str, ips: list[object]) -> bool:
    try:
        return ipaddress.ip_address(value) in ips
    except ValueError:
        return False


def check_certificate(profile: Profile, ca_name: str, public_key: object, subject: x509.Name,
                      extensions: list[x509.Extension[x509.ExtensionType]], lifetime_days: float,
                      body: str | None) -> str | None:
    """The whole policy for one certificate about to be signed (called from django-ca's pre_sign_cert)."""
    if ca_name not in profile.cas:
        raise PolicyError(f"profile {profile.name} cannot be issued by CA {ca_name!r} (allowed: {list(profile.cas)})")
    check_key(public_key)
    if lifetime_days > profile.max_days + 1 / 24:  # an hour of slack for clock and backdating
        raise PolicyError(f"{profile.name}: lifetime {lifetime_days:.0f} days exceeds the maximum {profile.max_days}")
    if lifetime_days <= 0:
        raise PolicyError("not_after is in the past")
    by_type = {type(e.value): e for e in extensions}
    bc = by_type.get(x509.BasicConstraints)
    if bc is not None and bc.value.ca:  # type: ignore[attr-defined]
        raise PolicyError("end-entity profiles cannot issue CA certificates (basicConstraints CA:TRUE)")
    ku_ext = by_type.get(x509.KeyUsage)
    if ku_ext is None:
        raise PolicyError(f"{profile.name}: keyUsage is required")
    ku = {attr for attr in _KU_ATTRS if getattr(ku_ext.value, attr)}
    allowed_ku = set(profile.key_usage)
    if profile.name == "tls-server" and isinstance(public_key, rsa.RSAPublicKey):
        allowed_ku.add("key_encipherment")
    if not set(profile.key_usage) <= ku <= allowed_ku:
        raise PolicyError(f"{profile.name}: keyUsage {sorted(ku)} is not {sorted(profile.key_usage)}")
    eku_ext = by_type.get(x509.ExtendedKeyUsage)
    eku = set(eku_ext.value) if eku_ext is not None else set()  # type: ignore[call-overload]
    if eku != set(profile.eku):
        raise PolicyError(f"{profile.name}: extendedKeyUsage {sorted(o._name for o in eku)} is not "
                          f"{sorted(o._name for o in profile.eku)}")
    if x509.NameConstraints in by_type:
        raise PolicyError("nameConstraints are not allowed in end-entity certificates")
    return check_names(profile, subject, _names(extensions), body)


def infer_profile(extensions: list[x509.Extension[x509.ExtensionType]]) -> Profile:
    """The profile a signing request without our API context must satisfy (django-ca admin/CLI/ACME)."""
    eku: set[x509.ObjectIdentifier] = set()
    ku = None
    for ext in extensions:
        if isinstance(ext.value, x509.ExtendedKeyUsage):
            eku = set(ext.value)
        elif isinstance(ext.value, x509.KeyUsage):
            ku = ext.value
    for profile in PROFILES.values():
        if profile.eku and eku == set(profile.eku):
            return profile
    if not eku and ku is not None and ku.content_commitment:
        return PROFILES["citizen-signing"]
    raise PolicyError("the certificate matches no profile (tls-server, bus-client, citizen-signing, ocsp-responder)")
