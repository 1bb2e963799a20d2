"""Fit the additive and joint laws on the proxy rows (``laws.load_runs``, ``laws.fit``),
on row
subsets that hold out the largest size (extrapolation in N) or the second half of every curve
(extrapolation in D), and score them with ``laws.evaluate``.

Example:
    >>> from demo_fit import fit_stage  # doctest: +SKIP
"""

from __future__ import annotations

import glob
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from demo_results import FitSummary, LawReport

from mixsampler.threads import blas_threads

LAWS: tuple[str, ...] = ("additive", "joint")


@dataclass(frozen=True)
class FitStage:
    """What the fit stage found.

    Attributes:
        report: per law, its MRE per target on all proxy rows, held out by scale and by D,
            the fits' convergence and the LAW.json paths (:class:`LawReport`).
        chosen: the law with the lower mean held-out-scale MRE: it drives the optimum.
        fitted: the chosen law fitted on every proxy row, per target.
        sizes: the proxies' model sizes N, ascending.
        proxy_tokens_max: the proxies' largest D.
    """

    report: dict[str, LawReport]
    chosen: str
    fitted: Mapping[str, Any]
    sizes: tuple[float, ...]
    proxy_tokens_max: float


def load_rows(pattern: str, where: str | None = None) -> Any:
    """The run table of every CSV matching ``pattern`` (as the shell expands it for
    ``mixsampler fit runs/proxy/*.csv``)."""
    from mixsampler import laws

    paths = sorted(glob.glob(pattern))
    if not paths:
        raise FileNotFoundError(f"no run-table files match {pattern}")
    return laws.load_runs(paths, where=where)


def _fit_target(paths: list[str], where: str | None, target: str, seed: int) -> dict[str, Any]:
    """Additive, then joint warm-started from it: what ``laws.fit`` does inside a joint
    fit
    (it embeds an additive fit of the same rows), done once instead of twice."""
    from mixsampler import laws

    table = laws.load_runs(paths, where=where)
    out: dict[str, Any] = {}
    init = None
    for law in LAWS:
        res = laws.fit(table, law, target, seed=seed, init=init if law == "joint" else None)
        if law == "additive":
            init = res.law
        out[law] = {
            "law": res.law,
            "fit": FitSummary(
                success=bool(res.success),
                message=str(res.message),
                fun=float(res.fun),
                n_rows=int(res.n_rows),
                seconds=float(res.seconds),
            ),
        }
    return out


