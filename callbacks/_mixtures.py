"""Mixtures as :class:`mixsampler.callbacks.mixture_weights.MixtureWeights` handles them, without a
Trainer.

Owns where a mixture comes from (a checked schedule, a WEIGHTS.json, a LAW.json solved for N and
D), how two mixtures compare on resume (:class:`OnResume`), how one prints, and the atomic write
of ``mixture_weights.json``. The callback's hooks and state stay in
:mod:`mixsampler.callbacks.mixture_weights`.

Example:
    >>> check_schedule([{"step": 0, "weights": {"a": 1}}, (10, {"a": 1, "b": 1})])
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
from mixsampler.checks import check_int


class OnResume(str, enum.Enum):
    """What a resume does when this run's arguments give other weights than the checkpoint's."""

    ERROR = "error"  # refuse: a silent choice either way trains on a mixture nobody asked for
    CHECKPOINT = "checkpoint"  # keep training on the checkpoint's mixture
    NEW = "new"  # train on the new weights from the restored step on


# Two weights that differ by less are the same mixture (a law re-solved on resume).
_SAME = 1e-6


def same_weights(a: Mapping[str, float], b: Mapping[str, float]) -> bool:
    ta, tb = sum(a.values()), sum(b.values())
    return set(a) == set(b) and all(abs(a[d] / ta - b[d] / tb) <= _SAME for d in a)


def same_schedule(a: list, b: list) -> bool:
    pairs = zip(a, b, strict=False)
    return len(a) == len(b) and all(s == t and same_weights(u, v) for (s, u), (t, v) in pairs)


def fmt_weights(weights: Mapping[str, float] | None) -> str:
    if not weights:
        return "no weights"
    total = sum(weights.values())
    return "{" + ", ".join(f"{d}: {w / total:.4g}" for d, w in weights.items()) + "}"


def read_weights_file(path: Path, allow_unconverged: bool) -> tuple[dict[str, float], Any]:
    """The weights of a WEIGHTS.json (summing to 1) and the whole record (a ``WeightsFile``)."""
    from mixsampler.laws.weightsfile import read_weights

    # Its UnconvergedWeightsError (a ValueError) says what to do; the weights sum to 1.
    wf = read_weights(path, allow_unconverged=allow_unconverged)
    return check_weights(dict(wf.weights), f"{path}: weights"), wf


class SizeMismatch(str, enum.Enum):
    """What a run does when WEIGHTS.json was solved for another N or D than the run's."""

    WARN = "warn"  # say so once, train: the weights may still be a reasonable mixture
    ERROR = "error"  # refuse: the strict mode for pipelines that must not drift
    IGNORE = "ignore"  # the user knows (a smoke test of a big run's mixture)


# Weights solved for an N or D more than this factor away are for another run.
SIZE_FACTOR = 2.0


def check_run_size(
    path: Path,
    solved: tuple[float | None, float | None],
    run: tuple[float, float | None],
    mode: SizeMismatch,
    unit: str = "tokens",
) -> str | None:
    """Compare the (N, D) a WEIGHTS.json was solved for with the run's; warn or raise.

    ``run``'s D may be None (unknown: not compared). Returns the message, or None when the
    sizes agree within :data:`SIZE_FACTOR` (or a side is unknown).

    Example:
        >>> msg = check_run_size(Path("W.json"), (66e3, 4800), (2.2e3, 320), SizeMismatch.IGNORE)
        >>> msg.split(": ", 1)[1].split(", D")[0]
        'these weights were solved for N = 6.6e+04 (the run has 2.2e+03, 30x)'
    """
    parts = []
    for what, want, have in (("N", solved[0], run[0]), ("D", solved[1], run[1])):
        if not want or not have:
            continue
        ratio = max(want / have, have / want)
        if ratio > SIZE_FACTOR:
            u = f" {unit}" if what == "D" else ""
            parts.append(f"{what} = {want:.3g}{u} (the run has {have:.3g}, {ratio:.2g}x)")
    if not parts:
        return None
    msg = f"{path}: these weights were solved for " + ", ".join(parts)
    if mode is SizeMismatch.ERROR:
        raise ValueError(
            msg + "; the optimal mixture depends on N and D. Re-solve for this run (mixsampler "
            "optimize --model-size/--tokens, or law_file=), or pass size_mismatch='warn'"
        )
    if mode is SizeMismatch.WARN:
        rank_zero_warn(
            msg + f" (more than {SIZE_FACTOR:g}x off); the optimal mixture depends on N and D: "
            "re-solve for this run, or size_mismatch='error' to refuse, 'ignore' to silence"
        )
    return msg


def check_schedule(schedule: Any) -> list[tuple[int, dict[str, float]]]:
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
        at: int = check_int(f"schedule[{i}]['step']", step, low=0)
        if out and at <= out[-1][0]:
            raise ValueError(
                f"schedule steps must increase, got {at} after {out[-1][0]} at schedule[{i}]"
            )
        out.append((at, check_weights(weights, f"schedule[{i}]['weights']")))
    return out


def solve_law(
    law_file: Path,
    n: int,
    planned_tokens: float,
    objective: Mapping[str, float] | None,
    min_weight: float | Mapping[str, float],
    optimize_kwargs: Mapping[str, Any],
    allow_unconverged: bool,
    allow_untrusted_law: bool = False,
) -> tuple[dict[str, float], dict[str, Any]]:
    """The weights minimizing ``objective`` of ``law_file`` at N=n, D=planned_tokens, and the
    optimum's WEIGHTS.json content with its decision.

    The same path as ``mixsampler optimize`` (:func:`laws.decision.decide`): an untrusted law
    or an uncertified optimum is refused unless allowed; the default objective is the mean
    over the training domains.
    """
    from mixsampler import laws
    from mixsampler.laws.decision import UnconvergedOptimumError, decide

    fitted = laws.load_laws(law_file)
    kwargs = dict(optimize_kwargs)
    natural = kwargs.pop("natural", None)
    try:
        dec = decide(
            fitted,
            model_size=float(n),
            n_tokens=float(planned_tokens),
            objective=objective,
            natural=natural,
            min_weight=min_weight,
            allow_untrusted_law=allow_untrusted_law,
            allow_unconverged=allow_unconverged,
            where=f"MixtureWeights: law_file {str(law_file)!r}",
            options=("allow_untrusted_law=True", "allow_unconverged=True"),
            **kwargs,
        )
    except UnconvergedOptimumError as e:
        raise UnconvergedOptimumError(
            f"MixtureWeights: the optimum of law_file {str(law_file)!r} did not converge at "
            f"N={n}, D={planned_tokens:g}: {e}; its weights may be far from optimal (more "
            "n_starts / max_iter in optimize_kwargs)"
        ) from None
    result = dec.result
    if not result.success:
        rank_zero_warn(
            f"MixtureWeights: the optimum of law_file {str(law_file)!r} did not converge at "
            f"N={n}, D={planned_tokens:g}: {result.message}; training on it "
            "(allow_unconverged=True)"
        )
    for line in dec.statement():
        if line.startswith(("warning", "untrusted")):
            rank_zero_warn(f"MixtureWeights: {line}")
    record = {**result.to_json(), "decision": dec.to_json()}
    return {d: float(w) for d, w in result.weights.items()}, record


def write_json(folder: Path, filename: str, content: dict[str, Any]) -> None:
    """Write ``content`` to ``folder/filename`` atomically (a temporary file, then a rename)."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (filename + ".tmp")
    tmp.write_text(json.dumps(content, indent=2))
    os.replace(tmp, folder / filename)
