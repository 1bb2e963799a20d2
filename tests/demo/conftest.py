"""The demo's tests import its modules by plain name, the way ``examples/mixture_demo/run.py``
does: the demo is an example outside the installed package, a client of its public API."""

from __future__ import annotations

import sys
from pathlib import Path

DEMO_DIR = Path(__file__).resolve().parents[2] / "examples" / "mixture_demo"
if str(DEMO_DIR) not in sys.path:
    sys.path.insert(0, str(DEMO_DIR))
