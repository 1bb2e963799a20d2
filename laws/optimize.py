"""Optimal domain weights: minimize the predicted loss over the simplex (paper sec. 5).

Exponentiated-gradient mirror descent, h <- h * exp(-eta * grad) then a KL projection, run from
several starts at once because the laws are not convex in h. Beyond the paper's plain simplex
it handles per-domain bounds: a minimum weight, a maximum weight, and data availability,
h_i * D <= max_repeat_i * available_i (a domain cannot supply more tokens than it has times the
repetitions allowed). The KL projection onto {lo <= h <= hi, sum h = 1} is h_i = clip(c * y_i,
lo_i, hi_i) with the scalar c found by bisection, so every iterate stays feasible.

Example:
    >>> laws_ = load_laws("LAW.json")  # doctest: +SKIP
    >>> res = optimize(laws_, model_size=7e9, n_tokens=1.5e11, min_weight=0.01)  # doctest: +SKIP
    >>> res.weights, res.predicted_loss  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from laws.fitted import FittedLaw

__all__ = ["OptimizeResult", "optimize", "feasible_bounds", "project_capped_simplex"]


@dataclass
class OptimizeResult:
    """Outcome of :func:`optimize`, in the style of ``scipy.optimize.OptimizeResult``.

    Attributes:
        weights: optimal weight per domain.
        x: the same weights as an array, in ``domains`` order.
        fun: objective value (weighted sum of predicted losses).
        predicted_loss: predicted loss per target at ``x``.
        success: whether the duality gap fell below tolerance.
        message: what happened.
        nit: mirror-descent iterations of the best start.
        domains: domain order of ``x``.
        objective: target weights of the objective.
        model_size: N the weights are for.
        n_tokens: D the weights are for.
        law: the law name (or target -> name if they differ).
        lower: the lower bound per domain used.
        upper: the upper bound per domain used.
        gap: Frank-Wolfe duality gap at ``x`` (an upper bound on fun - optimum for a convex
            objective; a stationarity measure otherwise).
    """

    weights: dict[str, float]
    x: np.ndarray
    fun: float
    predicted_loss: dict[str, float]
    success: bool
    message: str
    nit: int
    domains: tuple[str, ...]
    objective: dict[str, float]
    model_size: float
    n_tokens: float
    law: str | dict[str, str]
    lower: dict[str, float] = field(default_factory=dict)
    upper: dict[str, float] = field(default_factory=dict)
    gap: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The WEIGHTS.json content (plain numbers and strings)."""
        return {
            "weights": dict(self.weights),
            "predicted_loss": dict(self.predicted_loss),
            "objective": dict(self.objective),
            "model_size": self.model_size,
            "n_tokens": self.n_tokens,
            "law": self.law,
            "fun": self.fun,
            "constraints": {"lower": dict(self.lower), "upper": dict(self.upper)},
            "success": self.success,
            "message": self.message,
            "nit": self.nit,
        }


def _per_domain(
    name: str, value: float | Mapping[str, float] | None, domains: tuple[str, ...], default: float
) -> np.ndarray:
    if value is None:
        return np.full(len(domains), default)
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(domains))
        if unknown:
            raise ValueError(
                f"{name} names unknown domain(s) {', '.join(unknown)}; domains are "
                f"{', '.join(domains)}"
            )
        out = np.array([float(value.get(d, default)) for d in domains])
    else:
        out = np.full(len(domains), float(value))
    # An unset domain may default to infinity (no availability limit); a given value may not.
    given = value if isinstance(value, Mapping) else dict.fromkeys(domains)
    bad = [
        d
        for d, v in zip(domains, out, strict=True)
        if d in given and (not math.isfinite(v) or v < 0)
    ]
    if bad:
        raise ValueError(f"{name} must be finite and >= 0, got {value} (domains {bad})")
    return out


