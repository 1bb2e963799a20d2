"""LAW.json: fitted laws on disk, one file for one or several targets.

The file is plain JSON: ``{"format": "mixsampler-laws", "version": 1, "laws": {target: law}}``
with each law as :meth:`FittedLaw.to_dict` gives it. Floats are written with Python's shortest
round-trip repr, so loading gives back the same bits and saving again the same bytes.

Example:
    >>> save_laws("LAW.json", {"c4": res.law})  # doctest: +SKIP
    >>> load_laws("LAW.json")["c4"].predict(1e9, 2e10, h)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from laws.fitted import FittedLaw

__all__ = ["save_laws", "load_laws", "FORMAT", "VERSION"]

FORMAT = "mixsampler-laws"
VERSION = 1


def save_laws(path: str | os.PathLike[str], fitted: Mapping[str, FittedLaw]) -> Path:
    """Write laws (target -> law) to ``path``, atomically (a crash leaves the old file).

    Returns:
        The path written.
    """
    if not fitted:
        raise ValueError("fitted must hold at least one law, got none")
    for key, law in fitted.items():
        if not isinstance(law, FittedLaw):
            raise ValueError(f"fitted[{key!r}] must be a FittedLaw, got {type(law).__name__}")
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "laws": {str(k): v.to_dict() for k, v in fitted.items()},
    }
    text = json.dumps(doc, indent=2, allow_nan=True) + "\n"
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def load_laws(path: str | os.PathLike[str]) -> dict[str, FittedLaw]:
    """Read a LAW.json written by :func:`save_laws`; target -> law."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"law file {path} does not exist")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or "laws" not in doc:
        raise ValueError(f"{path}: not a law file (expected format {FORMAT!r} with 'laws')")
    if doc.get("version", VERSION) > VERSION:
        raise ValueError(f"{path}: version {doc['version']} is newer than this reader's {VERSION}")
    out: dict[str, FittedLaw] = {}
    for target, obj in doc["laws"].items():
        try:
            out[target] = FittedLaw.from_dict(obj)
        except (ValueError, TypeError, KeyError) as err:
            raise ValueError(f"{path}, law {target!r}: {err}") from None
    return out
