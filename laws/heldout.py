"""Held-out checks of a law, and the choice of a law by them (``fit --law auto``).

Training error says how well a law fits its rows; what a user pays for is how well it
predicts rows it has not seen, further out. Three checks, each a refit on part of the rows
scored on the rest (MRE as a fraction, like ``FittedLaw.fit["train_mre"]``):

- ``n``: fit the smaller model sizes, predict the largest (needs 4 sizes: without the largest,
  3 must remain, since E + A / N^alpha has three parameters; fitted on 2 sizes the check
  measured its own under-determination, 4.7 % on noise-free rows, and refused good laws).
  ``ratio``: largest N / largest fitted N.
- ``d``: fit the first part of every run's curve (D up to ``d_fraction`` of the run's last
  D), predict the rest. ``ratio``: median over runs of last D / last fitted D.
- ``mixture``: mixtures held out by k-fold (every row of a mixture in the same fold).
  ``distance``: mean total-variation distance of a held-out mixture to its nearest fitted
  one (0.5 * L1; 0 = seen, 1 = disjoint support).

:func:`fit_checked` fits each target, runs the checks and records them in LAW.json
(``fit["heldout"]``); with several candidate laws it keeps the one with the lowest mean
held-out error (``fit["auto"]``). Training error is reported, never the criterion.

Example:
    >>> import numpy as np
    >>> from mixsampler.laws.runtable import RunTable
    >>> t = RunTable(("a", "b"), ("a",), np.array([1e8, 2e8, 4e8, 8e8]), np.array([1e9] * 4),
    ...              np.array([[0.5, 0.5]] * 4), {"a": np.array([3.0, 2.9, 2.8, 2.75])},
    ...              np.array(["r1", "r2", "r3", "r4"]))
    >>> [s.kind for s in plan_splits(t, "a", ("n", "d"))]
    ['n']
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from mixsampler.laws.fit import FitResult, FitSettings, fit
from mixsampler.laws.fitted import FittedLaw
from mixsampler.laws.law_defs import get_law
from mixsampler.laws.parallel import run_jobs
from mixsampler.laws.runtable import RunTable

__all__ = [
    "KINDS",
    "N_CHECK_SIZES",
    "SIZE_POWERS",
    "CheckedFit",
    "FitJob",
    "Split",
    "choose_law",
    "choose_size_power",
    "default_candidates",
    "fit_checked",
    "heldout_checks",
    "plan_splits",
    "run_fit_job",
    "score",
    "summarize",
]

# Powers G tried by ``fit --size-power auto`` (rows weighted by (N / max N)^G). On the paper's
# table the inner check ranked 4 first for joint, 3 or 4 for additive, and 6 below 4
# (docs/laws.md, 2026-12-04); 0 keeps the paper's unweighted fit in the running.
SIZE_POWERS: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0, 4.0)

# Model sizes the held-out N check needs: E + A/N^alpha has 3 parameters, so the sizes left to
# fit must be at least 3 (fitted on 2 the check measured its own under-determination: 4.7 % on
# noise-free synthetic rows, and refused good laws).
N_CHECK_SIZES = 4

Kind = Literal["n", "d", "mixture"]
KINDS: tuple[str, ...] = ("n", "d", "mixture")
# Laws tried by --law auto: the paper's three with N and D terms, and the full law whose N and
# D exponents depend on the mixture (the only one that can extrapolate a domain-dependent
# slope). On a table of one (N, D) those reduce to the same mixture-only variant, so the
# mixture-only laws are tried instead.
AUTO_SCALED: tuple[str, ...] = ("additive", "joint", "simple", "full")
AUTO_MIXTURE_ONLY: tuple[str, ...] = ("additive", "simple", "ye_m1", "linear")


@dataclass(frozen=True)
class Split:
    """One refit of a held-out check: fit on ``fit_rows``, score on ``held_rows``.

    Attributes:
        kind: ``n``, ``d`` or ``mixture``.
        fold: the fold number (0 for ``n`` and ``d``).
        fit_rows: boolean mask over the target's rows with a loss.
        held_rows: boolean mask, disjoint from ``fit_rows``.
        ratio: how far the held-out rows lie beyond the fitted ones (see the module doc).
    """

    kind: str
    fold: int
    fit_rows: np.ndarray
    held_rows: np.ndarray
    ratio: float | None = None


@dataclass(frozen=True)
class FitJob:
    """One fit, picklable for a worker: a law on some rows of a table."""

    table: RunTable
    law: str
    target: str
    seed: int
    settings: FitSettings
    chance_loss: float | None = None
    quiet: bool = False


def run_fit_job(job: FitJob) -> FitResult | str:
    """Fit one job; a ValueError (too few rows for the law, ...) comes back as its message.

    A ``quiet`` job (a held-out refit) logs only errors: its identifiability warnings are
    about rows nobody fits for real.
    """
    fit_log = logging.getLogger(fit.__module__)
    level = fit_log.level
    if job.quiet:
        fit_log.setLevel(logging.ERROR)
    try:
        return fit(
            job.table,
            job.law,
            job.target,
            seed=job.seed,
            settings=job.settings,
            chance_loss=job.chance_loss,
        )
    except ValueError as err:
        return str(err)
    finally:
        fit_log.setLevel(level)


def _rows_with_loss(table: RunTable, target: str) -> RunTable:
    t = target[:-5] if target.endswith("_loss") else target
    if t not in table.losses:
        raise ValueError(f"target can be {', '.join(table.targets)}, got {target!r}")
    return table.select(np.isfinite(table.losses[t]))


def _split_n(sub: RunTable) -> list[Split] | str:
    sizes = np.unique(sub.model_size)
    if len(sizes) < N_CHECK_SIZES:
        return (
            f"needs {N_CHECK_SIZES} model sizes (3 to fit, the largest to predict), the rows "
            f"have {len(sizes)}"
        )
    held = sub.model_size == sizes[-1]
    return [Split("n", 0, ~held, held, float(sizes[-1] / sizes[-2]))]


def _split_d(sub: RunTable, d_fraction: float) -> list[Split] | str:
    runs = sub.run_ids.astype(str)
    held = np.zeros(len(sub), dtype=bool)
    ratios = []
    for run in np.unique(runs):
        sel = runs == run
        d = sub.n_tokens[sel]
        if len(np.unique(d)) < 2:
            continue
        h = d > d_fraction * d.max()
        if h.all() or not h.any():
            continue
        held[np.flatnonzero(sel)[h]] = True
        ratios.append(d.max() / d[~h].max())
    if not held.any():
        return "needs runs with several token counts (a curve per run)"
    if len(np.unique(sub.n_tokens[~held])) < 2:
        return "the first part of the curves has one token count: the D term is not identified"
    return [Split("d", 0, ~held, held, float(np.median(ratios)))]


def _split_mixture(sub: RunTable, folds: int, seed: int) -> list[Split] | str:
    if folds < 2:
        return f"folds must be >= 2, got {folds}"
    key = np.round(sub.weights, 9)
    mixes, group = np.unique(key, axis=0, return_inverse=True)
    group = np.asarray(group).reshape(-1)
    if len(mixes) < 2 * folds:
        return f"needs {2 * folds} distinct mixtures for {folds} folds, the rows have {len(mixes)}"
    order = np.random.default_rng(seed).permutation(len(mixes))
    fold_of = np.empty(len(mixes), dtype=int)
    fold_of[order] = np.arange(len(mixes)) % folds
    out = []
    for f in range(folds):
        held = fold_of[group] == f
        fit_mix = mixes[fold_of != f]
        held_mix = mixes[fold_of == f]
        # Total variation to the nearest fitted mixture.
        tv = 0.5 * np.abs(held_mix[:, None, :] - fit_mix[None, :, :]).sum(-1).min(1)
        out.append(Split("mixture", f, ~held, held, float(tv.mean())))
    return out


def plan_splits(
    table: RunTable,
    target: str,
    kinds: Sequence[str] = KINDS,
    *,
    folds: int = 5,
    d_fraction: float = 0.5,
    seed: int = 0,
    skipped: dict[str, str] | None = None,
) -> list[Split]:
    """The refits of the held-out checks ``kinds`` that the rows of ``target`` allow.

    A check the rows do not allow is left out, with its reason in ``skipped``; masks are over
    the rows with a loss for ``target`` (in table order).
    """
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise ValueError(f"held-out kinds can be {', '.join(KINDS)}, got {bad[0]!r}")
    if not 0 < d_fraction < 1:
        raise ValueError(f"d_fraction must be in (0, 1), got {d_fraction}")
    sub = _rows_with_loss(table, target)
    out: list[Split] = []
    for kind in kinds:
        got = (
            _split_n(sub)
            if kind == "n"
            else _split_d(sub, d_fraction)
            if kind == "d"
            else _split_mixture(sub, folds, seed)
        )
        if isinstance(got, str):
            if skipped is not None:
                skipped[kind] = got
        else:
            out += got
    return out


def summarize(
    table: RunTable,
    target: str,
    splits: Sequence[Split],
    results: Sequence[FitResult | str],
    skipped: Mapping[str, str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Score each split's refit on its held-out rows; one record per kind for LAW.json.

    Returns:
        ``{kind: {"mre", "n_rows", "n_fit", "ratio" or "distance", "folds", "converged"}}``
        (MRE a fraction, pooled over a kind's folds; None when a refit failed, with its
        reason under ``"error"``), and ``{kind: {"skipped": reason}}`` for the checks the
        rows do not allow.
    """
    t = target[:-5] if target.endswith("_loss") else target
    sub = _rows_with_loss(table, target)
    y = sub.losses[t]
    out: dict[str, dict[str, Any]] = {k: {"skipped": r} for k, r in (skipped or {}).items()}
    for kind in dict.fromkeys(s.kind for s in splits):
        pairs = [(s, r) for s, r in zip(splits, results, strict=True) if s.kind == kind]
        errors = [r for _, r in pairs if isinstance(r, str)]
        rel: list[np.ndarray] = []
        for s, r in pairs:
            if isinstance(r, str):
                continue
            held = sub.select(s.held_rows)
            pred = r.law.predict(held.model_size, held.n_tokens, held.weights)
            rel.append(np.abs(pred - y[s.held_rows]) / y[s.held_rows])
        allrel = np.concatenate(rel) if rel else np.empty(0)
        mre = float(allrel.mean()) if len(allrel) and not errors else None
        rec: dict[str, Any] = {
            "mre": mre if mre is None or np.isfinite(mre) else None,
            "n_rows": int(sum(int(s.held_rows.sum()) for s, _ in pairs)),
            "n_fit": int(np.mean([int(s.fit_rows.sum()) for s, _ in pairs])),
            "folds": len(pairs),
            "converged": all(not isinstance(r, str) and r.success for _, r in pairs),
            "train_mre": float(
                np.mean([r.mre / 100 for _, r in pairs if not isinstance(r, str)] or [np.nan])
            ),
        }
        if not np.isfinite(rec["train_mre"]):
            rec["train_mre"] = None
        if len(allrel) and not np.all(np.isfinite(allrel)):
            rec["nonfinite_rows"] = int((~np.isfinite(allrel)).sum())
        vals = [s.ratio for s, _ in pairs if s.ratio is not None]
        if vals:
            rec["distance" if kind == "mixture" else "ratio"] = float(np.mean(vals))
        if errors:
            rec["error"] = errors[0]
        out[kind] = rec
    return {k: out[k] for k in KINDS if k in out}


