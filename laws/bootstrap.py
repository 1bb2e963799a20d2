"""Bootstrap over runs: how sure are the predictions and the optimal weights?

Rows of one run (its checkpoints) are strongly correlated, so resampling rows would overstate
the information in the table. Each replicate draws whole runs with replacement, refits the law
starting from the full-data fit (``refit="local"``: one local refinement instead of the
global search; ``refit="full"`` repeats the global search), and records predictions at
user-given points and the optimal weights. Targets are refitted in parallel processes with
``jobs``. The full fits' identifiability warnings are repeated in the result and on the log.
Percentile intervals over the replicates then show whether, say, 20 proxy runs pin the weights
down.

Example:
    >>> b = bootstrap(table, "additive", ["c4"], n_boot=50,
    ...               predict_at=(1.2e9, 4.6e10, h), optimize_at={"model_size": 7e9,
    ...               "n_tokens": 1.5e11})  # doctest: +SKIP
    >>> b.prediction_interval()["c4"], b.weight_interval()  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mixsampler.checks import check_int
from mixsampler.laws.fit import FitResult, FitSettings, fit
from mixsampler.laws.fitted import FittedLaw
from mixsampler.laws.optimize import optimize
from mixsampler.laws.parallel import run_jobs
from mixsampler.laws.runtable import RunTable

__all__ = ["BootstrapResult", "bootstrap", "resample_runs", "REFIT_MODES", "MAX_BOOT"]

log = logging.getLogger(__name__)

REFIT_MODES = ("local", "full")
# Each replicate is a refit (0.1-10 s): more than this is a typo (an extra zero, 1e9), not a
# plan, and would only be found out after hours. The resamples are drawn lazily, one per
# refit, so the cap is about time, not memory.
MAX_BOOT = 100_000


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
        n_failed: fits (replicate x target) that did not converge (kept in ``params`` and
            ``predictions``; the intervals leave them out unless ``converged_only=False``).
        converged: per replicate, whether every fit and, with ``optimize_at``, the weight
            optimization converged; shape (B,).
        warnings: the full-data fits' identifiability warnings (``target: warning``), and how
            many replicates had warnings of their own.
        seconds: wall time of the replicates (not the full-data fits).
        cpu_seconds: CPU time of the replicates' refits, summed over processes (what idle
            cores would take, on a shared machine).
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
    warnings: tuple[str, ...] = ()
    seconds: float = 0.0
    cpu_seconds: float = 0.0

    def _q(self, level: float | None) -> tuple[float, float]:
        level = self.level if level is None else level
        if not 0 < level < 1:
            raise ValueError(f"level must be in (0, 1), got {level}")
        return 50 * (1 - level), 100 - 50 * (1 - level)

    def _kept(self, converged_only: bool) -> np.ndarray:
        """Rows of the replicates the intervals use: by default the converged ones only, since
        an unconverged refit or optimum is not a sample of the law's uncertainty."""
        if not converged_only:
            return np.ones(len(self.converged), dtype=bool)
        if int(self.converged.sum()) < 2:
            raise ValueError(
                f"only {int(self.converged.sum())} of {len(self.converged)} bootstrap replicates"
                " converged: no interval; add runs, or pass converged_only=False to see the"
                " unconverged spread"
            )
        return self.converged

    def percentiles(
        self, values: np.ndarray, level: float | None = None, *, converged_only: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) percentile bounds over the replicates (axis 0) of ``values``.

        The one place intervals are computed: the methods below and ``optimize --bootstrap``
        (gain intervals) all go through it.
        """
        values = np.asarray(values, dtype=float)
        if values.shape[:1] != self.converged.shape:
            raise ValueError(
                f"values must have one row per replicate ({len(self.converged)}), got shape "
                f"{values.shape}"
            )
        lo, hi = self._q(level)
        kept = values[self._kept(converged_only)]
        return np.percentile(kept, lo, axis=0), np.percentile(kept, hi, axis=0)

    def prediction_interval(
        self, level: float | None = None, *, converged_only: bool = True
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per target, (low, high) percentile bounds of the predictions at each point."""
        return {
            t: self.percentiles(p, level, converged_only=converged_only)
            for t, p in self.predictions.items()
        }

    def weight_interval(
        self, level: float | None = None, *, converged_only: bool = True
    ) -> dict[str, tuple[float, float]]:
        """Per domain, (low, high) percentile bounds of the optimal weight."""
        if self.optimal_weights is None:
            raise ValueError("no optimal weights: call bootstrap with optimize_at")
        lo, hi = self.percentiles(self.optimal_weights, level, converged_only=converged_only)
        return {d: (float(lo[i]), float(hi[i])) for i, d in enumerate(self.domains)}


def resample_runs(table: RunTable, rng: np.random.Generator) -> RunTable:
    """Draw as many runs as the table has, with replacement, keeping all rows of each."""
    return table.select(_resample_index(table, rng))


def _resample_index(table: RunTable, rng: np.random.Generator) -> np.ndarray:
    runs, inverse = np.unique(table.run_ids.astype(str), return_inverse=True)
    members = [np.flatnonzero(inverse == i) for i in range(len(runs))]
    pick = rng.integers(0, len(runs), len(runs))
    return np.concatenate([members[i] for i in pick])


def _samples(table: RunTable, seed: int, n_boot: int) -> Iterator[np.ndarray]:
    """The replicates' row indices, drawn one at a time (never all held at once); the same
    sequence in every process for the same seed."""
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        yield _resample_index(table, rng)


