"""Offline image builds: a debootstrap base, a host-built wheelhouse, one image per component."""

from infra.images.build import ImageRef, build_all, image_for

__all__ = ["ImageRef", "build_all", "image_for"]
