"""Optimal domain weights: minimize the predicted loss over the simplex (paper sec. 5).

Beyond the paper's plain simplex it handles per-domain bounds: a minimum weight, a maximum
weight, and data availability, h_i * D <= max_repeat_i * available_i (a domain cannot supply
more tokens than it has times the repetitions allowed).

The search is right on every law form by construction. For the joint and full laws the
gradient in h is almost all common to every domain (min|g| / ptp(g) of 200-2,500), which
means nothing on the simplex, so every stage depends on g only up to a common shift:

1. exponentiated gradient on g minus its weighted mean, from several starts at once (the laws
   are not convex in h), with Armijo backtracking on the true objective;
2. per distinct basin, active-set Newton on the face of the bounds, its Hessian taken along
   directions that stay on sum h = 1;
3. the certificate: the Frank-Wolfe gap max_v g.(h - v) over the feasible set, 0 exactly at a
   KKT point and an upper bound on the suboptimality when the objective is convex.
   ``success`` is True exactly when the returned point's gap is <= tol x max(|f|, 1).

This module owns the problem (bounds, objective, result); the stages themselves are in
:mod:`laws.optimize_solver`.

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

from mixsampler.laws.fitted import FittedLaw
from mixsampler.laws.forms import D_SCALE, N_SCALE
from mixsampler.laws.optimize_solver import ValueGrad, _solve, _starts, project_capped_simplex
from mixsampler.laws.optimize_solver import (
    _fw_gap as _fw_gap,  # re-exported: tests check the certificate
)

__all__ = ["OptimizeResult", "optimize", "feasible_bounds", "project_capped_simplex"]


@dataclass
class OptimizeResult:
    """Outcome of :func:`optimize`, in the style of ``scipy.optimize.OptimizeResult``.

    Attributes:
        weights: optimal weight per domain.
        x: the same weights as an array, in ``domains`` order.
        fun: objective value (weighted sum of predicted losses).
        predicted_loss: predicted loss per target at ``x``.
        success: True exactly when ``gap`` <= tol x max(|fun|, 1): the weights are a KKT
            point of the constrained problem to tolerance (the lowest the starts found).
        message: what happened.
        nit: mirror-descent iterations of the best start.
        domains: domain order of ``x``.
        objective: target weights of the objective.
        model_size: N the weights are for.
        n_tokens: D the weights are for.
        law: the law name (or target -> name if they differ).
        lower: the lower bound per domain used.
        upper: the upper bound per domain used.
        gap: Frank-Wolfe gap at ``x``, max over feasible v of grad.(x - v): 0 exactly at a
            KKT point, and an upper bound on fun - optimum when the objective is convex.
        warnings: the laws' own warnings (identifiability), prefixed by target.
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
    warnings: tuple[str, ...] = ()

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
            "gap": self.gap,
            "warnings": list(self.warnings),
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


def _objective(
    laws_: dict[str, FittedLaw], objective: Mapping[str, float] | None
) -> dict[str, float]:
    if objective is None:
        return {t: 1.0 / len(laws_) for t in laws_}
    obj = {str(t): float(w) for t, w in objective.items()}
    unknown = sorted(set(obj) - set(laws_))
    if unknown:
        raise ValueError(
            f"objective names target(s) {', '.join(unknown)} without a law; laws are for "
            f"{', '.join(laws_)}"
        )
    if any(not math.isfinite(w) or w < 0 for w in obj.values()) or sum(obj.values()) <= 0:
        raise ValueError(f"objective weights must be >= 0 and not all 0, got {obj}")
    return obj


