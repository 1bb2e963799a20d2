"""Argument parsing shared by the law verbs: numbers such as ``1.4B`` and ``d=x`` pairs.

Example:
    >>> number("1.5B", "--tokens")
    1500000000.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence

_SUFFIX = {"k": 1e3, "K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12}


def number(text: str, what: str) -> float:
    """Parse ``1.4e9``, ``1.4B``, ``150B`` or ``7e9`` into a float."""
    t = text.strip().replace("_", "")
    mult = 1.0
    if t and t[-1] in _SUFFIX:
        mult, t = _SUFFIX[t[-1]], t[:-1]
    try:
        v = float(t) * mult
    except ValueError:
        raise ValueError(f"{what} must be a number such as 1.4e9 or 1.4B, got {text!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{what} must be finite, got {text!r}")
    return v


def pairs(items: Sequence[str] | None, what: str) -> dict[str, float]:
    """Parse ``d=x`` items (repeatable, or comma-separated) into a dict."""
    out: dict[str, float] = {}
    for item in items or []:
        for part in item.split(","):
            if not part.strip():
                continue
            if "=" not in part:
                raise ValueError(f"{what} takes name=value, got {part!r}")
            k, v = part.split("=", 1)
            out[k.strip()] = number(v, f"{what} {k.strip()}")
    return out


def scalar_or_pairs(items: Sequence[str] | None, what: str) -> float | dict[str, float] | None:
    if not items:
        return None
    if len(items) == 1 and "=" not in items[0]:
        return number(items[0], what)
    return pairs(items, what)
