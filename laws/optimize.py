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

Example:
    >>> laws_ = load_laws("LAW.json")  # doctest: +SKIP
    >>> res = optimize(laws_, model_size=7e9, n_tokens=1.5e11, min_weight=0.01)  # doctest: +SKIP
    >>> res.weights, res.predicted_loss  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from laws.fitted import FittedLaw
from laws.forms import D_SCALE, N_SCALE

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


ValueGrad = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
_EPS = np.finfo(float).eps


def _fw_vertex(g: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The vertex of {lo <= v <= hi, sum v = 1} minimizing g.v, one per row of ``g``.

    v starts at the lower bounds and fills the remaining mass into the domains of smallest
    gradient first, each up to its upper bound.
    """
    g = np.atleast_2d(g)
    order = np.argsort(g, axis=1)
    caps = (hi - lo)[order]
    before = np.cumsum(caps, axis=1) - caps
    fill = np.clip((1.0 - lo.sum()) - before, 0.0, caps)
    v = np.broadcast_to(lo, g.shape).copy()
    np.put_along_axis(v, order, lo[order] + fill, axis=1)
    return v


def _fw_gap(h: np.ndarray, g: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Frank-Wolfe gap max_v g.(h - v) over the feasible set: 0 exactly at a KKT point.

    h - v sums to 0, so a common shift of g cancels; it is removed before the dot product
    because for the joint and full laws it is 200-2,500x the part that matters and would
    otherwise swamp the gap in round-off.
    """
    h, g = np.atleast_2d(h), np.atleast_2d(g)
    gc = g - g.mean(axis=1, keepdims=True)
    return np.maximum(np.einsum("ij,ij->i", gc, h - _fw_vertex(g, lo, hi)), 0.0)


def _mirror_descent(
    vg: ValueGrad, h: np.ndarray, lo: np.ndarray, hi: np.ndarray, iters: int, tol: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Exponentiated gradient from every row of ``h`` at once, with Armijo backtracking.

    The step uses g minus its h-weighted mean: the multiplicative update and the KL projection
    are invariant to a common shift of g, and centring keeps that true in floating point
    (the clip at +-50 only guards exp against overflow and no longer saturates every
    coordinate at once). A trial is accepted only if it lowers the true objective by the
    Armijo fraction of the linear prediction (to round-off: that of f, plus the common part
    of g times the round-off of sum h, which dominates for joint and full); eta then grows x1.5,
    else halves. Rows stop at gap <= tol. Returns h, f, g and iterations per row.
    """
    f, g = vg(h)
    eta = 1.0 / (np.ptp(g, axis=1) + 1e-300)
    nit = np.zeros(len(h), dtype=int)
    active = _fw_gap(h, g, lo, hi) > tol
    for _ in range(iters):
        if not active.any():
            break
        gc = g - np.einsum("ij,ij->i", h, g)[:, None]
        step = np.clip(eta[:, None] * gc, -50.0, 50.0)
        trial = project_capped_simplex(h * np.exp(-step), lo, hi)
        ft, gt = vg(trial)
        pred = np.einsum("ij,ij->i", gc, trial - h)
        noise = 8 * _EPS * (np.abs(f) + np.einsum("ij,ij->i", np.abs(g), h))
        ok = active & (ft <= f + 1e-4 * pred + noise)
        h = np.where(ok[:, None], trial, h)
        f, g = np.where(ok, ft, f), np.where(ok[:, None], gt, g)
        eta = np.where(ok, eta * 1.5, eta * 0.5)
        nit += active
        active &= (_fw_gap(h, g, lo, hi) > tol) & (eta * np.ptp(g, axis=1) > 1e-14)
    return h, f, g, nit


def _newton_step(vg: ValueGrad, h: np.ndarray, g: np.ndarray, free: np.ndarray) -> np.ndarray:
    """Newton step on the face {sum d = 0, d = 0 off ``free``}; |eigenvalues| where not convex.

    The face is spanned by b_j = e_j - e_r (r the largest free weight), and its Hessian is
    taken by central differences of the analytic gradient along those directions, which stay
    on sum h = 1: along the normal direction the joint and full laws curve 1e6-1e9x more than
    on the simplex, and coordinate steps would mix that into the face. Steps are relative
    (1e-5 h_j), following the laws' h^gamma singularities; one call evaluates every point.
    """
    idx = np.flatnonzero(free)
    r = idx[np.argmax(h[idx])]
    others = idx[idx != r]
    m = len(others)
    basis = np.zeros((len(h), m))
    basis[others, np.arange(m)] = 1.0
    basis[r] = -1.0
    # h_r must resolve the step too (h_r +- 1e-18 rounds to h_r): at least 1e-8 h_r.
    eps = np.maximum(1e-5 * h[others], 1e-8 * h[r])
    central = h[others] > eps
    plus = h + (basis * eps).T
    minus = np.where(central[:, None], h - (basis * eps).T, h)
    _, gg = vg(np.concatenate([plus, minus]))
    dg = (gg[:m] - gg[m:]) / np.where(central, 2 * eps, eps)[:, None]
    hess = dg @ basis
    hess = 0.5 * (hess + hess.T)
    # Jacobi scaling first: a weight near 0 with gamma < 1 curves 1e12x more than the rest,
    # and an eigenvalue floor relative to it would freeze every other direction.
    diag = np.abs(np.diag(hess))
    sc = 1.0 / np.sqrt(np.maximum(diag, 1e-12 * diag.max(initial=0.0) + 1e-300))
    gb = sc * (g @ basis)
    w, v = np.linalg.eigh(sc[:, None] * hess * sc[None, :])
    floor = max(1e-8 * np.abs(w).max(initial=0.0), 1e-6 * float(np.linalg.norm(gb)), 1e-300)
    return basis @ (-sc * (v @ ((v.T @ gb) / np.maximum(np.abs(w), floor))))


def _newton_polish(
    vg: ValueGrad, h: np.ndarray, lo: np.ndarray, hi: np.ndarray, iters: int, tol: float
) -> tuple[np.ndarray, float, float, int]:
    """Active-set projected Newton from one point until the Frank-Wolfe gap is <= tol.

    Free coordinates: those strictly inside their bounds, plus bound ones the Frank-Wolfe
    vertex would move (KKT violated), minus any the step would push out. The step length
    is the largest that stays feasible, backtracked (Armijo on the true objective); a
    coordinate that reaches its bound is set to it exactly. Returns h, f, gap, iterations.
    """
    f, g = (a[0] for a in vg(h[None]))
    gap, it = float(_fw_gap(h, g, lo, hi)[0]), 0
    while gap > tol and it < iters:
        it += 1
        # Within 1e-10 of a bound counts as on it (its share of the gap is below tol), so a
        # weight creeping to 0 along h^-0.1 does not hold up the rest of the face.
        at_lo, at_hi = h <= lo + 1e-10, h >= hi - 1e-10
        v = _fw_vertex(g, lo, hi)[0]
        free = ~(at_lo | at_hi) | (np.abs(v - h) > 1e-10)
        d = np.zeros_like(h)
        for _ in range(len(h)):
            if free.sum() < 2:
                break
            d = _newton_step(vg, h, g, free)
            out = (at_lo & (d < 0)) | (at_hi & (d > 0))
            if not out.any():
                break
            free &= ~out
        if free.sum() < 2 or not np.any(d):
            d = v - h  # no face to move on: a Frank-Wolfe step, which the gap says descends
        with np.errstate(divide="ignore", invalid="ignore"):
            room = np.where(d < 0, (lo - h) / d, np.where(d > 0, (hi - h) / d, np.inf))
        t = min(1.0, float(room.min()))
        slope = float((g - g.mean()) @ d)
        # f is known to round-off in f plus the common gradient times the round-off of sum h.
        noise = 8 * _EPS * (abs(f) + float(np.abs(g) @ h))
        for _ in range(60):
            trial = np.clip(h + t * d, lo, hi)
            if t == room.min():
                trial[np.argmin(room)] = (lo if d[np.argmin(room)] < 0 else hi)[np.argmin(room)]
            trial = project_capped_simplex(trial, lo, hi)[0]  # round-off of sum h only
            ft, gt = (a[0] for a in vg(trial[None]))
            if ft <= f + 1e-4 * t * slope + noise:
                break
            t *= 0.5
        if t * np.abs(d).max() < 1e-12:
            # Newton is stuck (a bound blocking every step, or no decrease within round-off
            # far from the optimum): a burst of mirror descent moves on, then Newton resumes.
            start = project_capped_simplex(np.maximum(h, lo + 1e-12), lo, hi)
            x, fx, gx, n = _mirror_descent(vg, start, lo, hi, min(50, iters - it), tol)
            it += int(n[0])
            if fx[0] > f + noise:
                continue
            trial, ft, gt = x[0], fx[0], gx[0]
        h, f, g = trial, ft, gt
        gap = float(_fw_gap(h, g, lo, hi)[0])
    return h, float(f), gap, it


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


def _starts(k: int, lo: np.ndarray, hi: np.ndarray, n_starts: int, seed: int) -> np.ndarray:
    """Uniform, the bounds' centre, then Dirichlet draws (half of them near the corners)."""
    rng = np.random.default_rng(seed)
    starts = [np.full(k, 1.0 / k), 0.5 * (lo + hi)]
    m = max(n_starts - 2, 0)
    starts += list(rng.dirichlet(np.ones(k), size=m - m // 2))
    starts += list(rng.dirichlet(np.full(k, 0.3), size=m // 2))
    h = project_capped_simplex(np.array(starts[:n_starts]), lo, hi)
    # Strictly inside where the box allows, so the multiplicative updates can move every
    # coordinate (a weight at exactly 0 would stay there).
    return project_capped_simplex(np.maximum(h, 1e-9), lo, hi)


def _solve(
    vg: ValueGrad, h0: np.ndarray, lo: np.ndarray, hi: np.ndarray, max_iter: int, tol: float
) -> tuple[np.ndarray, float, float, int, int]:
    """Mirror descent from every start, then Newton polish of each distinct basin.

    ``tol`` is absolute on the Frank-Wolfe gap. Returns the best point, its f, gap and
    iterations, and how many distinct stationary points the starts reached.
    """
    f0 = vg(h0)[0]
    if np.isfinite(f0).any():
        h0, f0 = h0[np.isfinite(f0)], f0[np.isfinite(f0)]
    loose = max(1e-4 * float(np.abs(f0).max()), tol)
    # Mirror descent finds the basins; slow starts (a weight creeping to 0) are left to
    # Newton, which gets there in a few steps, rather than holding up every start.
    h, f, _, nit = _mirror_descent(vg, h0, lo, hi, min(max(max_iter // 2, 1), 40), loose)
    # Starts that reached the same basin are polished once (the lowest of each cluster).
    reps: list[int] = []
    for i in np.argsort(f):
        if all(np.abs(h[i] - h[j]).max() > 0.05 for j in reps):
            reps.append(int(i))
    cands = []
    for i in reps:
        x, fx, gap, it = _newton_polish(vg, h[i], lo, hi, max_iter - int(nit[i]), tol)
        cands.append((fx, gap, int(nit[i]) + it, x))
    best = min(cands, key=lambda c: c[0])
    certified = [c for c in cands if c[1] <= tol and c[0] <= best[0] + tol]
    fx, gap, it, x = min(certified, key=lambda c: c[0]) if certified else best
    n_opt = len({round(c[0] / max(tol, 1e-300)) for c in cands if c[1] <= tol})
    return x, fx, gap, it, n_opt


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
