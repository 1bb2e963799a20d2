"""Is a fitted law identified by its rows? Checks run at every fit's optimum.

A fit can "converge" and still be meaningless: parameters pushed onto their bounds (C_i at 1e6,
E at 1e-4), a mixture term with more parameters than the rows have distinct mixtures, or a
direction in parameter space along which the predictions on the rows do not change (the data
cannot tell those parameters apart). Each such problem becomes one line naming the parameters,
the evidence and the way out; :func:`mixsampler.laws.fit` puts them in ``FitResult.warnings``,
``FittedLaw.warnings`` (LAW.json) and on the ``laws`` logger.

Example:
    >>> distinct_mixtures(np.array([[0.5, 0.5], [0.5, 0.5], [0.2, 0.8]]))
    2
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mixsampler.laws.forms import Form

__all__ = [
    "BOUND_TOL",
    "CHANCE_TOL",
    "FLAT_TOL",
    "FLAT_CURVE_TOL",
    "distinct_mixtures",
    "evidence",
    "identifiability_warnings",
    "never_learned",
    "on_bounds",
]

# A parameter within this distance (in fitting space, i.e. relative for log parameters) of a
# bound is "on" it.
BOUND_TOL = 1e-3
# A direction is flat when moving the parameters e-fold along it changes the predictions on
# the rows by less than FLAT_TOL x the mean loss (RMS over rows): numerically zero, an exact
# degeneracy (fewer mixtures than parameters: 1e-18 there). Weakly identified directions
# (1e-7 for the joint law's gammaB on the paper's table) are for the bootstrap's intervals.
FLAT_TOL = 1e-9
# A run "never learned" when every row's loss is within CHANCE_TOL (relative) of the chance
# level, or above it (ln(10) for a 10-class image task)...
CHANCE_TOL = 0.01
# ... or when its loss curve is flat: over at least 3 rows spanning 2x in D, the loss moves by
# less than FLAT_CURVE_TOL of its level (a learning run's loss drops by percents per doubling
# of D; the paper's table: 3-8 % from 2B to 20B tokens at 310M).
FLAT_CURVE_TOL = 1e-3

_WAY_OUT = (
    "add runs with more distinct mixtures (mixsampler plan sizes a sweep for the law) "
    "or fit a law with fewer parameters"
)
_WAY_OUT_SCALE = {
    "N": "add runs at more model sizes, or fit on rows of one size (the fixed-N variant)",
    "D": "add rows at more token counts, or fit on rows of one D (the fixed-D variant)",
}


def _way_out(block_group: str | None, scale: str | None) -> str:
    if block_group is None and scale in _WAY_OUT_SCALE:
        return _WAY_OUT_SCALE[scale]
    return _WAY_OUT


def distinct_mixtures(h: np.ndarray) -> int:
    """Distinct rows of the weight matrix (to 1e-9)."""
    if len(h) == 0:
        return 0
    return int(len(np.unique(np.round(np.asarray(h, dtype=float), 9), axis=0)))


def _fmt_names(names: Sequence[str], limit: int = 6) -> str:
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[:limit]) + f", ... ({len(names)} in all)"


def _bound_warnings(
    form: Form, theta: np.ndarray, bounds: Sequence[tuple[float, float]]
) -> tuple[list[str], np.ndarray]:
    out: list[str] = []
    on = np.zeros(len(theta), dtype=bool)
    pos = form.positive
    blocks, scales = form.per_param(), form.scales()
    for j, (name, t, (lo, hi)) in enumerate(zip(form.names, theta, bounds, strict=True)):
        side = "lower" if t <= lo + BOUND_TOL else "upper" if t >= hi - BOUND_TOL else None
        if side is None:
            continue
        on[j] = True
        b = lo if side == "lower" else hi
        val, bnd = (np.exp(t), np.exp(b)) if pos[j] else (t, b)
        out.append(
            f"{name} = {val:.4g} sits on its {side} bound {bnd:.4g}: the rows do not pin it "
            f"down (its value is the search's limit, not an estimate); "
            f"{_way_out(blocks[j].group, scales[j])}"
        )
    return out, on


def _group_warnings(form: Form, n_mix: int) -> list[str]:
    out = []
    for group, names in form.groups().items():
        if len(names) > n_mix:
            out.append(
                f"{_fmt_names(names)}: the mixture term ({group}) has {len(names)} parameters "
                f"that only distinct mixtures identify, but the rows hold {n_mix} distinct "
                f"mixtures; they are not identified; {_WAY_OUT}"
            )
    return out


def _flat_warnings(form: Form, jac: np.ndarray, free: np.ndarray, loss_level: float) -> list[str]:
    """Directions v (unit, over free parameters) with RMS(J v) tiny: the data cannot see them."""
    idx = np.flatnonzero(free)
    if len(idx) == 0 or jac.shape[0] == 0:
        return []
    j = np.asarray(jac, dtype=float)[:, idx]
    if not np.all(np.isfinite(j)):
        return ["the Jacobian at the optimum is not finite: identifiability not checked"]
    _, s, vt = np.linalg.svd(j, full_matrices=False)
    rms = s / np.sqrt(j.shape[0])
    n_flat = len(idx) - int(np.sum(rms > FLAT_TOL * loss_level))
    out = []
    names = form.names
    for row, r in zip(
        vt[len(s) - n_flat :] if n_flat else [], rms[len(s) - n_flat :], strict=False
    ):
        # The parameters that carry the direction.
        big = np.argsort(-np.abs(row))
        share = np.cumsum(row[big] ** 2)
        take = big[: int(np.searchsorted(share, 0.9)) + 1]
        involved = [names[idx[i]] for i in sorted(take)]
        out.append(
            f"{_fmt_names(involved)}: a flat direction of the fit (moving them together by a "
            f"factor e changes the predictions by {r:.2g} RMS, {r / loss_level:.1e} of the "
            f"loss); the rows cannot tell them apart; {_WAY_OUT}"
        )
    if jac.shape[0] < len(idx):
        out.append(f"{len(idx)} free parameters but only {jac.shape[0]} rows")
    return out


def identifiability_warnings(
    form: Form,
    theta: np.ndarray,
    bounds: Sequence[tuple[float, float]],
    jac: np.ndarray,
    h: np.ndarray,
    y: np.ndarray,
) -> list[str]:
    """One line per identifiability problem at a fit's optimum.

    Args:
        form: the fitted form.
        theta: the optimum in fitting space (log for positive parameters).
        bounds: the search's bounds in fitting space.
        jac: d prediction / d theta at the optimum, shape (n rows, P).
        h: the rows' weights (n, k).
        y: the rows' observed losses (sets the loss level of the flatness test).

    Returns:
        Warnings (empty when the fit is identified).
    """
    theta = np.asarray(theta, dtype=float)
    out, on = _bound_warnings(form, theta, bounds)
    out += _group_warnings(form, distinct_mixtures(h))
    level = float(np.mean(np.abs(y))) if len(y) else 1.0
    out += _flat_warnings(form, jac, ~on, level or 1.0)
    return out


def on_bounds(form: Form, theta: np.ndarray, bounds: Sequence[tuple[float, float]]) -> list[str]:
    """Names of the parameters within :data:`BOUND_TOL` of a search bound (fitting space).

    Example:
        >>> f = Form("chinchilla", ("a",))
        >>> on_bounds(f, np.array([b[0] for b in f.bounds()]), f.bounds())[:2]
        ['E', 'A']
    """
    return [
        name
        for name, t, (lo, hi) in zip(form.names, np.asarray(theta, float), bounds, strict=True)
        if t <= lo + BOUND_TOL or t >= hi - BOUND_TOL
    ]


def never_learned(
    run_ids: np.ndarray,
    n_tokens: np.ndarray,
    y: np.ndarray,
    chance_loss: float | None = None,
) -> list[dict[str, object]]:
    """Runs whose loss stayed at chance (``chance_loss`` given) or whose curve is flat.

    Such a run carries no information about its mixture (its optimizer diverged or never
    started), yet the fit treats its loss as the mixture's effect; a law fitted on it
    extrapolates wildly (issue 19: 4 of 36 proxies at ln 10 gave a law 56 % off).

    Args:
        run_ids: run per row.
        n_tokens: D per row.
        y: the target's loss per row (finite).
        chance_loss: the loss of a model that learned nothing (ln(classes) for
            classification, ln(vocabulary) for uniform next-token guessing); None checks
            flat curves only.

    Returns:
        One ``{"run", "rows", "loss", "reason"}`` per run that never learned, in row order.

    Example:
        >>> never_learned(np.array(["a", "a", "b", "b"]), np.array([1, 2, 1, 2]),
        ...               np.array([2.30, 2.31, 2.0, 1.8]), chance_loss=float(np.log(10)))
        [{'run': 'a', 'rows': 2, 'loss': 2.305, 'reason': 'loss >= 0.99 x chance 2.303'}]
    """
    runs = np.asarray(run_ids).astype(str)
    d = np.asarray(n_tokens, dtype=float)
    y = np.asarray(y, dtype=float)
    out: list[dict[str, object]] = []
    for run in dict.fromkeys(runs.tolist()):
        sel = runs == run
        yr, dr = y[sel], d[sel]
        reason = None
        if chance_loss is not None and np.all(yr >= (1 - CHANCE_TOL) * chance_loss):
            reason = f"loss >= {1 - CHANCE_TOL:g} x chance {chance_loss:.4g}"
        elif (
            len(np.unique(dr)) >= 3
            and dr.max() >= 2 * dr.min()
            and np.ptp(yr) < FLAT_CURVE_TOL * float(np.mean(yr))
        ):
            reason = f"flat curve: loss moved {np.ptp(yr):.2g} over D {dr.min():.3g}-{dr.max():.3g}"
        if reason is not None:
            out.append(
                {
                    "run": run,
                    "rows": int(sel.sum()),
                    "loss": round(float(yr.mean()), 6),
                    "reason": reason,
                }
            )
    return out


def evidence(
    domains: Sequence[str], model_size: np.ndarray, n_tokens: np.ndarray, h: np.ndarray
) -> dict[str, object]:
    """What a law was fitted on (``FittedLaw.evidence``): N and D ranges, per-domain weight
    ranges and the distinct mixtures (domain order), for trust regions and extrapolation
    warnings.

    Example:
        >>> evidence(("a", "b"), np.array([1e8, 3e8]), np.array([1e9, 2e9]),
        ...          np.array([[0.5, 0.5], [0.2, 0.8]]))["weights"]
        {'a': [0.2, 0.5], 'b': [0.5, 0.8]}
    """
    h = np.asarray(h, dtype=float)
    mix = np.unique(np.round(h, 9), axis=0) if len(h) else np.empty((0, len(domains)))
    return {
        "model_size": [float(np.min(model_size)), float(np.max(model_size))],
        "n_tokens": [float(np.min(n_tokens)), float(np.max(n_tokens))],
        "weights": {
            dom: [float(h[:, j].min()), float(h[:, j].max())] for j, dom in enumerate(domains)
        },
        "mixtures": mix.tolist(),
    }