@dataclass(frozen=True)
class _Job:
    """The replicates of one target: what a worker process needs."""

    table: RunTable
    law: str
    target: str
    n_boot: int
    seed: int
    settings: FitSettings | None
    init: FittedLaw | None


def _refit_target(job: _Job) -> tuple[list[FitResult], float]:
    """Refit one target on every resample (runs in a worker process with ``jobs > 1``).

    The replicates' own warnings are not logged one by one (200 copies of the same line); the
    bootstrap logs the full fits' warnings and a count per target instead.
    """
    import time

    fit_log = logging.getLogger("mixsampler.laws.fit")
    level = fit_log.level
    fit_log.setLevel(logging.ERROR)
    c0 = time.process_time()
    try:
        out = [
            fit(
                job.table.select(idx),
                job.law,
                job.target,
                seed=job.seed + 1 + b,
                settings=job.settings,
                init=job.init,
            )
            for b, idx in enumerate(_samples(job.table, job.seed, job.n_boot))
        ]
        return out, time.process_time() - c0
    finally:
        fit_log.setLevel(level)


def _refit_settings(
    refit: str, settings: FitSettings | None, refit_settings: FitSettings | None
) -> FitSettings | None:
    if refit not in REFIT_MODES:
        raise ValueError(f"refit can be {', '.join(REFIT_MODES)}, got {refit!r}")
    if refit_settings is not None:
        return refit_settings
    if refit == "full":
        return settings
    # A replicate's optimum sits next to the full-data one: one local run from it (no random
    # search; a second run only if the first did not converge). Its evaluation budget stays
    # the full fit's: on the paper's table (joint, c4) a 100-evaluation run was 6x faster but
    # stopped next to its start, off by up to half the interval's width (1.4e-3 of a 3e-3 wide
    # 90 % interval), which would make the intervals too narrow.
    return dataclasses.replace(
        settings or FitSettings(),
        n_random=16,
        n_starts=1,
        niter=0,
        warm_start=False,
        restart="unconverged",
    )


def _collect_warnings(
    full: Mapping[str, FitResult], reps: Mapping[str, list[FitResult]]
) -> tuple[str, ...]:
    out = [f"{t}: {w}" for t, r in full.items() for w in r.warnings]
    for t, rs in reps.items():
        n = sum(bool(r.warnings) for r in rs)
        if n:
            out.append(f"{t}: {n} of {len(rs)} replicates have identifiability warnings")
    for w in out:
        log.warning("bootstrap: %s", w)
    return tuple(out)


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
    refit: str = "local",
    jobs: int = 1,
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
        refit_settings: settings of each replicate's refit (overrides ``refit``'s default).
        refit: ``"local"`` (default): each replicate is a short local refinement from the
            full-data fit; ``"full"``: each replicate repeats the full global search.
        jobs: targets refitted in parallel processes (spawned: a script that calls this with
            ``jobs > 1`` needs the usual ``if __name__ == "__main__":`` guard).
        progress: show a tqdm progress bar (over targets).

    Returns:
        A :class:`BootstrapResult`.
    """
    import time

    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or not 2 <= n_boot <= MAX_BOOT:
        raise ValueError(
            f"n_boot must be an integer from 2 to {MAX_BOOT:,} (each replicate is a refit), "
            f"got {n_boot!r}"
        )
    if not targets:
        raise ValueError("targets must name at least one target, got none")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    check_int("jobs", jobs, low=1)
    n_runs = len(np.unique(table.run_ids.astype(str)))
    if n_runs < 2:
        raise ValueError(f"bootstrap over runs needs at least 2 runs, the table has {n_runs}")
    rs = _refit_settings(refit, settings, refit_settings)
    full = {t: fit(table, law, t, seed=seed, settings=settings) for t in targets}
    job_list = [
        _Job(table, law, t, n_boot, seed, rs, res.law if refit == "local" else None)
        for t, res in full.items()
    ]
    t0 = time.perf_counter()
    done = run_jobs(
        _refit_target,
        job_list,
        jobs,
        desc=f"bootstrap {law}",
        progress=progress,
        label=lambda j: f"target {j.target!r}",
    )
    reps = {t: d[0] for t, d in zip(full, done, strict=True)}
    result = BootstrapResult(
        law=law, targets=list(full), domains=table.domains, level=level, full=full
    )
    result.params = {t: np.array([r.law.x for r in rs_]) for t, rs_ in reps.items()}
    result.n_failed = sum(not r.success for rs_ in reps.values() for r in rs_)
    converged = np.array([all(reps[t][b].success for t in full) for b in range(n_boot)])
    if predict_at is not None:
        n, d, h = predict_at
        result.predictions = {
            t: np.array([np.atleast_1d(r.law.predict(n, d, h)) for r in rs_])
            for t, rs_ in reps.items()
        }
    if optimize_at is not None:
        weights = []
        for b in range(n_boot):
            opt = optimize({t: reps[t][b].law for t in full}, **dict(optimize_at))
            weights.append(opt.x)
            converged[b] &= bool(opt.success)
        result.optimal_weights = np.array(weights)
    result.converged = converged
    result.warnings = _collect_warnings(full, reps)
    result.seconds = time.perf_counter() - t0
    result.cpu_seconds = float(sum(d[1] for d in done))
    return result
