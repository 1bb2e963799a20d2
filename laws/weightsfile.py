"""WEIGHTS.json: a training mixture on disk, with how it was found and whether it converged.

The one reader and writer of the format; ``mixsampler optimize``, ``MixtureWeights`` and the
demo all go through it. Strict JSON (no NaN or Infinity), versioned::

    {"format": "mixsampler-weights", "version": 1,
     "weights": {"arxiv": 0.3, "book": 0.7}, "success": true, "gap": 1e-9, "message": "...",
     "model_size": 7e9, "n_tokens": 1.5e11, "objective": {...}, "predicted_loss": {...},
     "law": "joint", "law_file": "LAW.json", "constraints": {"lower": {...}, "upper": {...}},
     "intervals": null, "warnings": [], ...}

Only ``weights`` is required. A file without ``format`` (hand-written, or from before the
format was versioned) reads as version 1. Keys this version does not know are kept in
:attr:`WeightsFile.extra` and written back.

Example:
    >>> wf = WeightsFile.from_result(laws.optimize(fitted, 7e9, 1.5e11), law_file="LAW.json")
    ... # doctest: +SKIP
    >>> write_weights("WEIGHTS.json", wf)  # doctest: +SKIP
    >>> read_weights("WEIGHTS.json").weights  # doctest: +SKIP
    mappingproxy({'arxiv': 0.31, 'book': 0.69})
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from mixsampler.laws.io import (
    check_format,
    did_you_mean,
    json_bool,
    json_finite_tree,
    json_number,
    json_object,
    json_str,
    json_strings,
    read_json,
    write_json,
)
from mixsampler.laws.schema import WEIGHT_SUM_TOL, FormatError, bad_input

__all__ = [
    "FORMAT",
    "VERSION",
    "UnconvergedWeightsError",
    "WeightsFile",
    "read_weights",
    "write_weights",
]

FORMAT = "mixsampler-weights"
VERSION = 1


class UnconvergedWeightsError(FormatError):
    """WEIGHTS.json says the optimizer did not certify its weights (``success: false``)."""


def _frozen(m: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(m or {}))


@dataclass(frozen=True)
class WeightsFile:
    """The content of a WEIGHTS.json, immutable.

    Attributes:
        weights: domain -> weight, summing to 1.
        success: whether the optimum was certified to tolerance (True for hand-written weights,
            which claim no optimum).
        gap: the optimizer's duality gap at the weights (None: not from an optimizer).
        message: what the optimizer reported.
        model_size: N the weights are for.
        n_tokens: D the weights are for.
        objective: target -> weight of the objective.
        predicted_loss: target -> predicted loss at the weights.
        law: the law name (or target -> name when they differ).
        law_file: the LAW.json optimized over.
        constraints: ``{"lower": {d: x}, "upper": {d: x}}`` used by the optimizer.
        intervals: bootstrap intervals (``optimize --bootstrap``), or None.
        warnings: warnings a user must see (the laws' identifiability warnings, ...).
        fun: the objective's value.
        nit: optimizer iterations.
        source: where the weights come from when not from ``optimize`` (``"uniform"``, ...).
        search: how the optimum was searched (``{"label": "global" or "best of S starts, B
            basins", "n_starts", "n_basins", "convex"}``), or None.
        trust_region: the trust region the weights were confined to (``{"kind": "range",
            "margin", "lower", "upper"}`` or ``{"kind": "none", "why"}``), or None.
        decision: the gains over the baselines against the law's error, the law's trust
            issues and the extrapolation report (``laws.decision.Decision.to_json``), or None.
        n_tokens_unit: what ``n_tokens`` counts (``"tokens"`` or ``"samples"``), or None.
        extra: other keys, kept as they are (finite JSON values).

    Example:
        >>> wf = WeightsFile({"a": 0.25, "b": 0.75})
        >>> wf.weights["b"], wf.success
        (0.75, True)
    """

    weights: Mapping[str, float]
    success: bool = True
    gap: float | None = None
    message: str = ""
    model_size: float | None = None
    n_tokens: float | None = None
    objective: Mapping[str, float] = field(default_factory=dict)
    predicted_loss: Mapping[str, float] = field(default_factory=dict)
    law: str | Mapping[str, str] | None = None
    law_file: str | None = None
    constraints: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    intervals: Mapping[str, Any] | None = None
    warnings: tuple[str, ...] = ()
    fun: float | None = None
    nit: int | None = None
    source: str | None = None
    search: Mapping[str, Any] | None = None
    trust_region: Mapping[str, Any] | None = None
    decision: Mapping[str, Any] | None = None
    n_tokens_unit: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        put = object.__setattr__
        put(self, "weights", _frozen({str(k): float(v) for k, v in self.weights.items()}))
        for name in ("objective", "predicted_loss", "extra"):
            put(self, name, _frozen(getattr(self, name)))
        put(self, "constraints", _frozen({k: _frozen(v) for k, v in self.constraints.items()}))
        if isinstance(self.law, Mapping):
            put(self, "law", _frozen(self.law))
        for name in ("intervals", "search", "trust_region", "decision"):
            if getattr(self, name) is not None:
                put(self, name, _frozen(getattr(self, name)))
        put(self, "warnings", tuple(self.warnings))
        # Same checks as reading: a WeightsFile in memory is one that would load from disk.
        _check(Path("<WeightsFile>"), self.to_dict())

    @classmethod
    def from_result(cls, res: Any, **extra: Any) -> WeightsFile:
        """From a :class:`laws.optimize.OptimizeResult`; ``extra`` sets fields or extra keys.

        Example:
            >>> WeightsFile.from_result(res, law_file="LAW.json", seed=0)  # doctest: +SKIP
        """
        fields = {f.name for f in dataclasses.fields(cls)}
        kw: dict[str, Any] = {
            "weights": dict(res.weights),
            "success": bool(res.success),
            "gap": float(res.gap),
            "message": str(res.message),
            "model_size": float(res.model_size),
            "n_tokens": float(res.n_tokens),
            "objective": dict(res.objective),
            "predicted_loss": dict(res.predicted_loss),
            "law": res.law if isinstance(res.law, str) else dict(res.law),
            "constraints": {"lower": dict(res.lower), "upper": dict(res.upper)},
            "warnings": tuple(getattr(res, "warnings", ())),
            "fun": float(res.fun),
            "nit": int(res.nit),
        }
        more = dict(kw.pop("extra", {}) or {})
        for k, v in extra.items():
            if k in fields and k != "extra":
                kw[k] = v
            elif k == "extra":
                more.update(v)
            else:
                more[k] = v
        return cls(**kw, extra=more)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (plain dicts and lists), with format and version first."""
        doc: dict[str, Any] = {"format": FORMAT, "version": VERSION}
        for f in dataclasses.fields(self):
            if f.name != "extra":
                doc[f.name] = _plain(getattr(self, f.name))
        for k, v in self.extra.items():
            if k in doc:
                raise ValueError(f"WeightsFile.extra key {k!r} is a field of WEIGHTS.json")
            doc[k] = _plain(v)
        return doc


def _plain(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def write_weights(path: str | os.PathLike[str], wf: WeightsFile) -> Path:
    """Write ``wf`` to ``path`` atomically, as strict JSON; returns the path."""
    if not isinstance(wf, WeightsFile):
        raise TypeError(f"wf must be a WeightsFile, got {type(wf).__name__}")
    return write_json(path, wf.to_dict(), "weights file")


def read_weights(path: str | os.PathLike[str], *, allow_unconverged: bool = False) -> WeightsFile:
    """Read and check a WEIGHTS.json.

    Args:
        path: the file.
        allow_unconverged: accept ``"success": false`` (weights the optimizer did not certify).

    Raises:
        FileNotFoundError: no such file.
        FormatError: not strict JSON, another format, or a field of the wrong type or value
            (naming the file, the field and the value).
        UnconvergedWeightsError: ``success`` is false and ``allow_unconverged`` is not set.

    Example:
        >>> read_weights("WEIGHTS.json").weights  # doctest: +SKIP
    """
    path = Path(path)
    doc = read_json(path, "weights file")
    if isinstance(doc, dict) and "format" not in doc:
        if "weights" not in doc:
            raise _no_weights(path, doc)
        doc = {"format": FORMAT, **doc}  # hand-written or pre-versioning: version 1
    wf = WeightsFile(**_check(path, doc))
    if not wf.success and not allow_unconverged:
        gap = "" if wf.gap is None else f", gap {wf.gap:.3g}"
        raise UnconvergedWeightsError(
            f"{path}: the optimizer did not converge on these weights (success: false{gap}: "
            f"{wf.message or 'no message'}); rerun `mixsampler optimize` (other --seed, looser "
            "constraints) or pass allow_unconverged=True (--allow-unconverged) to use them anyway"
        )
    return wf


def _check(path: Path, doc: Any) -> dict[str, Any]:
    """Check a document's fields; the WeightsFile keyword arguments."""
    check_format(path, doc, FORMAT, VERSION, "weights file")
    if "weights" not in doc:
        raise _no_weights(path, doc)
    kw: dict[str, Any] = {"weights": _shares(path, doc["weights"], "weights")}
    total = math.fsum(kw["weights"].values())
    if abs(total - 1.0) > WEIGHT_SUM_TOL:
        raise bad_input(
            path, f"must sum to 1 (tolerance {WEIGHT_SUM_TOL:g})", field="weights", value=total
        )
    opt = {k: v for k, v in doc.items() if v is not None}
    if "success" in opt:
        kw["success"] = json_bool(path, opt["success"], "success")
    for k, rule in (("gap", "nonnegative"), ("model_size", "positive"), ("n_tokens", "positive")):
        if k in opt:
            kw[k] = json_number(path, opt[k], k, **{rule: True})
    if "fun" in opt:
        kw["fun"] = json_number(path, opt["fun"], "fun")
    if "nit" in opt:
        kw["nit"] = int(json_number(path, opt["nit"], "nit", integer=True, nonnegative=True))
    for k in ("message", "law_file", "source", "n_tokens_unit"):
        if k in opt:
            kw[k] = json_str(path, opt[k], k, nonempty=k != "message")
    for k in ("objective", "predicted_loss"):
        if k in opt:
            kw[k] = _numbers(path, opt[k], k, nonnegative=True)
    if "law" in opt:
        law = opt["law"]
        kw["law"] = (
            {t: json_str(path, v, f"law.{t}") for t, v in json_object(path, law, "law").items()}
            if isinstance(law, dict)
            else json_str(path, law, "law")
        )
    if "constraints" in opt:
        cons = json_object(path, opt["constraints"], "constraints")
        kw["constraints"] = {
            k: _numbers(path, v, f"constraints.{k}", nonnegative=True) for k, v in cons.items()
        }
    for k in ("intervals", "search", "trust_region", "decision"):
        if k in opt:
            kw[k] = json_object(path, opt[k], k)
            json_finite_tree(path, kw[k], k)
    if "warnings" in opt:
        kw["warnings"] = json_strings(path, opt["warnings"], "warnings", unique=False)
    known = {f.name for f in dataclasses.fields(WeightsFile)} | {"format", "version"}
    extra = {k: v for k, v in doc.items() if k not in known}
    for k in extra:
        # Unknown keys are kept (notes, a callback's record), but a misspelt field such as
        # "sucess": false must not pass as a note while success defaults to true.
        hint = did_you_mean(k, known - {"format", "version"})
        if hint:
            raise bad_input(path, f"unknown key{hint}", field=k, value=extra[k])
    if "extra" in doc:
        raise bad_input(path, "'extra' is not a key of WEIGHTS.json", field="extra")
    json_finite_tree(path, extra, "")
    kw["extra"] = extra
    return kw


def _no_weights(path: Path, doc: dict[str, Any]) -> FormatError:
    return bad_input(
        path,
        'a weights file must hold {"weights": {domain: weight}, ...}; it has the keys',
        value=sorted(doc)[:8],
    )


def _numbers(path: Path, obj: Any, at: str, *, nonnegative: bool = False) -> dict[str, float]:
    obj = json_object(path, obj, at)
    return {
        str(k): json_number(path, v, f"{at}.{k}", nonnegative=nonnegative) for k, v in obj.items()
    }


def _shares(path: Path, obj: Any, at: str) -> dict[str, float]:
    out = _numbers(path, obj, at, nonnegative=True)
    if not out:
        raise bad_input(path, "must name at least one domain", field=at, value=obj)
    for k, v in out.items():
        if v > 1:
            raise bad_input(path, "a weight must be in [0, 1]", field=f"{at}.{k}", value=v)
    return out
