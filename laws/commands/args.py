"""Argument checks shared by the verbs: numbers such as ``1.4B``, ``d=x`` pairs, output paths.

Each raises a ValueError naming the argument and echoing the value, which the command line
turns into one line and exit status 2.

Example:
    >>> number("1.5B", "--tokens")
    1500000000.0
    >>> pairs(["a=1,b=0.5"], "--objective")
    {'a': 1.0, 'b': 0.5}
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mixsampler.laws.schema import weight_column

if TYPE_CHECKING:
    from mixsampler.laws.fitted import FittedLaw
    from mixsampler.laws.runtable import RunTable

__all__ = [
    "check_table_domains",
    "load_table",
    "number",
    "output_file",
    "pairs",
    "scalar_or_pairs",
]

_SUFFIX = {"k": 1e3, "K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12}


def number(text: str, what: str) -> float:
    """Parse ``1.4e9``, ``1.4B``, ``150B`` or ``7e9`` into a finite float."""
    t = str(text).strip().replace("_", "")
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


def pairs(
    items: Sequence[str] | None, what: str, *, names: Collection[str] | None = None
) -> dict[str, float]:
    """Parse ``d=x`` items (repeatable, or comma-separated) into a dict.

    Args:
        items: the argument's values, e.g. ``["a=1,b=2", "c=3"]``.
        what: the argument, for messages (``--objective``).
        names: the names allowed (targets, domains); None accepts any.

    Raises:
        ValueError: an item without ``=``, an empty or unknown name, a name given twice
            (``a=1,a=5`` is an error, not "the last wins"), or a value that is not a number.
    """
    out: dict[str, float] = {}
    for item in items or []:
        for part in item.split(","):
            if not part.strip():
                continue
            if "=" not in part:
                raise ValueError(f"{what} takes name=value, got {part!r}")
            k, v = (s.strip() for s in part.split("=", 1))
            if not k:
                raise ValueError(f"{what} takes name=value, got {part!r} (no name)")
            if k in out:
                raise ValueError(f"{what} names {k!r} twice ({k}={out[k]:g} and {part.strip()})")
            if names is not None and k not in names:
                raise ValueError(
                    f"{what} names {k!r}, which is not one of {', '.join(sorted(names))}"
                )
            out[k] = number(v, f"{what} {k}")
    return out


def scalar_or_pairs(
    items: Sequence[str] | None, what: str, *, names: Collection[str] | None = None
) -> float | dict[str, float] | None:
    """One number for every name, or ``d=x`` pairs (see :func:`pairs`); None when not given."""
    if not items:
        return None
    if len(items) == 1 and "=" not in items[0]:
        return number(items[0], what)
    return pairs(items, what, names=names)


def output_file(text: str, what: str, *, stdout: bool = False) -> Path | None:
    """Check an output path before any work: not a folder, and its folder exists.

    Returns:
        The path, or None for ``-`` when ``stdout`` is allowed.
    """
    if stdout and text == "-":
        return None
    if not text:
        raise ValueError(f"{what} must name a file, got {text!r}")
    path = Path(text)
    if path.is_dir():
        raise ValueError(f"{what} {text!r} is a folder; name a file to write")
    parent = path.parent if str(path.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise ValueError(f"{what} {text!r}: {str(parent)!r} is a file, not a folder")
    if not parent.is_dir():
        raise ValueError(f"{what} {text!r}: the folder {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ValueError(f"{what} {text!r}: not writable (permission denied)")
    return path


def load_table(paths: Sequence[str], where: str | None) -> RunTable:
    """``load_runs``, and an error when no row is left (a NaN score or an empty file is not a
    result)."""
    from mixsampler.laws.runtable import load_runs

    table = load_runs(paths, where=where)
    if len(table) == 0:
        raise ValueError(
            f"no rows left in {', '.join(map(str, paths))} after --where {where!r}; loosen "
            "the filter"
        )
    return table


def check_table_domains(fitted: Mapping[str, FittedLaw], table: RunTable, law_file: str) -> None:
    """The table's mixtures must be over the laws' domains.

    A domain the laws do not know, with weight in some row, would be dropped from those rows'
    mixtures and their predictions silently wrong.
    """
    for t, law in fitted.items():
        missing = [d for d in law.domains if d not in table.domains]
        if missing:
            raise ValueError(
                f"the law for {t!r} in {law_file} needs weight columns for "
                f"{', '.join(missing)}; {', '.join(table.files)} have {', '.join(table.domains)}"
            )
        for j, d in enumerate(table.domains):
            if d in law.domains:
                continue
            used = np.flatnonzero(table.weights[:, j] > 0)
            if used.size:
                src, line = table.sources[used[0]] if table.sources else ("the table", 0)
                raise ValueError(
                    f"{src}, row {line}, column {weight_column(d)}: domain {d!r} has weight "
                    f"{table.weights[used[0], j]:g}, but the law for {t!r} in {law_file} is "
                    f"over {', '.join(law.domains)} only"
                )
