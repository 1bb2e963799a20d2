"""Shared test configuration."""

from __future__ import annotations

import os

# Deterministic, quiet test runs on a 2-core machine.
os.environ.setdefault("PYTHONHASHSEED", "0")