def feasible_bounds(
    domains: tuple[str, ...],
    n_tokens: float,
    *,
    min_weight: float | Mapping[str, float] = 0.0,
    max_weight: Mapping[str, float] | float | None = None,
    available: Mapping[str, float] | None = None,
    max_repeat: float | Mapping[str, float] = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-domain bounds (lo, hi) from the constraints; raise naming them when infeasible.

    Example:
        >>> feasible_bounds(("a", "b"), 1e9, available={"a": 1e8})
        (array([0., 0.]), array([0.1, 1. ]))
    """
    lo = _per_domain("min_weight", min_weight, domains, 0.0)
    hi = np.minimum(_per_domain("max_weight", max_weight, domains, 1.0), 1.0)
    why = {d: f"max_weight {hi[i]:.6g}" for i, d in enumerate(domains) if hi[i] < 1.0}
    if available is not None:
        avail = _per_domain("available", available, domains, math.inf)
        rep = _per_domain("max_repeat", max_repeat, domains, 1.0)
        for i, d in enumerate(domains):
            if math.isfinite(avail[i]):
                cap = rep[i] * avail[i] / n_tokens
                if cap < hi[i]:
                    hi[i] = cap
                    why[d] = (
                        f"available {avail[i]:.6g} tokens x max_repeat {rep[i]:g} / "
                        f"n_tokens {n_tokens:.6g} = {cap:.6g}"
                    )
    elif isinstance(max_repeat, Mapping) and max_repeat:
        raise ValueError(
            f"max_repeat {dict(max_repeat)} needs available (tokens per domain) to mean "
            "anything, got available=None"
        )
    clash = [
        f"{d}: min_weight {lo[i]:.6g} > upper bound {hi[i]:.6g} ({why.get(d, 'max 1')})"
        for i, d in enumerate(domains)
        if lo[i] > hi[i] + 1e-12
    ]
    if clash:
        raise ValueError("infeasible constraints: " + "; ".join(clash))
    if lo.sum() > 1 + 1e-12:
        raise ValueError(
            f"infeasible constraints: min_weight sums to {lo.sum():.6g} > 1 over "
            + ", ".join(f"{d}={v:.6g}" for d, v in zip(domains, lo, strict=True) if v > 0)
        )
    if hi.sum() < 1 - 1e-12:
        raise ValueError(
            f"infeasible constraints: upper bounds sum to {hi.sum():.6g} < 1, so the weights "
            "cannot sum to 1: " + "; ".join(f"{d} <= {why[d]}" for d in why)
        )
    return lo, hi


def project_capped_simplex(y: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """KL (Bregman) projection of positive rows ``y`` onto {lo <= h <= hi, sum h = 1}.

    The solution is h = clip(c * y, lo, hi) with one scalar c per row. sum h is piecewise
    linear and non-decreasing in c with breakpoints lo_i/y_i and hi_i/y_i, so c is found
    exactly: locate the segment where the sum crosses 1 and solve the linear equation there.
    Requires sum(lo) <= 1 <= sum(hi) (see :func:`feasible_bounds`).
    """
    y = np.atleast_2d(np.asarray(y, dtype=float))
    y = np.maximum(y / y.sum(axis=1, keepdims=True), 1e-300)
    m, k = y.shape
    bp = np.sort(np.concatenate([lo / y, hi / y], axis=1), axis=1)  # (m, 2k)
    sums = np.clip(bp[:, :, None] * y[:, None, :], lo, hi).sum(axis=2)  # s at breakpoints
    idx = np.clip((sums <= 1.0).sum(axis=1) - 1, 0, 2 * k - 1)
    rows = np.arange(m)
    c_lo = bp[rows, idx]
    c_hi = np.where(idx + 1 < 2 * k, bp[rows, np.minimum(idx + 1, 2 * k - 1)], c_lo * 2 + 1)
    mid = 0.5 * (c_lo + c_hi)
    cy = mid[:, None] * y
    free = (cy > lo) & (cy < hi)
    fixed_sum = np.where(free, 0.0, np.clip(cy, lo, hi)).sum(axis=1)
    free_y = np.where(free, y, 0.0).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.where(free_y > 0, (1.0 - fixed_sum) / free_y, c_lo)
    h = np.clip(c[:, None] * y, lo, hi)
    # Round-off leaves ~1e-16 of slack; hand it to the free coordinates.
    slack = 1.0 - h.sum(axis=1)
    nfree = free.sum(axis=1)
    adj = np.where(nfree > 0, slack / np.maximum(nfree, 1), 0.0)
    return np.clip(h + free * adj[:, None], lo, hi)


def _fw_gap(h: np.ndarray, g: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Frank-Wolfe gap g.(h - v), v the vertex of the box-simplex minimizing g.v.

    v starts at the lower bounds and fills the remaining mass into the domains of smallest
    gradient first, each up to its upper bound.
    """
    order = np.argsort(g, axis=1)
    caps = (hi - lo)[order]
    room = 1.0 - lo.sum()
    before = np.cumsum(caps, axis=1) - caps
    fill = np.clip(room - before, 0.0, caps)
    v = np.broadcast_to(lo, h.shape).copy()
    np.put_along_axis(v, order, lo[order] + fill, axis=1)
    return np.einsum("ij,ij->i", g, h - v)


def optimize(
    fitted: Mapping[str, FittedLaw],
    *,
    model_size: float,
    n_tokens: float,
    objective: Mapping[str, float] | None = None,
    min_weight: float | Mapping[str, float] = 0.0,
    max_weight: Mapping[str, float] | None = None,
    available: Mapping[str, float] | None = None,
    max_repeat: float | Mapping[str, float] = 1.0,
    seed: int = 0,
    n_starts: int = 16,
    max_iter: int = 3000,
    tol: float = 1e-10,
) -> OptimizeResult:
    """Weights minimizing sum_t objective[t] * L_t(N, D, h) under the given constraints.

    Args:
        fitted: target -> fitted law; all over the same domains.
        model_size: N of the run to plan.
        n_tokens: D of the run to plan.
        objective: target -> weight; None means equal weights over every target in ``fitted``.
        min_weight: lower bound, one for all domains or per domain.
        max_weight: upper bound per domain (others 1).
        available: tokens each domain has (others unlimited).
        max_repeat: how many times a domain's tokens may be used (one for all or per domain).
        seed: seeds the random starts.
        n_starts: starts (uniform point, bounds' centre and Dirichlet draws).
        max_iter: mirror-descent iterations per start.
        tol: duality-gap tolerance, relative to the objective.

    Returns:
        An :class:`OptimizeResult`; non-convergence is reported, never raised.

    Raises:
        ValueError: bad objective, mismatched domains, or infeasible constraints (named).

    Example:
        >>> res = optimize({"c4": law}, model_size=1e9, n_tokens=2e10)  # doctest: +SKIP
    """
    if not fitted:
        raise ValueError("fitted must hold at least one law, got none")
    for name, v in (("model_size", model_size), ("n_tokens", n_tokens)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be a finite positive number, got {v!r}")
    if n_starts < 1 or max_iter < 1:
        raise ValueError(f"n_starts and max_iter must be >= 1, got {n_starts}, {max_iter}")
    laws_ = dict(fitted)
    domains = next(iter(laws_.values())).domains
    for t, law in laws_.items():
        if set(law.domains) != set(domains):
            raise ValueError(
                f"law for {t} is over domains {', '.join(law.domains)}, but the first law is "
                f"over {', '.join(domains)}"
            )
    if objective is None:
        obj = {t: 1.0 / len(laws_) for t in laws_}
    else:
        obj = {str(t): float(w) for t, w in objective.items()}
        unknown = sorted(set(obj) - set(laws_))
        if unknown:
            raise ValueError(
                f"objective names target(s) {', '.join(unknown)} without a law; laws are for "
                f"{', '.join(laws_)}"
            )
        if any(not math.isfinite(w) or w < 0 for w in obj.values()) or sum(obj.values()) <= 0:
            raise ValueError(f"objective weights must be >= 0 and not all 0, got {obj}")
    lo, hi = feasible_bounds(
        domains,
        float(n_tokens),
        min_weight=min_weight,
        max_weight=max_weight,
        available=available,
        max_repeat=max_repeat,
    )
    perms = {t: [laws_[t].domains.index(d) for d in domains] for t in obj}

    def value_grad(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        f = np.zeros(h.shape[0])
        g = np.zeros_like(h)
        for t, w in obj.items():
            if w == 0:
                continue
            p = perms[t]
            inv = np.argsort(p)
            v, gh = laws_[t].value_and_grad_h(model_size, n_tokens, h[:, inv])
            f += w * v
            g += w * gh[:, p]
        return f, g

    k = len(domains)
    rng = np.random.default_rng(seed)
    starts = [np.full(k, 1.0 / k), 0.5 * (lo + np.minimum(hi, 1.0))]
    if n_starts > 2:
        starts += list(rng.dirichlet(np.ones(k), size=n_starts - 2))
    h = project_capped_simplex(np.array(starts[:n_starts]), lo, hi)
    # Keep strictly inside where the box allows, so multiplicative updates can move every
    # coordinate (a weight at exactly 0 would stay there forever).
    h = project_capped_simplex(np.maximum(h, 1e-9), lo, hi)
    f, g = value_grad(h)
    # Step size in units of the first gradient's spread, so the first step changes weights by
    # about a factor e whatever the loss level; then adapted (x1.5 on descent, /2 otherwise).
    eta = 1.0 / (np.ptp(g, axis=1) + 1e-300)
    nit = np.zeros(h.shape[0], dtype=int)
    done = np.zeros(h.shape[0], dtype=bool)
    for it in range(max_iter):
        active = ~done
        if not active.any():
            break
        step = eta[:, None] * g
        trial = project_capped_simplex(h * np.exp(-np.clip(step, -50, 50)), lo, hi)
        ft, gt = value_grad(trial)
        better = (ft <= f) & active
        moved = np.abs(trial - h).max(axis=1)
        h = np.where(better[:, None], trial, h)
        f = np.where(better, ft, f)
        g = np.where(better[:, None], gt, g)
        eta = np.where(better, eta * 1.5, eta * 0.5)
        nit += active
        if it % 5 == 4 or not better.any():
            gap = _fw_gap(h, g, lo, hi)
            stalled = (eta * np.ptp(g, axis=1) < 1e-12) | (better & (moved < 1e-15))
            conv = (gap <= tol * np.maximum(np.abs(f), 1.0)) | stalled
            done |= conv
            if conv.any():
                # A start whose linear lower bound f - gap is already above a converged
                # start's value is (locally) beaten: stop spending iterations on it.
                best_f = f[conv].min()
                done |= f - np.maximum(gap, 0.0) > best_f + 1e-12 * max(abs(best_f), 1.0)
    gap = _fw_gap(h, g, lo, hi)
    best = int(np.argmin(f))
    x = h[best]
    preds = {
        t: float(law.predict(model_size, n_tokens, x[[domains.index(d) for d in law.domains]]))
        for t, law in laws_.items()
    }
    conv = bool(gap[best] <= max(tol * max(abs(f[best]), 1.0), 1e-9))
    names = {t: law.law for t, law in laws_.items()}
    law_name: str | dict[str, str] = (
        next(iter(names.values())) if len(set(names.values())) == 1 else names
    )
    return OptimizeResult(
        weights={d: float(v) for d, v in zip(domains, x, strict=True)},
        x=x.copy(),
        fun=float(f[best]),
        predicted_loss=preds,
        success=conv,
        message=(
            f"converged: duality gap {gap[best]:.2e}"
            if conv
            else f"stopped after {int(nit[best])} iterations with duality gap {gap[best]:.2e}"
        ),
        nit=int(nit[best]),
        domains=domains,
        objective=obj,
        model_size=float(model_size),
        n_tokens=float(n_tokens),
        law=law_name,
        lower={d: float(v) for d, v in zip(domains, lo, strict=True)},
        upper={d: float(v) for d, v in zip(domains, hi, strict=True)},
        gap=float(gap[best]),
    )