def fit_laws(
    rows: str,
    out: Path,
    *,
    seed: int,
    jobs: int = 1,
    subsets: Mapping[str, str | None] | None = None,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Fit each law on every target of every row subset, as ``mixsampler fit`` does (same
    ``laws.load_runs`` and ``laws.fit``, default settings); save one LAW.json per law
    and subset.

    Args:
        rows: glob of the run-table CSVs.
        out: folder of the LAW.json files: ``<law><suffix>.json``.
        seed: the fits' seed.
        jobs: fits run side by side (one process per target and subset).
        subsets: suffix -> ``--where`` filter; default ``{"": None}`` (all rows).

    Returns:
        suffix -> law -> ``{"path", "laws": {target: FittedLaw}, "fit": {target: FitSummary}}``.
    """
    from mixsampler import laws

    subsets = dict(subsets or {"": None})
    paths = sorted(glob.glob(rows))
    targets = load_rows(rows).targets
    tasks = [(suffix, t) for suffix in subsets for t in targets]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    # Always in fresh processes with one BLAS thread: L-BFGS-B's small BLAS calls made
    # OpenBLAS spin its threads, and on a busy 2-core machine a fit took 3x longer with them.
    with (
        blas_threads(1),
        ProcessPoolExecutor(
            max_workers=max(1, min(jobs, len(tasks))), mp_context=mp.get_context("spawn")
        ) as pool,
    ):
        futures = [pool.submit(_fit_target, paths, subsets[s], t, seed) for s, t in tasks]
        done = [f.result() for f in futures]
    result: dict[str, dict[str, dict[str, Any]]] = {}
    for suffix in subsets:
        result[suffix] = {}
        for law in LAWS:
            per_target = {
                t: r[law] for (sfx, t), r in zip(tasks, done, strict=True) if sfx == suffix
            }
            path = out / f"{law}{suffix}.json"
            fitted = {t: v["law"] for t, v in per_target.items()}
            laws.save_laws(str(path), fitted)
            result[suffix][law] = {
                "path": str(path),
                "laws": fitted,
                "fit": {t: v["fit"] for t, v in per_target.items()},
            }
    return result


def mre(fitted: Mapping[str, Any], table: Any) -> dict[str, float]:
    """MRE in % of each target's law on ``table``'s rows (``laws.evaluate``)."""
    from mixsampler import laws

    return {t: float(e["mre"]) for t, e in laws.evaluate(fitted, table).items()}


def bias(fitted: Mapping[str, Any], table: Any) -> dict[str, float]:
    """Mean signed error in % (predicted - measured) of each target's law on ``table``: the
    direction of a law's error, which MRE hides (positive: too high)."""
    from mixsampler import laws

    out = {}
    for t, pred in laws.predict_table(fitted, table).items():
        obs = table.losses[t]
        ok = np.isfinite(obs)
        out[t] = float(np.mean((pred[ok] - obs[ok]) / obs[ok]) * 100)
    return out


def heldout_record(
    mre_pct: float, ratio: float | None, n_rows: int, converged: bool
) -> dict[str, Any]:
    """One held-out check as LAW.json records it (``fit["heldout"][kind]``, as
    ``laws.fit_checked`` writes it): the MRE as a fraction, how far beyond the fitted rows the
    held-out ones lie, on how many rows, and whether the refit converged.

    Example:
        >>> heldout_record(1.6, 1.9, 30, True)["mre"]
        0.016
    """
    return {
        "mre": float(mre_pct) / 100,
        "ratio": ratio,
        "n_rows": int(n_rows),
        "folds": 1,
        "converged": bool(converged),
    }


def fit_stage(proxy_rows: str, out: Path, *, seed: int, jobs: int) -> FitStage:
    """Fit both laws on three row subsets (N below the largest; D up to half the longest;
    all rows), score each where it did not look, and choose the law on held-out scale.

    Args:
        proxy_rows: glob of the proxies' run-table CSVs.
        out: folder of the LAW.json files (``<law>.json``, ``.heldout.json``, ``.early.json``).
        seed: the fits' seed.
        jobs: fits side by side.
    """
    table_all = load_rows(proxy_rows)
    sizes = sorted(set(np.asarray(table_all.model_size).tolist()))
    n_max = sizes[-1]
    where_small = f"model_size < {n_max}"
    # The evidence for the D question: fitted on the first half of every proxy curve, how
    # far off is the law on the second half (extrapolation in D by up to 2x)?
    d_half = float(np.max(table_all.n_tokens)) / 2
    where_early = f"n_tokens <= {d_half}"
    fits = fit_laws(
        proxy_rows,
        out,
        seed=seed,
        jobs=jobs,
        subsets={".heldout": where_small, ".early": where_early, "": None},
    )
    heldout, early, full = fits[".heldout"], fits[".early"], fits[""]
    table_large = load_rows(proxy_rows, where=f"model_size >= {n_max}")
    table_late = load_rows(proxy_rows, where=f"n_tokens > {d_half}")
    fit_report = {
        law: LawReport(
            train_mre=mre(full[law]["laws"], table_all),
            heldout_train_mre=mre(heldout[law]["laws"], load_rows(proxy_rows, where=where_small)),
            heldout_mre=mre(heldout[law]["laws"], table_large),
            heldout_d_mre=mre(early[law]["laws"], table_late),
            heldout_d_bias=bias(early[law]["laws"], table_late),
            d_half=d_half,
            fit=full[law]["fit"],
            heldout_fit=heldout[law]["fit"],
            path=full[law]["path"],
            heldout_path=heldout[law]["path"],
            early_path=early[law]["path"],
        )
        for law in LAWS
    }
    # The held-out checks go into LAW.json, where laws.decide (and `mixsampler optimize` on
    # these files) reads the error a decision must clear. The demo runs its own N check:
    # the library's needs 4 sizes and the demo has 3.
    from mixsampler import laws

    n_ratio = float(n_max / sizes[-2]) if len(sizes) > 1 else None
    for law in LAWS:
        rep = fit_report[law]
        full[law]["laws"] = {
            t: fitted.with_fit_info(
                heldout={
                    "n": heldout_record(
                        rep.heldout_mre[t], n_ratio, len(table_large), rep.heldout_fit[t].success
                    ),
                    "d": heldout_record(
                        rep.heldout_d_mre[t],
                        float(np.max(table_all.n_tokens)) / d_half,
                        len(table_late),
                        early[law]["fit"][t].success,
                    ),
                }
            )
            for t, fitted in full[law]["laws"].items()
        }
        laws.save_laws(full[law]["path"], full[law]["laws"])
    # Model selection on evidence: the law that extrapolated better in N drives the optimum.
    chosen = min(LAWS, key=lambda lw: np.mean(list(fit_report[lw].heldout_mre.values())))
    return FitStage(
        report=fit_report,
        chosen=chosen,
        fitted=full[chosen]["laws"],
        sizes=tuple(sizes),
        proxy_tokens_max=float(np.max(table_all.n_tokens)),
    )
