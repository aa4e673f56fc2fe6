"""Entry point of ``pulumi up -s <stack>`` (Pulumi.yaml: ``main: infra/cloud/``)."""

import sys
from pathlib import Path

try:
    import infra  # noqa: F401  (installed in the project's .venv with `pip install -e .`)
except ImportError:  # run from a checkout without the editable install
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from infra.cloud.program import main

main()
