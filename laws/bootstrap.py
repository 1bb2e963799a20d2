"""Bootstrap over runs: how sure are the predictions and the optimal weights?

Rows of one run (its checkpoints) are strongly correlated, so resampling rows would overstate
the information in the table. Each replicate draws whole runs with replacement, refits the law
starting from the full-data fit (a few local searches instead of the full global search), and
records predictions at user-given points and the optimal weights. Percentile intervals over the
replicates then show whether, say, 20 proxy runs pin the weights down.

Example:
    >>> b = bootstrap(table, "additive", ["c4"], n_boot=50,
    ...               predict_at=(1.2e9, 4.6e10, h), optimize_at={"model_size": 7e9,
    ...               "n_tokens": 1.5e11})  # doctest: +SKIP
    >>> b.prediction_interval()["c4"], b.weight_interval()  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from laws.fit import FitResult, FitSettings, fit
from laws.fitted import FittedLaw
from laws.optimize import optimize
from laws.runtable import RunTable

__all__ = ["BootstrapResult", "bootstrap", "resample_runs"]


@dataclass
class BootstrapResult:
    """Replicates of a bootstrap over runs.

    Attributes:
        law: the law refitted.
        targets: the targets refitted.
        domains: domain order of the weights.
        level: default coverage of the intervals (0.9 = 5th to 95th percentile).
        full: the full-data fits, per target.
        params: per target, the parameters of each replicate, shape (B, P).
        predictions: per target, the predictions of each replicate at ``predict_at``, (B, m).
        optimal_weights: the optimal weights of each replicate, (B, k), if ``optimize_at``.
        n_failed: fits (replicate x target) that did not converge (kept; their spread
            counts too).
        converged: per replicate, whether every fit and, with ``optimize_at``, the weight
            optimization converged; shape (B,).
    """

    law: str
    targets: list[str]
    domains: tuple[str, ...]
    level: float
    full: dict[str, FitResult]
    params: dict[str, np.ndarray] = field(default_factory=dict)
    predictions: dict[str, np.ndarray] = field(default_factory=dict)
    optimal_weights: np.ndarray | None = None
    n_failed: int = 0
    converged: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    def _q(self, level: float | None) -> tuple[float, float]:
        level = self.level if level is None else level
        if not 0 < level < 1:
            raise ValueError(f"level must be in (0, 1), got {level}")
        return 50 * (1 - level), 100 - 50 * (1 - level)

    def prediction_interval(
        self, level: float | None = None
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per target, (low, high) percentile bounds of the predictions at each point."""
        lo, hi = self._q(level)
        return {
            t: (np.percentile(p, lo, axis=0), np.percentile(p, hi, axis=0))
            for t, p in self.predictions.items()
        }

    def weight_interval(self, level: float | None = None) -> dict[str, tuple[float, float]]:
        """Per domain, (low, high) percentile bounds of the optimal weight."""
        if self.optimal_weights is None:
            raise ValueError("no optimal weights: call bootstrap with optimize_at")
        lo, hi = self._q(level)
        return {
            d: (
                float(np.percentile(self.optimal_weights[:, i], lo)),
                float(np.percentile(self.optimal_weights[:, i], hi)),
            )
            for i, d in enumerate(self.domains)
        }


def resample_runs(table: RunTable, rng: np.random.Generator) -> RunTable:
    """Draw as many runs as the table has, with replacement, keeping all rows of each."""
    runs, inverse = np.unique(table.run_ids.astype(str), return_inverse=True)
    members = [np.flatnonzero(inverse == i) for i in range(len(runs))]
    pick = rng.integers(0, len(runs), len(runs))
    return table.select(np.concatenate([members[i] for i in pick]))


def bootstrap(
    table: RunTable,
    law: str,
    targets: Sequence[str],
    *,
    n_boot: int = 50,
    seed: int = 0,
    predict_at: tuple[Any, Any, Any] | None = None,
    optimize_at: Mapping[str, Any] | None = None,
    level: float = 0.9,
    settings: FitSettings | None = None,
    refit_settings: FitSettings | None = None,
    progress: bool = False,
) -> BootstrapResult:
    """Refit ``law`` on ``n_boot`` resamples of whole runs.

    Args:
        table: the runs; ``run_ids`` decide what a run is.
        law: the law to fit.
        targets: the targets to fit (one law each).
        n_boot: replicates.
        seed: seeds the resampling and the fits.
        predict_at: ``(model_size, n_tokens, weights)`` to predict at, broadcast as in
            :meth:`FittedLaw.predict` (weights in ``table.domains`` order).
        optimize_at: keyword arguments of :func:`laws.optimize` (``model_size``,
            ``n_tokens``, constraints, ``objective``) to find the optimal weights of each
            replicate.
        level: default interval coverage.
        settings: settings of the full-data fit.
        refit_settings: settings of each replicate's refit; default: a short search from the
            full-data fit (they start next to their optimum).
        progress: show a tqdm progress bar.

    Returns:
        A :class:`BootstrapResult`.
    """
    if n_boot < 2:
        raise ValueError(f"n_boot must be >= 2, got {n_boot}")
    if not targets:
        raise ValueError("targets must name at least one target, got none")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    n_runs = len(np.unique(table.run_ids.astype(str)))
    if n_runs < 2:
        raise ValueError(f"bootstrap over runs needs at least 2 runs, the table has {n_runs}")
    refit_settings = refit_settings or dataclasses.replace(
        settings or FitSettings(), n_random=16, n_starts=1, niter=0, warm_start=False
    )
    full = {t: fit(table, law, t, seed=seed, settings=settings) for t in targets}
    result = BootstrapResult(
        law=law,
        targets=list(full),
        domains=table.domains,
        level=level,
        full=full,
    )
    rng = np.random.default_rng(seed)
    params: dict[str, list[np.ndarray]] = {t: [] for t in full}
    preds: dict[str, list[np.ndarray]] = {t: [] for t in full}
    weights: list[np.ndarray] = []
    converged: list[bool] = []
    reps = range(n_boot)
    if progress:
        from tqdm.auto import tqdm

        reps = tqdm(reps, desc=f"bootstrap {law}", unit="rep")
    for b in reps:
        sample = resample_runs(table, rng)
        fitted: dict[str, FittedLaw] = {}
        ok = True
        for t, res in full.items():
            r = fit(sample, law, t, seed=seed + 1 + b, settings=refit_settings, init=res.law)
            result.n_failed += int(not r.success)
            ok &= r.success
            fitted[t] = r.law
            params[t].append(r.law.x)
            if predict_at is not None:
                n, d, h = predict_at
                preds[t].append(np.atleast_1d(r.law.predict(n, d, h)))
        if optimize_at is not None:
            opt = optimize(fitted, **dict(optimize_at))
            weights.append(opt.x)
            ok &= opt.success
        converged.append(ok)
    result.params = {t: np.array(v) for t, v in params.items()}
    result.converged = np.array(converged, dtype=bool)
    if predict_at is not None:
        result.predictions = {t: np.array(v) for t, v in preds.items()}
    if optimize_at is not None:
        result.optimal_weights = np.array(weights)
    return result
