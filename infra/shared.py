"""The few modules of ``components/common/govcloud_common`` that govcloud's own checks share with the components, so
that both judge alike (e.g. ``x509sig``: who may sign an OCSP answer, checked by the bus and by the citizen journey).

The components' package is the images' and is not on infra's path; infra always runs from the checkout it builds
those images from, so it loads the module from there, by file. Only modules that need nothing beyond infra's own
dependencies (and no other module of the package) are shared this way.
"""

from __future__ import annotations

import importlib.util
import sys
from functools import cache
from types import ModuleType

from infra.contract import COMPONENTS_DIR


@cache
def common(name: str) -> ModuleType:
    """``govcloud_common.<name>``: the components' own module when it is already imported (tests), else loaded."""
    full = f"govcloud_common.{name}"
    if full in sys.modules:
        return sys.modules[full]
    spec = importlib.util.spec_from_file_location(full, COMPONENTS_DIR / "common" / "govcloud_common" / f"{name}.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"{full}: not found under {COMPONENTS_DIR / 'common'}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
