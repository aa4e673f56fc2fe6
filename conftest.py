"""Repository-wide pytest setup: component packages importable, shared fixtures registered."""

import sys
from pathlib import Path

ROOT = Path(__file__).parent
for folder in sorted((ROOT / "components").iterdir()):
    if folder.is_dir() and str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

pytest_plugins = ["govcloud_common.testing"]
