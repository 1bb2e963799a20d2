"""Evaluate the main runs against the law, from the run files (the tests of the claims on
them are in :mod:`demo_claims`).

Example:
    >>> from demo_mainruns import evaluate_main  # doctest: +SKIP
    >>> main = evaluate_main("out/runs/main/*.csv", fitted, targets=targets,  # doctest: +SKIP
    ...     objectives=objectives, runs=runs, mixtures=mixtures, proxy_tokens_max=61_440.0)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from demo_fit import load_rows
from demo_results import (
    ErrorByTokens,
    ErrorSummary,
    MainEvaluation,
    MainRun,
    MixtureEvaluation,
    ObjectiveStats,
    RunSummary,
)


def evaluate_main(
    rows: str,
    fitted: Mapping[str, Any],
    *,
    targets: Sequence[str],
    objectives: Mapping[str, Mapping[str, float]],
    runs: Sequence[RunSummary],
    mixtures: Iterable[str],
    proxy_tokens_max: float,
) -> MainEvaluation:
    """Measured final losses of the main runs next to the law's prediction for each.

    Predictions use each run's own recorded N, D and weights (the row, through
    ``laws.predict_table``), not the planned ones.

    Args:
        rows: glob of the main runs' run-table CSVs.
        fitted: the chosen law per target (fitted on every proxy row).
        targets: the loss columns to read: the training domains, then the held-out targets.
        objectives: objective -> target -> weight.
        runs: every trained run's summary (names to mixture and seed).
        mixtures: the mixtures' names, in the order to report them.
        proxy_tokens_max: the proxies' largest D, where ``by_tokens`` splits.
    """
    from mixsampler import laws

    final = load_rows(rows).last_per_run()
    preds = laws.predict_table(fitted, final)
    meta = {r.name: r for r in runs}
    per_run: dict[str, MainRun] = {}
    for i, run in enumerate(final.run_ids.tolist()):
        losses = {t: float(final.losses[t][i]) for t in targets}
        pred = {t: float(preds[t][i]) for t in fitted}
        per_run[run] = MainRun(
            name=run,
            mixture=meta[run].mixture,
            seed=meta[run].seed,
            model_size=float(final.model_size[i]),
            n_tokens=float(final.n_tokens[i]),
            loss=losses,
            pred=pred,
            objective={
                o: sum(w * losses[t] for t, w in obj.items()) for o, obj in objectives.items()
            },
            pred_objective={
                o: sum(w * pred[t] for t, w in obj.items()) for o, obj in objectives.items()
            },
        )
    by_mix: dict[str, MixtureEvaluation] = {}
    for mix in mixtures:
        # In seed order, so seed s of one mixture pairs with seed s of another.
        rs = sorted((r for r in per_run.values() if r.mixture == mix), key=lambda r: r.seed)
        by_mix[mix] = MixtureEvaluation(
            seeds=tuple(r.seed for r in rs),
            objective={o: _objective_stats(rs, o) for o in objectives},
        )
    return MainEvaluation(
        runs=per_run,
        mixtures=by_mix,
        by_tokens=_error_by_tokens(rows, fitted, float(proxy_tokens_max)),
    )


def _objective_stats(runs: Sequence[MainRun], objective: str) -> ObjectiveStats:
    """One objective over ``runs`` (one mixture's main runs, in seed order)."""
    vals = np.array([r.objective[objective] for r in runs])
    preds = np.array([r.pred_objective[objective] for r in runs])
    return ObjectiveStats(
        measured=tuple(vals.tolist()),
        predicted_per_seed=tuple(preds.tolist()),
        mean=float(vals.mean()),
        spread=float(vals.max() - vals.min()),
        predicted=float(preds.mean()),
        rel_error_pct=float(abs(preds.mean() - vals.mean()) / vals.mean() * 100),
        # "every main run within 2 %": the worst seed, not the mean of the seeds.
        max_rel_error_pct=float(np.max(np.abs(preds - vals) / vals) * 100),
    )


def _error_by_tokens(rows: str, fitted: Mapping[str, Any], d_proxy: float) -> ErrorByTokens:
    """The law's MRE on every main-run validation, split at the proxies' largest D: where it
    only extrapolates in N, and where it extrapolates in N and D."""
    from mixsampler import laws

    table = load_rows(rows)
    errs = []
    for target, pred in laws.predict_table(fitted, table).items():
        obs = table.losses[target]
        errs.append((pred - obs) / obs * 100)
    err = np.stack(errs)  # (targets, rows), signed %
    parts: dict[str, ErrorSummary] = {}
    for name, sel in (
        ("within", table.n_tokens <= d_proxy * 1.05),
        ("beyond", table.n_tokens > d_proxy * 1.05),
    ):
        e = err[:, sel]
        parts[name] = ErrorSummary(
            rows=int(sel.sum()),
            mre=float(np.nanmean(np.abs(e))) if e.size else None,
            bias=float(np.nanmean(e)) if e.size else None,
        )
    return ErrorByTokens(proxy_tokens_max=d_proxy, within=parts["within"], beyond=parts["beyond"])
