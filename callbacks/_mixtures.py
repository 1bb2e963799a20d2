"""Mixtures as :class:`mixsampler.callbacks.mixture_weights.MixtureWeights` handles them, without a
Trainer.

Owns where a mixture comes from (a checked schedule, a WEIGHTS.json, a LAW.json solved for N and
D), how two mixtures compare on resume (:class:`OnResume`), how one prints, and the atomic write
of ``mixture_weights.json``. The callback's hooks and state stay in
:mod:`mixsampler.callbacks.mixture_weights`.

Example:
    >>> _check_schedule([{"step": 0, "weights": {"a": 1}}, (10, {"a": 1, "b": 1})])
    [(0, {'a': 1.0}), (10, {'a': 1.0, 'b': 1.0})]
"""

from __future__ import annotations

import enum
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.utilities import rank_zero_warn

from mixsampler.callbacks._common import check_weights


class OnResume(str, enum.Enum):
    """What a resume does when this run's arguments give other weights than the checkpoint's."""

    ERROR = "error"  # refuse: a silent choice either way trains on a mixture nobody asked for
    CHECKPOINT = "checkpoint"  # keep training on the checkpoint's mixture
    NEW = "new"  # train on the new weights from the restored step on


# Two weights that differ by less are the same mixture (a law re-solved on resume).
_SAME = 1e-6


def _same(a: Mapping[str, float], b: Mapping[str, float]) -> bool:
    ta, tb = sum(a.values()), sum(b.values())
    return set(a) == set(b) and all(abs(a[d] / ta - b[d] / tb) <= _SAME for d in a)


def _same_schedule(a: list, b: list) -> bool:
    pairs = zip(a, b, strict=False)
    return len(a) == len(b) and all(s == t and _same(u, v) for (s, u), (t, v) in pairs)


def _fmt(weights: Mapping[str, float] | None) -> str:
    if not weights:
        return "no weights"
    total = sum(weights.values())
    return "{" + ", ".join(f"{d}: {w / total:.4g}" for d, w in weights.items()) + "}"


def _read_weights_file(path: Path, allow_unconverged: bool) -> dict[str, float]:
    from mixsampler.laws.weightsfile import read_weights

    # Its UnconvergedWeightsError (a ValueError) says what to do; the weights sum to 1.
    wf = read_weights(path, allow_unconverged=allow_unconverged)
    return check_weights(dict(wf.weights), f"{path}: weights")


def _check_schedule(schedule: Any) -> list[tuple[int, dict[str, float]]]:
    if schedule is None:
        return []
    if isinstance(schedule, (str, Mapping)) or not isinstance(schedule, Sequence):
        raise ValueError(
            f"schedule must be a list of {{'step': int, 'weights': {{...}}}}, got {schedule!r}"
        )
    out: list[tuple[int, dict[str, float]]] = []
    for i, entry in enumerate(schedule):
        if isinstance(entry, Mapping):
            step, weights = entry.get("step"), entry.get("weights")
        elif isinstance(entry, Sequence) and len(entry) == 2:
            step, weights = entry
        else:
            raise ValueError(
                f"schedule[{i}] must be {{'step': int, 'weights': ...}}, got {entry!r}"
            )
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"schedule[{i}]['step'] must be an int >= 0, got {step!r}")
        if out and step <= out[-1][0]:
            raise ValueError(
                f"schedule steps must increase, got {step} after {out[-1][0]} at schedule[{i}]"
            )
        out.append((step, check_weights(weights, f"schedule[{i}]['weights']")))
    return out


def solve_law(
    law_file: Path,
    n: int,
    planned_tokens: float,
    objective: Mapping[str, float] | None,
    min_weight: float | Mapping[str, float],
    optimize_kwargs: Mapping[str, Any],
    allow_unconverged: bool,
) -> tuple[dict[str, float], dict[str, Any]]:
    """The weights minimizing ``objective`` of ``law_file`` at N=n, D=planned_tokens, and the
    optimum's WEIGHTS.json content; an unconverged optimum is refused unless allowed."""
    from mixsampler import laws

    fitted = laws.load_laws(law_file)
    result = laws.optimize(
        fitted,
        model_size=float(n),
        n_tokens=float(planned_tokens),
        objective=objective,
        min_weight=min_weight,
        **optimize_kwargs,
    )
    if not result.success:
        message = (
            f"MixtureWeights: the optimum of law_file {str(law_file)!r} did not"
            f" converge at N={n}, D={planned_tokens:g}: {result.message}"
        )
        if not allow_unconverged:
            raise ValueError(
                f"{message}; its weights may be far from optimal. Fix the law or the"
                " optimize_kwargs (more n_starts / max_iter), or pass"
                " allow_unconverged=True to train on them anyway"
            )
        rank_zero_warn(message + "; training on them (allow_unconverged=True)")
    return {d: float(w) for d, w in result.weights.items()}, result.to_json()


def write_json(folder: Path, filename: str, content: dict[str, Any]) -> None:
    """Write ``content`` to ``folder/filename`` atomically (a temporary file, then a rename)."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (filename + ".tmp")
    tmp.write_text(json.dumps(content, indent=2))
    os.replace(tmp, folder / filename)
