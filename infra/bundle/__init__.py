"""Air-gapped install bundles: one archive with images, wheels, host packages, manifest and checksums."""

from infra.bundle.build import create, install, verify
from infra.bundle.content import BundleError

__all__ = ["BundleError", "create", "install", "verify"]