def score(checks: Mapping[str, Mapping[str, Any]]) -> float | None:
    """The selection criterion: mean held-out MRE over the checks that ran (None if none)."""
    vals = [c["mre"] for c in checks.values() if isinstance(c.get("mre"), float)]
    return float(np.mean(vals)) if vals else None


@dataclass
class CheckedFit:
    """A target's fit with its held-out checks (and, for ``auto``, every candidate's).

    Attributes:
        result: the fit on every row, its law carrying ``fit["heldout"]`` (and ``"auto"``).
        checks: the chosen law's held-out records (as in LAW.json).
        candidates: law -> {"score", "train_mre", "checks"} for every law tried.
    """

    result: FitResult
    checks: dict[str, dict[str, Any]]
    candidates: dict[str, dict[str, Any]] = field(default_factory=dict)


def default_candidates(table: RunTable) -> tuple[str, ...]:
    """The laws ``--law auto`` tries on this table (see :data:`AUTO_SCALED`)."""
    one_scale = len(np.unique(table.model_size)) == 1 and len(np.unique(table.n_tokens)) == 1
    return AUTO_MIXTURE_ONLY if one_scale else AUTO_SCALED


def fit_checked(
    table: RunTable,
    laws: Sequence[str],
    targets: Sequence[str],
    *,
    kinds: Sequence[str] = KINDS,
    folds: int = 5,
    d_fraction: float = 0.5,
    seed: int = 0,
    settings: FitSettings | None = None,
    chance_loss: float | None = None,
    jobs: int = 1,
    progress: bool = False,
) -> dict[str, CheckedFit]:
    """Fit every law in ``laws`` to every target, with held-out checks; keep the best law.

    All fits (full rows and every split, every law, every target) go to one pool of ``jobs``
    processes. With one law this is a fit plus its checks; with several, each target keeps
    the law with the lowest :func:`score` (the first law on a tie or when no check ran).

    Raises:
        ValueError: an unknown law or kind; the full-row fit of a single law failing (too few
            rows...). A candidate of several whose full fit fails is dropped with its reason.
    """
    for law in laws:
        get_law(law)
    if not laws:
        raise ValueError("laws must name at least one law")
    settings = settings or FitSettings()
    plans: dict[str, tuple[list[Split], dict[str, str]]] = {}
    for t in targets:
        skipped: dict[str, str] = {}
        plans[t] = (
            plan_splits(
                table, t, kinds, folds=folds, d_fraction=d_fraction, seed=seed, skipped=skipped
            ),
            skipped,
        )
    job_list: list[FitJob] = []
    index: list[tuple[str, str, int]] = []  # (target, law, split index or -1 for all rows)
    for t in targets:
        sub = _rows_with_loss(table, t)
        for law in laws:
            job_list.append(FitJob(table, law, t, seed, settings, chance_loss))
            index.append((t, law, -1))
            for i, s in enumerate(plans[t][0]):
                job_list.append(FitJob(sub.select(s.fit_rows), law, t, seed, settings, quiet=True))
                index.append((t, law, i))
    results = run_jobs(
        run_fit_job, job_list, jobs, desc="fit + held-out", progress=progress, label=_job_label
    )
    out: dict[str, CheckedFit] = {}
    for t in targets:
        splits, skipped = plans[t]
        cands: dict[str, dict[str, Any]] = {}
        fulls: dict[str, FitResult] = {}
        for law in laws:
            mine = [
                r for (tt, ll, _), r in zip(index, results, strict=True) if (tt, ll) == (t, law)
            ]
            full, parts = mine[0], mine[1:]
            if isinstance(full, str):
                if len(laws) == 1:
                    raise ValueError(full)
                cands[law] = {"error": full, "score": None}
                continue
            checks = summarize(table, t, splits, parts, skipped)
            fulls[law] = full
            cands[law] = {"score": score(checks), "train_mre": full.mre / 100, "checks": checks}
        if not fulls:
            raise ValueError(f"{t}: no candidate law could be fitted: {cands}")
        best = min(
            fulls,
            key=lambda law: (
                cands[law]["score"] is None,
                cands[law]["score"] or 0.0,
                list(laws).index(law),
            ),
        )
        info: dict[str, Any] = {"heldout": cands[best]["checks"]}
        if len(laws) > 1:
            info["auto"] = {
                "criterion": "lowest mean held-out MRE over the checks that ran (n, d, mixture)",
                "chosen": best,
                "candidates": {
                    law: {k: v for k, v in c.items() if k != "checks"}
                    | {"heldout": {k: r.get("mre") for k, r in (c.get("checks") or {}).items()}}
                    for law, c in cands.items()
                },
            }
        res = fulls[best]
        law_obj: FittedLaw = res.law.with_fit_info(**info)
        res = dataclasses.replace(res, law=law_obj)
        out[t] = CheckedFit(res, cands[best]["checks"], cands)
    return out


