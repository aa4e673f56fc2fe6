"""The k8s tests' helpers (k8s_support, k8s_fake) importable under --import-mode=importlib."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import kubernetes_validate.utils
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from k8s_support import cluster_stacks

# kubernetes_validate re-reads its (multi-MB) JSON definitions for every document; the schemas are
# read-only, so reading each once per process keeps the suite fast (validation itself is unchanged)
kubernetes_validate.utils.schema_contents = functools.cache(kubernetes_validate.utils.schema_contents)


@pytest.fixture(params=cluster_stacks())
def stack(request: pytest.FixtureRequest) -> str:
    return str(request.param)
