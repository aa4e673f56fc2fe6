"""Django settings, all from the component contract's environment (docs/component-contract.md)."""

from __future__ import annotations

import os
import secrets
from datetime import timedelta

DOMAIN = os.environ.get("GOVCLOUD_DOMAIN", "gov.local")
ORGANIZATION = os.environ.get("GOVCLOUD_SETTING_ORGANIZATION", "GovCloud")
# Host (and optional port) written into issued certificates' CRL distribution point, OCSP and CA issuer URLs.
PUBLIC_HOST = os.environ.get("GOVCLOUD_SETTING_PUBLIC_HOST", f"ca.{DOMAIN}")

# Django needs a SECRET_KEY, but nothing here signs cookies or sessions: a per-process random one is fine.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(48)
DEBUG = False
ALLOWED_HOSTS = ["*"]  # the ASGI front (FastAPI) is the entry point; host checks belong to the ingress
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "ca.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django_ca",
    "ca.apps.CaConfig",
]
MIDDLEWARE: list[str] = []
TEMPLATES: list[dict[str, object]] = []

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        # libpq's PG* variables, as the contract injects them; empty values let libpq apply its defaults
        "NAME": os.environ.get("PGDATABASE", "ca"),
        "USER": os.environ.get("PGUSER", ""),
        "PASSWORD": os.environ.get("PGPASSWORD", ""),
        "HOST": os.environ.get("PGHOST", ""),
        "PORT": os.environ.get("PGPORT", ""),
        # persistent connections: without them OCSP drops to ~85 req/s (MACHINE-NOTES)
        "CONN_MAX_AGE": int(os.environ.get("GOVCLOUD_SETTING_CONN_MAX_AGE", "300")),
        "CONN_HEALTH_CHECKS": True,
    }
}

# One cache every worker and replica shares, in the CA's PostgreSQL (`python -m ca` runs createcachetable): ACME
# replay nonces must be valid on whichever worker the next request reaches, and django-ca's cached CRLs are
# overwritten by every regeneration (ca.hierarchy.regenerate_crls). OCSP answers have their own table (ca.ocsp).
CACHES = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "govcloud_ca_cache",
                      "TIMEOUT": 3600, "OPTIONS": {"MAX_ENTRIES": 100_000}}}
# Behind a TLS-terminating ingress: ACME URLs (directory, orders, ...) are built from the request, so trust the
# ingress's X-Forwarded-Proto/Host to make them https://<public host>/...
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
USE_X_FORWARDED_HOST = True

LOGGING_CONFIG = None  # govcloud_common.logs owns logging

# --- django-ca ---------------------------------------------------------------------------------------------
CA_USE_CELERY = False
CA_ENABLE_REST_API = False  # it enforces no issuance policy (upstream issue 168); ours lives in ca.api
# ACME (RFC 8555) for the platform's TLS: the platform CA only, profile tls-server (our policy applies), http-01.
ACME = os.environ.get("GOVCLOUD_SETTING_ACME", "true").lower() in ("1", "true", "yes", "on")
CA_ENABLE_ACME = ACME
CA_ACME_DEFAULT_CERT_VALIDITY = timedelta(days=90)  # the tls-server profile's default
CA_ACME_MAX_CERT_VALIDITY = timedelta(days=90)
CA_DEFAULT_HOSTNAME = PUBLIC_HOST
CA_DEFAULT_SIGNATURE_HASH_ALGORITHM = "SHA-256"
CA_DEFAULT_KEY_SIZE = 4096
CA_MIN_KEY_SIZE = 2048
CA_DEFAULT_ELLIPTIC_CURVE = "secp256r1"
CA_KEY_BACKENDS = {
    "default": {"BACKEND": "ca.keys.EncryptedDBBackend", "OPTIONS": {}},
}
# Issuing CA keys in an HSM through PKCS#11 (e.g. SoftHSM2: /usr/lib/softhsm/libsofthsm2.so) when configured.
# The root key stays in "default" (encrypted) so it can be exported for cold storage; OCSP delegate keys stay in
# the database too (django-ca re-initialises PKCS#11 per use: with several workers most OCSP answers fail).
PKCS11_LIBRARY = os.environ.get("GOVCLOUD_SETTING_PKCS11_LIBRARY", "")
if PKCS11_LIBRARY:
    CA_KEY_BACKENDS["hsm"] = {
        "BACKEND": "django_ca.key_backends.hsm.HSMBackend",
        "OPTIONS": {"library_path": PKCS11_LIBRARY,
                    "token": os.environ.get("GOVCLOUD_SETTING_PKCS11_TOKEN", "govcloud-ca"),
                    "user_pin": os.environ.get("GOVCLOUD_SECRET_HSM_PIN", "")},
    }
CA_OCSP_KEY_BACKENDS = {
    "default": {"BACKEND": "ca.keys.EncryptedDBOCSPBackend", "OPTIONS": {}},
}
CA_DEFAULT_PROFILE = "tls-server"
from ca.profiles import django_ca_profiles  # noqa: E402  (settings module: profiles are data, no Django import)

CA_PROFILES = django_ca_profiles()
