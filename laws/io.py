"""LAW.json: fitted laws on disk, one file for one or several targets; strict JSON helpers.

The file is strict JSON (no NaN or Infinity)::

    {"format": "mixsampler-laws", "version": 1, "laws": {target: law}}

with each law as :meth:`FittedLaw.to_dict` gives it. Floats are written with Python's shortest
round-trip repr, so loading gives back the same bits and saving again the same bytes. Reading
checks every field's type and value and names the file, the field path and the value; a file
of version 1 without ``"version"`` (written before it was recorded) still reads.

Example:
    >>> save_laws("LAW.json", {"c4": res.law})  # doctest: +SKIP
    >>> load_laws("LAW.json")["c4"].predict(1e9, 2e10, h)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mixsampler.atomic import atomic_write
from mixsampler.laws.fitted import FittedLaw
from mixsampler.laws.forms import LAWS, Form
from mixsampler.laws.schema import bad_input, check_name

__all__ = [
    "FORMAT",
    "VERSION",
    "check_format",
    "did_you_mean",
    "json_bool",
    "json_finite_tree",
    "json_number",
    "json_object",
    "json_str",
    "json_strings",
    "load_laws",
    "read_json",
    "save_laws",
    "write_json",
]

FORMAT = "mixsampler-laws"
VERSION = 1


# --- strict JSON files ------------------------------------------------------------------------


def read_json(path: str | os.PathLike[str], what: str) -> Any:
    """Parse a strict JSON file: no NaN/Infinity, no duplicated keys; errors name the file.

    Args:
        path: the file.
        what: what it is, for messages (``"law file"``).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} {path} does not exist")
    if path.is_dir():
        raise bad_input(path, f"is a directory, expected a {what}")

    def no_constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON (strict JSON has no NaN or Infinity)")

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        dups = sorted({k for k in keys if keys.count(k) > 1})
        if dups:
            raise ValueError(f"duplicated key(s) {dups}")
        return dict(pairs)

    try:
        text = path.read_text(encoding="utf-8")
        return json.loads(text, parse_constant=no_constant, object_pairs_hook=no_duplicates)
    except UnicodeDecodeError:
        raise bad_input(path, f"not a {what}: not UTF-8 text") from None
    except json.JSONDecodeError as err:
        raise bad_input(path, f"not valid JSON ({err})") from None
    except ValueError as err:
        raise bad_input(path, f"not valid JSON: {err}") from None
    except RecursionError:
        raise bad_input(path, "not valid JSON: nested too deeply") from None


def write_json(path: str | os.PathLike[str], doc: Any, what: str) -> Path:
    """Write strict JSON atomically (a crash leaves the old file); NaN/Infinity are an error."""
    path = Path(path)
    if path.is_dir():
        raise bad_input(path, f"is a directory; name the {what} file to write")
    try:
        text = json.dumps(doc, indent=2, allow_nan=False) + "\n"
    except ValueError as err:
        raise bad_input(path, f"cannot write a non-finite number to a {what} ({err})") from None
    return atomic_write(path, text)


def check_format(path: Path, doc: Any, fmt: str, version: int, what: str) -> int:
    """Check the ``format``/``version`` header of a document; return its version."""
    if not isinstance(doc, dict):
        raise bad_input(path, f"not a {what}: expected a JSON object", value=_kind(doc))
    if doc.get("format") != fmt:
        raise bad_input(
            path,
            f"not a {what} (expected format {fmt!r})",
            field="format",
            value=doc.get("format", "(none)"),
        )
    v = doc.get("version", 1)
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise bad_input(path, "must be a positive integer", field="version", value=v)
    if v > version:
        raise bad_input(
            path,
            f"version {v} is newer than this reader's {version}; upgrade mixsampler",
            field="version",
        )
    return v


