"""Fixtures for the hosts integration tests (the container-host machinery is containerhosts.py, same folder)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