def _value_grad(
    laws_: dict[str, FittedLaw], obj: dict[str, float], domains: tuple[str, ...], n: float, d: float
) -> ValueGrad:
    """sum_t w_t L_t(N, D, h) and its gradient in h, rows of h in ``domains`` order.

    (N, D) is fixed for the whole search, so its logs are taken once and each call goes
    straight to the form (the broadcasting in ``FittedLaw.predict`` costs more than the law).
    """
    terms = []
    for t, w in obj.items():
        if w:
            law = laws_[t]
            ln, ld, _ = law.form.inputs(
                n * N_SCALE / law.n_scale, d * D_SCALE / law.d_scale, np.ones(len(domains))
            )
            perm = [law.domains.index(x) for x in domains]
            terms.append((w, law.form, law.x, ln[0], ld[0], np.argsort(perm), perm))

    def vg(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        m = h.shape[0]
        f = np.zeros(m)
        g = np.zeros_like(h)
        # A large fitted exponent can overflow away from the optimum: such a point is +inf
        # (never accepted), not an error.
        with np.errstate(over="ignore", invalid="ignore"):
            for w, form, p, ln, ld, inv, perm in terms:
                v, _, gh = form.evaluate(p, np.full(m, ln), np.full(m, ld), h[:, inv], grad_h=True)
                f += w * v
                g += w * gh[:, perm]  # type: ignore[index]
        bad = ~(np.isfinite(f) & np.isfinite(g).all(axis=1))
        f[bad], g[bad] = np.inf, 0.0
        return f, g

    return vg


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
        max_iter: iterations per start (mirror descent and Newton together).
        tol: Frank-Wolfe gap tolerance, relative to max(|objective|, 1).

    Returns:
        An :class:`OptimizeResult`; ``success`` is True exactly when the returned weights'
        gap is <= tol; non-convergence is reported, never raised.

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
    if n_starts < 1 or max_iter < 1 or not (isinstance(tol, float) and tol > 0):
        raise ValueError(
            f"n_starts and max_iter must be >= 1 and tol > 0, got {n_starts}, {max_iter}, {tol}"
        )
    laws_ = dict(fitted)
    domains = next(iter(laws_.values())).domains
    for t, law in laws_.items():
        if set(law.domains) != set(domains):
            raise ValueError(
                f"law for {t} is over domains {', '.join(law.domains)}, but the first law is "
                f"over {', '.join(domains)}"
            )
    obj = _objective(laws_, objective)
    lo, hi = feasible_bounds(
        domains,
        float(n_tokens),
        min_weight=min_weight,
        max_weight=max_weight,
        available=available,
        max_repeat=max_repeat,
    )
    vg = _value_grad(laws_, obj, domains, float(model_size), float(n_tokens))
    h0 = _starts(len(domains), lo, hi, n_starts, seed)
    f0 = np.abs(vg(h0)[0])
    scale = max(float(f0[np.isfinite(f0)].min()) if np.isfinite(f0).any() else 1.0, 1.0)
    x, fun, gap, nit, n_opt = _solve(vg, h0, lo, hi, max_iter, tol * scale)
    res = _result(laws_, obj, x, fun, gap, nit, tol * scale, lo, hi, model_size, n_tokens)
    if not res.success:
        res.message += f" (max_iter {max_iter}, {n_starts} starts)"
    elif n_opt > 1:
        res.message += f"; the best of {n_opt} distinct stationary points from {n_starts} starts"
    return res


def _result(laws_, obj, x, fun, gap, nit, tol, lo, hi, model_size, n_tokens):  # type: ignore[no-untyped-def]
    domains = next(iter(laws_.values())).domains
    preds = {
        t: float(law.predict(model_size, n_tokens, x[[domains.index(d) for d in law.domains]]))
        for t, law in laws_.items()
    }
    names = {t: law.law for t, law in laws_.items()}
    law_name: str | dict[str, str] = (
        next(iter(names.values())) if len(set(names.values())) == 1 else names
    )
    warnings = tuple(
        dict.fromkeys(f"{t}: {w}" for t, law in laws_.items() for w in getattr(law, "warnings", ()))
    )
    conv = bool(gap <= tol and math.isfinite(fun))
    if conv:
        message = f"converged: Frank-Wolfe gap {gap:.2e} <= {tol:.2e} after {nit} iterations"
    else:
        message = (
            f"not converged: Frank-Wolfe gap {gap:.2e} > {tol:.2e} after {nit} iterations; "
            "raise max_iter, or accept these weights explicitly"
        )
    return OptimizeResult(
        weights={d: float(v) for d, v in zip(domains, x, strict=True)},
        x=x.copy(),
        fun=float(fun),
        predicted_loss=preds,
        success=bool(conv),
        message=message,
        nit=int(nit),
        domains=domains,
        objective=obj,
        model_size=float(model_size),
        n_tokens=float(n_tokens),
        law=law_name,
        lower={d: float(v) for d, v in zip(domains, lo, strict=True)},
        upper={d: float(v) for d, v in zip(domains, hi, strict=True)},
        gap=float(gap),
        warnings=warnings,
    )