def did_you_mean(name: str, options: Any) -> str:
    """`` (did you mean 'x'?)`` for a near-miss of one of ``options``, else ``""``."""
    import difflib

    close = difflib.get_close_matches(str(name), [str(o) for o in options], n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _kind(v: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string"}.get(type(v), type(v).__name__)


def json_object(path: Path, obj: Any, field: str) -> dict[str, Any]:
    """``obj`` if it is a JSON object, else an error naming the field."""
    if not isinstance(obj, dict):
        raise bad_input(path, f"must be an object, not {_kind(obj)}", field=field, value=obj)
    return obj


def json_str(path: Path, obj: Any, field: str, *, nonempty: bool = True) -> str:
    """``obj`` if it is a (non-empty) string."""
    if not isinstance(obj, str) or (nonempty and not obj):
        raise bad_input(path, "must be a non-empty string", field=field, value=obj)
    return obj


def json_strings(path: Path, obj: Any, field: str, *, unique: bool = True) -> tuple[str, ...]:
    """``obj`` if it is a list of non-empty strings (unique by default)."""
    if not isinstance(obj, list):
        raise bad_input(
            path, f"must be a list of strings, not {_kind(obj)}", field=field, value=obj
        )
    out = tuple(json_str(path, v, f"{field}[{i}]") for i, v in enumerate(obj))
    if unique and len(set(out)) != len(out):
        dups = sorted({v for v in out if out.count(v) > 1})
        raise bad_input(path, "must not repeat names", field=field, value=dups)
    return out


def json_bool(path: Path, obj: Any, field: str) -> bool:
    """``obj`` if it is ``true`` or ``false`` (a string ``"false"`` is not)."""
    if not isinstance(obj, bool):
        raise bad_input(path, "must be true or false", field=field, value=obj)
    return obj


def json_number(
    path: Path,
    obj: Any,
    field: str,
    *,
    positive: bool = False,
    nonnegative: bool = False,
    integer: bool = False,
) -> float:
    """``obj`` as a float if it is a finite JSON number (not a bool) meeting the bounds."""
    kind = "an integer" if integer else "a number"
    if (
        isinstance(obj, bool)
        or not isinstance(obj, (int, float))
        or (integer and not isinstance(obj, int))
    ):
        raise bad_input(path, f"must be {kind}", field=field, value=obj)
    x = float(obj) if not isinstance(obj, int) or abs(obj) < 2**1023 else math.inf
    if not math.isfinite(x):
        raise bad_input(
            path, f"must be a finite {kind[2:] if integer else 'number'}", field=field, value=obj
        )
    if positive and not x > 0:
        raise bad_input(path, f"must be {kind} > 0", field=field, value=obj)
    if nonnegative and not x >= 0:
        raise bad_input(path, f"must be {kind} >= 0", field=field, value=obj)
    return x


# --- LAW.json ---------------------------------------------------------------------------------


def save_laws(path: str | os.PathLike[str], fitted: Mapping[str, FittedLaw]) -> Path:
    """Write laws (target -> law) to ``path``, atomically, as strict JSON.

    Raises:
        FormatError: a law whose content would not read back (a NaN parameter, a bad field),
            naming the field; nothing is written then.

    Returns:
        The path written.
    """
    path = Path(path)
    if not isinstance(fitted, Mapping) or not fitted:
        raise ValueError("fitted must hold at least one law, got none")
    for key, law in fitted.items():
        if not isinstance(law, FittedLaw):
            raise ValueError(f"fitted[{key!r}] must be a FittedLaw, got {type(law).__name__}")
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "laws": {str(k): v.to_dict() for k, v in fitted.items()},
    }
    # The reader's checks, before writing: never write a file that would not load.
    _check_laws(path, doc)
    return write_json(path, doc, "law file")


def load_laws(path: str | os.PathLike[str]) -> dict[str, FittedLaw]:
    """Read a LAW.json written by :func:`save_laws`; target -> law.

    Raises:
        FileNotFoundError: no such file.
        FormatError: not strict JSON, not a law file, or a field of the wrong type or value
            (the message names the file, the field path and the value).
    """
    path = Path(path)
    doc = read_json(path, "law file")
    return _check_laws(path, doc)


def _check_laws(path: Path, doc: Any) -> dict[str, FittedLaw]:
    check_format(path, doc, FORMAT, VERSION, "law file")
    if "laws" not in doc:
        raise bad_input(path, f"not a law file (expected format {FORMAT!r} with 'laws')")
    laws = json_object(path, doc["laws"], "laws")
    unknown = sorted(set(doc) - {"format", "version", "laws"})
    if unknown:
        raise bad_input(
            path, "unknown top-level key(s); a law file has format, version, laws", value=unknown
        )
    if not laws:
        raise bad_input(path, "must hold at least one law", field="laws", value=laws)
    return {target: _check_law(path, obj, f"laws.{target}") for target, obj in laws.items()}


def _check_law(path: Path, obj: Any, at: str) -> FittedLaw:
    obj = json_object(path, obj, at)
    for key in ("law", "target", "domains", "parameters"):
        if key not in obj:
            raise bad_input(path, f"a saved law needs the key {key!r}", field=at, value=sorted(obj))
    law = json_str(path, obj["law"], f"{at}.law")
    if law not in LAWS:
        raise bad_input(
            path, f"unknown law; laws are {', '.join(LAWS)}", field=f"{at}.law", value=law
        )
    json_str(path, obj["target"], f"{at}.target")
    domains = json_strings(path, obj["domains"], f"{at}.domains")
    if not domains:
        raise bad_input(path, "must name at least one domain", field=f"{at}.domains", value=[])
    for d in domains:  # the run table's name rules: a law names only domains a table can hold
        check_name(d, "domain", f"{path}, field {at}.domains")
    params = json_object(path, obj["parameters"], f"{at}.parameters")
    json_bool(path, obj.get("use_n", True), f"{at}.use_n")
    json_bool(path, obj.get("use_d", True), f"{at}.use_d")
    td = obj.get("target_domain")
    if td is not None and json_str(path, td, f"{at}.target_domain") not in domains:
        raise bad_input(
            path,
            f"must be one of the domains {list(domains)}",
            field=f"{at}.target_domain",
            value=td,
        )
    scales = {
        k: json_number(path, obj[k], f"{at}.{k}", positive=True)
        for k in ("n_scale", "d_scale")
        if k in obj
    }
    fit = json_object(path, obj.get("fit", {}), f"{at}.fit")
    fingerprint = obj.get("fingerprint", "")
    json_str(path, fingerprint, f"{at}.fingerprint", nonempty=False)
    if "warnings" in obj:
        json_strings(path, obj["warnings"], f"{at}.warnings", unique=False)
    for name, v in params.items():
        json_number(path, v, f"{at}.parameters.{name}")
    json_finite_tree(path, fit, f"{at}.fit")
    try:
        fitted = FittedLaw.from_dict({**obj, **scales})
    except (ValueError, TypeError, KeyError) as err:
        raise bad_input(path, str(err), field=at) from None
    # A misspelt key ("use_N": false) would be ignored and its default used: refuse keys the
    # law does not write (to_dict's keys, so a field FittedLaw adds is known at once).
    unknown = sorted(set(obj) - set(fitted.to_dict()))
    if unknown:
        raise bad_input(
            path,
            f"unknown key(s){did_you_mean(unknown[0], fitted.to_dict())}; a law has "
            f"{', '.join(fitted.to_dict())}",
            field=at,
            value=unknown,
        )
    form: Form = fitted.form
    # The law's positive parameters (C, A, B, exponents) are fitted in log space; a negative
    # one is not a law the fit could have produced, and may predict a falling-to-minus-infinity
    # loss.
    for name, pos in zip(form.names, form.positive, strict=True):
        json_number(path, params[name], f"{at}.parameters.{name}", positive=bool(pos))
    return fitted


def json_finite_tree(path: Path, obj: Any, at: str) -> None:
    """Check that every number inside a JSON value is finite (and that it is a JSON value).

    Records such as a law's ``fit`` or WEIGHTS.json's extra keys may hold anything JSON can,
    but a NaN or Infinity there would be written as invalid JSON or mislead whoever reads it.
    """
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return
    if isinstance(obj, (int, float)):
        json_number(path, obj, at or "(top level)")
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            json_finite_tree(path, v, f"{at}.{k}" if at else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            json_finite_tree(path, v, f"{at}[{i}]")
    else:
        raise bad_input(path, "must be a JSON value", field=at, value=type(obj).__name__)