def _job_label(job: FitJob) -> str:
    return f"{job.law} on {job.target}, {len(job.table)} rows"


def heldout_checks(
    table: RunTable,
    law: str,
    target: str,
    **kwargs: Any,
) -> dict[str, dict[str, Any]]:
    """The held-out records of one law on one target (:func:`fit_checked` with one law).

    Example:
        >>> heldout_checks(table, "additive", "c4")["n"]["mre"]  # doctest: +SKIP
        0.0118
    """
    return fit_checked(table, [law], [target], **kwargs)[target].checks


def choose_law(
    table: RunTable,
    target: str,
    candidates: Sequence[str] | None = None,
    **kwargs: Any,
) -> CheckedFit:
    """``fit --law auto`` for one target: the candidate with the lowest held-out error.

    Example:
        >>> chosen = choose_law(table, "c4")  # doctest: +SKIP
        >>> chosen.result.law.law, chosen.result.law.fit["auto"]["candidates"]  # doctest: +SKIP
    """
    laws = list(candidates) if candidates else list(default_candidates(table))
    return fit_checked(table, laws, [target], **kwargs)[target]


def choose_size_power(
    table: RunTable,
    laws: Sequence[str],
    targets: Sequence[str],
    *,
    candidates: Sequence[float] = SIZE_POWERS,
    settings: FitSettings | None = None,
    seed: int = 0,
    jobs: int = 1,
    progress: bool = False,
) -> tuple[float, dict[str, Any]]:
    """``fit --size-power auto``: the power G whose fits extrapolate best in N, and the evidence.

    Each G refits every law on the smaller model sizes and scores the largest (the held-out
    ``n`` check); per target the best law's error counts, and G is the one with the lowest mean
    over the targets (one G for the table: per target the choice would fit the check's noise).
    The weighted fit trades accuracy at the smallest sizes for accuracy where decisions are
    made, so G is chosen by the N check alone; the fit then runs its usual checks with it.

    Returns:
        ``(G, evidence)``; evidence (for LAW.json) holds the criterion and, per G, the mean
        held-out N MRE (a fraction; None where a refit failed) and the per-target ones.

    Raises:
        ValueError: fewer than :data:`N_CHECK_SIZES` model sizes, or no candidate.

    Example:
        >>> g, why = choose_size_power(table, ["joint"], ["c4"])  # doctest: +SKIP
        >>> g, why["mean_mre"]  # doctest: +SKIP
        (4.0, {'0': 0.0081, '1': 0.0064, '2': 0.0060, '3': 0.0039, '4': 0.0039})
    """
    if not candidates:
        raise ValueError("candidates must name at least one size power")
    settings = settings or FitSettings()
    job_list: list[FitJob] = []
    index: list[tuple[float, str, str]] = []
    splits: dict[str, list[Split]] = {}
    for t in targets:
        skipped: dict[str, str] = {}
        splits[t] = plan_splits(table, t, ("n",), seed=seed, skipped=skipped)
        if not splits[t]:
            raise ValueError(
                f"--size-power auto chooses by the held-out N check, which {t} cannot run: "
                f"{skipped.get('n', 'no split')}"
            )
        sub = _rows_with_loss(table, t)
        for g in candidates:
            s = dataclasses.replace(settings, size_power=float(g))
            for law in laws:
                for split in splits[t]:
                    job_list.append(FitJob(sub.select(split.fit_rows), law, t, seed, s, quiet=True))
                    index.append((float(g), t, law))
    results = run_jobs(
        run_fit_job, job_list, jobs, desc="size power", progress=progress, label=_job_label
    )
    by_key: dict[tuple[float, str, str], list[FitResult | str]] = {}
    for key, r in zip(index, results, strict=True):
        by_key.setdefault(key, []).append(r)
    per_target: dict[str, dict[str, float | None]] = {}
    means: dict[str, float | None] = {}
    for g in map(float, candidates):
        mres = {
            t: [summarize(table, t, splits[t], by_key[(g, t, law)])["n"]["mre"] for law in laws]
            for t in targets
        }
        best = {t: min((m for m in ms if m is not None), default=None) for t, ms in mres.items()}
        per_target[f"{g:g}"] = best
        vals = list(best.values())
        means[f"{g:g}"] = None if None in vals else float(np.mean(vals))
    scored = {g: m for g, m in means.items() if m is not None}
    if not scored:
        raise ValueError(f"--size-power auto: no size power could be scored: {per_target}")
    chosen = min(scored, key=lambda g: (scored[g], float(g)))
    evidence = {
        "criterion": "lowest mean held-out N MRE over the targets (fit the smaller sizes, "
        "predict the largest), the best law per target",
        "chosen": float(chosen),
        "mean_mre": means,
        "per_target": per_target,
    }
    return float(chosen), evidence
