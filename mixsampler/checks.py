"""Argument checks shared by every constructor and verb: one wording, one definition.

Errors name the argument and echo the value, as Lightning's callbacks do. Standard library
only, so ``mixsampler.laws`` can use it without torch.

Example:
    >>> check_int("batch_size", 8)
    8
    >>> check_int("batch_size", 0)
    Traceback (most recent call last):
    ...
    ValueError: batch_size must be an integer >= 1, got 0
    >>> check_int("workers", True, low=0)
    Traceback (most recent call last):
    ...
    ValueError: workers must be an integer >= 0, got True
    >>> check_number("val_fraction", 0.1, low=0.0, high=1.0, high_open=True)
    0.1
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["check_int", "check_number"]


def check_int(
    name: str,
    value: Any,
    *,
    low: int | None = 1,
    high: int | None = None,
    allow_none: bool = False,
) -> Any:
    """Return ``value`` if it is an ``int`` (not a ``bool``) in ``[low, high]``.

    Args:
        name: the argument's name, as the user wrote it (``--workers`` or ``workers``).
        value: what was passed.
        low: smallest allowed value (inclusive); None for no lower bound.
        high: largest allowed value (inclusive); None for no upper bound.
        allow_none: accept None (and return it).

    Raises:
        ValueError: naming the argument, the allowed range and the value.
    """
    if value is None and allow_none:
        return None
    ok = isinstance(value, int) and not isinstance(value, bool)
    ok = ok and (low is None or value >= low) and (high is None or value <= high)
    if not ok:
        raise ValueError(f"{name} must be {_int_range(low, high, allow_none)}, got {value!r}")
    return value


def check_number(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    allow_none: bool = False,
) -> Any:
    """Return ``value`` if it is a finite real number (not a ``bool``) within the bounds.

    Raises:
        ValueError: naming the argument, the allowed interval and the value.
    """
    if value is None and allow_none:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        where = f" in {lo}{'-inf' if low is None else low}, {'inf' if high is None else high}{hi}"
        if low is None and high is None:
            where = ""
        none = " or None" if allow_none else ""
        raise ValueError(f"{name} must be a finite number{where}{none}, got {value!r}")
    return value


def _int_range(low: int | None, high: int | None, allow_none: bool) -> str:
    if low is not None and high is not None:
        text = f"an integer in [{low}, {high}]"
    elif low is not None:
        text = f"an integer >= {low}"
    elif high is not None:
        text = f"an integer <= {high}"
    else:
        text = "an integer"
    return text + (" or None" if allow_none else "")
