"""Optimal domain weights: minimize the predicted loss over the simplex (paper sec. 5).

Beyond the paper's plain simplex it handles per-domain bounds: a minimum weight, a maximum
weight, data availability (h_i * D <= max_repeat_i * available_i: a domain cannot supply more
tokens than it has times the repetitions allowed), and a trust region around the mixtures the
law was fitted on (by default each weight within the fitting runs' range +- 0.05).

The search, one concept in one module:

1. starts at the feasible set's vertices and edge midpoints, the fitting runs' mixtures, the
   uniform point and random points (64 by default; a solve takes milliseconds);
2. exponentiated gradient on g minus its weighted mean from every start at once, with Armijo
   backtracking on the true objective (for the joint and full laws the gradient in h is almost
   all common to every domain, which means nothing on the simplex);
3. per distinct basin, active-set Newton on the face of the bounds;
4. the certificate: the Frank-Wolfe gap max_v g.(h - v) over the feasible set, 0 exactly at a
   KKT point. A weight within 1e-6 of its bound whose gradient pushes it out is set onto the
   bound first (a weight of 1.6e-7 under an exponent of 0.0013 otherwise leaves a gap that no
   number of iterations closes). ``success`` is True exactly when the gap is <= tol x max(|f|, 1).

The label says how far the answer goes: ``global`` when every law of the objective is convex
in h on the feasible set (then a KKT point is the global optimum: the additive law with every
exponent <= 1, chinchilla, linear, simple, BiMix, Ye's laws), else ``best of S starts, B basins``.
The returned weights are always feasible (sum 1, within every bound).

Example:
    >>> laws_ = load_laws("LAW.json")  # doctest: +SKIP
    >>> res = optimize(laws_, model_size=7e9, n_tokens=1.5e11, min_weight=0.01)  # doctest: +SKIP
    >>> res.weights, res.predicted_loss, res.search  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from mixsampler.laws.fitted import FittedLaw
from mixsampler.laws.forms import D_SCALE, N_SCALE

__all__ = [
    "OptimizeResult",
    "TrustRegion",
    "optimize",
    "feasible_bounds",
    "trust_bounds",
    "convex_in_weights",
    "project_capped_simplex",
    "fw_gap",
]

TrustRegion = Literal["range", "none"]


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
    return repair_feasible(h, lo, hi)


def repair_feasible(h: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Rows of ``h`` clipped to [lo, hi] and made to sum to 1, moving each weight in
    proportion to its room: always feasible when sum(lo) <= 1 <= sum(hi).

    The exact projection can still miss sum 1 (an overflowed scale c, a row whose positive
    entries all sit on bounds: a full law with an availability limit once returned weights
    summing to 0.864); this is the last word on every point the search returns.

    Example:
        >>> repair_feasible(np.array([[0.5, 0.1]]), np.zeros(2), np.array([0.6, 1.0]))
        array([[0.54, 0.46]])
    """
    h = np.clip(np.atleast_2d(np.asarray(h, dtype=float)), lo, hi)
    h = np.where(np.isfinite(h), h, lo)
    for _ in range(3):  # one pass is exact in real arithmetic; the others mop up round-off
        slack = 1.0 - h.sum(axis=1, keepdims=True)
        room = np.where(slack > 0, hi - h, h - lo)
        # In proportion to the weight itself where that has the room: a weight of 1.6e-7
        # handed 1e-17 of round-off would move its gradient (curvature ~1e11 under h^0.0013)
        # by 1e-6, which no certificate survives. Else in proportion to the room.
        own = np.minimum(room, h - lo)
        use_own = own.sum(axis=1, keepdims=True) >= np.abs(slack)
        share = np.where(use_own, own, room)
        total = share.sum(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(total > 0, share / total, 0.0)
        h = np.clip(h + slack * share, lo, hi)
    return h


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


def fw_gap(h: np.ndarray, g: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
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
    active = fw_gap(h, g, lo, hi) > tol
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
        active &= (fw_gap(h, g, lo, hi) > tol) & (eta * np.ptp(g, axis=1) > 1e-14)
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
    # h_r must resolve the step too (h_r +- 1e-18 rounds to h_r): at least 1e-12 h_r (1e-8
    # made the step of a weight of 1.6e-7 sixty times the weight: a one-sided, wrong curvature).
    eps = np.maximum(1e-5 * h[others], 1e-12 * h[r])
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
    gap, it = float(fw_gap(h, g, lo, hi)[0]), 0
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
        gap = float(fw_gap(h, g, lo, hi)[0])
    return h, float(f), gap, it


def _starts(
    k: int,
    lo: np.ndarray,
    hi: np.ndarray,
    n_starts: int,
    seed: int,
    mixtures: np.ndarray | None = None,
) -> np.ndarray:
    """Where the search starts: structure first, then random points, ``n_starts`` at least.

    The vertices of the feasible set that put the most weight on each domain, the midpoints
    of the edges between them (a basin often sits on a face: one domain capped, two sharing
    the rest), the fitting runs' mixtures (where the law is known to be right), the uniform
    point and the bounds' centre; then Dirichlet draws (half near the corners) up to
    ``n_starts`` random ones. All strictly inside where the box allows, so the multiplicative
    updates can move every coordinate (a weight at exactly 0 would stay there).
    """
    rng = np.random.default_rng(seed)
    verts = _fw_vertex(-np.eye(k), lo, hi)
    mids = [0.5 * (verts[i] + verts[j]) for i in range(k) for j in range(i + 1, k)]
    starts = [np.full(k, 1.0 / k), 0.5 * (lo + hi), *verts, *mids]
    if mixtures is not None and len(mixtures):
        starts += list(np.asarray(mixtures, dtype=float))
    m = max(n_starts, 2)
    starts += list(rng.dirichlet(np.ones(k), size=m - m // 2))
    starts += list(rng.dirichlet(np.full(k, 0.3), size=m // 2))
    h = project_capped_simplex(np.maximum(np.array(starts), 1e-300), lo, hi)
    return project_capped_simplex(np.maximum(h, 1e-9), lo, hi)


# A weight this close to its bound, pushed out by its gradient, is taken to sit on the bound.
_SNAP = 1e-6


def _snap(
    vg: ValueGrad, h: np.ndarray, f: float, lo: np.ndarray, hi: np.ndarray
) -> tuple[np.ndarray, float, float] | None:
    """Set the weights within ``_SNAP`` of a bound whose gradient pushes them out onto it.

    Mirror descent approaches a bound geometrically and never reaches it; under h^gamma with
    gamma ~ 1e-3 the gap term g_i (h_i - lo_i) ~ gamma C h_i^gamma then hardly shrinks with h_i
    (1.6e-7 left the same gap at 3,000 and 20,000 iterations). On the bound the KKT condition
    is a sign condition and the gap is exact. Returns (h, f, gap) when the snapped point is no
    worse to round-off, else None.
    """
    f0, g = (a[0] for a in vg(h[None]))
    gc = g - g @ h
    near_lo = (h - lo < _SNAP) & (h > lo) & (gc > 0)
    near_hi = (hi - h < _SNAP) & (h < hi) & (gc < 0)
    if not (near_lo.any() or near_hi.any()):
        return None
    trial = np.where(near_lo, lo, np.where(near_hi, hi, h))
    free = ~(near_lo | near_hi)
    fixed_lo = np.where(free, lo, trial)
    fixed_hi = np.where(free, hi, trial)
    trial = repair_feasible(trial, fixed_lo, fixed_hi)[0]
    ft, gt = (a[0] for a in vg(trial[None]))
    noise = 8 * _EPS * (abs(f) + float(np.abs(g) @ h)) + 1e-12 * max(abs(f), 1.0)
    if not (np.isfinite(ft) and ft <= f + noise):
        return None
    return trial, float(ft), float(fw_gap(trial, gt, lo, hi)[0])


def _solve(
    vg: ValueGrad, h0: np.ndarray, lo: np.ndarray, hi: np.ndarray, max_iter: int, tol: float
) -> tuple[np.ndarray, float, float, int, int]:
    """Mirror descent from every start, then Newton polish of each distinct basin.

    ``tol`` is absolute on the Frank-Wolfe gap. Returns the best point, its f, gap and
    iterations, and how many distinct certified stationary points (basins) the starts reached.
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
        # Also when certified: a weight left at 5e-10 of a vertex costs up to tol in f.
        snapped = _snap(vg, x, fx, lo, hi)
        if snapped is not None and (snapped[2] < gap or (snapped[2] <= tol and snapped[1] <= fx)):
            x, fx, gap = snapped
        x = repair_feasible(x, lo, hi)[0]
        cands.append((fx, gap, int(nit[i]) + it, x))
    best = min(cands, key=lambda c: c[0])
    certified = [c for c in cands if c[1] <= tol and c[0] <= best[0] + tol]
    fx, gap, it, x = min(certified, key=lambda c: c[0]) if certified else best
    # Distinct basins: certified points more than 1e-3 apart in some weight.
    basins: list[np.ndarray] = []
    for c in sorted((c for c in cands if c[1] <= tol), key=lambda c: c[0]):
        if all(np.abs(c[3] - b).max() > 1e-3 for b in basins):
            basins.append(c[3])
    return x, fx, gap, it, len(basins)


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
        nit: mirror-descent and Newton iterations of the best start.
        domains: domain order of ``x``.
        objective: target weights of the objective.
        model_size: N the weights are for.
        n_tokens: D the weights are for.
        law: the law name (or target -> name if they differ).
        lower: the lower bound per domain used (constraints and trust region together).
        upper: the upper bound per domain used.
        gap: Frank-Wolfe gap at ``x``, max over feasible v of grad.(x - v): 0 exactly at a
            KKT point, and an upper bound on fun - optimum when the objective is convex.
        warnings: the laws' own warnings (identifiability), prefixed by target.
        search: ``"global"`` (convex objective, certified) or ``"best of S starts, B basins"``.
        n_starts: starting points searched.
        n_basins: distinct certified stationary points found.
        convex: whether every law of the objective is convex in h (see
            :func:`convex_in_weights`).
        trust_region: ``{"kind", "margin", "lower", "upper"}`` (kind ``"none"``: switched off
            or the laws record no evidence, with ``"why"``).
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
    search: str = ""
    n_starts: int = 0
    n_basins: int = 0
    convex: bool = False
    trust_region: dict[str, Any] = field(default_factory=dict)

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
            "search": self.search_record(),
            "trust_region": dict(self.trust_region),
        }

    def search_record(self) -> dict[str, Any]:
        """How the optimum was searched, for WEIGHTS.json."""
        return {
            "label": self.search,
            "n_starts": self.n_starts,
            "n_basins": self.n_basins,
            "convex": self.convex,
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


def trust_bounds(
    laws_: Mapping[str, FittedLaw],
    domains: tuple[str, ...],
    kind: TrustRegion = "range",
    margin: float = 0.05,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Per-domain bounds of the trust region, and its record for WEIGHTS.json.

    ``"range"``: each weight within the fitting runs' range for that domain, widened by
    ``margin`` on both sides (clipped to [0, 1]); the union over the laws' evidence
    (``FittedLaw.evidence["weights"]``). A box, not the convex hull: it keeps every domain's
    weight where the law has seen it vary, is cheap to certify against (bounds only), and
    ``margin`` reads in the units a user thinks in. ``"none"``: [0, 1]. A law without recorded
    evidence (LAW.json from before it was recorded) gives no region, and the record says why.

    Example:
        >>> lo, hi, rec = trust_bounds({}, ("a", "b"), "none")
        >>> lo, hi, rec["kind"]
        (array([0., 0.]), array([1., 1.]), 'none')
    """
    if kind not in ("range", "none"):
        raise ValueError(f"trust_region can be range, none; got {kind!r}")
    if not (isinstance(margin, (int, float)) and math.isfinite(margin) and margin >= 0):
        raise ValueError(f"trust_margin must be a finite number >= 0, got {margin!r}")
    k = len(domains)
    lo, hi = np.zeros(k), np.ones(k)
    if kind == "none":
        return lo, hi, {"kind": "none", "why": "switched off (trust_region='none')"}
    ranges: dict[str, list[float]] = {}
    missing = []
    for t, law in laws_.items():
        ev = law.evidence
        w = ev.get("weights") if ev is not None else None
        if not isinstance(w, Mapping) or not all(
            isinstance(w.get(d), (list, tuple)) and len(w[d]) == 2 for d in domains
        ):
            missing.append(t)
            continue
        for d in domains:
            a, b = (float(v) for v in w[d])
            old = ranges.get(d, [a, b])
            ranges[d] = [min(old[0], a), max(old[1], b)]
    if not ranges:
        return (
            lo,
            hi,
            {
                "kind": "none",
                "why": "the laws record no fitting mixtures (LAW.json without fit.evidence; refit "
                "with this version to get a trust region)",
            },
        )
    for i, d in enumerate(domains):
        lo[i] = max(0.0, ranges[d][0] - margin)
        hi[i] = min(1.0, ranges[d][1] + margin)
    rec: dict[str, Any] = {
        "kind": "range",
        "margin": float(margin),
        "lower": {d: float(v) for d, v in zip(domains, lo, strict=True)},
        "upper": {d: float(v) for d, v in zip(domains, hi, strict=True)},
    }
    if missing:
        rec["why"] = f"from the evidence of {', '.join(sorted(set(laws_) - set(missing)))} only"
    return lo, hi, rec


def convex_in_weights(law: FittedLaw) -> bool:
    """Whether ``law`` is convex in h on the simplex (at any fixed N, D), from its parameters.

    Only what can be shown term by term is claimed: a term constant in h (chinchilla's), a
    linear one, 1/(sum_i C_i h_i^gamma_i) with C_i > 0 and every gamma_i <= 1 (1/x is convex
    and decreasing, the sum concave), (sum_i C_i h_i)^-gamma and C / h_t^gamma with positive
    C and gamma, Ye's C exp(.) with C >= 0. The joint and full laws are not claimed.

    Example:
        >>> convex_in_weights(FittedLaw("chinchilla", ("a",), "a", {"E": 1.0, "A": 0.2,
        ...     "alpha": 0.3, "B": 0.5, "beta": 0.3}))
        True
    """
    p = law.params
    dom = law.domains

    def all_(prefix: str, cond: Callable[[float], bool]) -> bool:
        vals = [p[f"{prefix}_{d}"] for d in dom] if f"{prefix}_{dom[0]}" in p else [p[prefix]]
        return all(cond(v) for v in vals)

    if law.law in ("chinchilla", "linear"):
        return True
    if law.law == "additive":
        return all_("C", lambda v: v > 0) and all_("gamma", lambda v: v <= 1.0)
    if law.law in ("simple", "bimix"):
        return all_("C", lambda v: v > 0) and p["gamma"] > 0
    if law.law in ("ye_m1", "ye_m2", "ye_m4"):
        return all_("C", lambda v: v >= 0)
    return False


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
    trust_region: TrustRegion = "range",
    trust_margin: float = 0.05,
    seed: int = 0,
    n_starts: int = 64,
    max_iter: int = 3000,
    tol: float = 1e-10,
) -> OptimizeResult:
    """Weights minimizing sum_t objective[t] * L_t(N, D, h) under the given constraints.

    Args:
        fitted: target -> fitted law; all over the same domains.
        model_size: N of the run to plan.
        n_tokens: D of the run to plan.
        objective: target -> weight; None means equal weights over every target in ``fitted``
            (the CLI and :func:`laws.decision.decide` default to the training domains).
        min_weight: lower bound, one for all domains or per domain.
        max_weight: upper bound per domain (others 1).
        available: tokens each domain has (others unlimited).
        max_repeat: how many times a domain's tokens may be used (one for all or per domain).
        trust_region: ``"range"`` (default) keeps each weight within the fitting runs' range
            +- ``trust_margin`` (see :func:`trust_bounds`); ``"none"`` switches it off.
        trust_margin: how far beyond the fitting range a weight may go.
        seed: seeds the random starts.
        n_starts: random starts, on top of the structured ones (vertices, edge midpoints,
            fitting mixtures, uniform).
        max_iter: iterations per start (mirror descent and Newton together).
        tol: Frank-Wolfe gap tolerance, relative to max(|objective|, 1).

    Returns:
        An :class:`OptimizeResult`; ``success`` is True exactly when the returned weights'
        gap is <= tol; non-convergence is reported, never raised. Its weights are feasible.

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
    used = {t: laws_[t] for t, w in obj.items() if w}
    tlo, thi, trust = trust_bounds(used, domains, trust_region, trust_margin)
    lo2, hi2 = np.maximum(lo, tlo), np.minimum(hi, thi)
    if (lo2 > hi2 + 1e-12).any() or lo2.sum() > 1 + 1e-12 or hi2.sum() < 1 - 1e-12:
        clash = [
            f"{d}: constraints [{lo[i]:.4g}, {hi[i]:.4g}], trust region [{tlo[i]:.4g}, "
            f"{thi[i]:.4g}]"
            for i, d in enumerate(domains)
        ]
        raise ValueError(
            "the constraints leave no mixture inside the trust region (the fitting runs' "
            f"weight range +- {trust_margin:g}): " + "; ".join(clash) + ". Widen it "
            "(trust_margin / --trust-margin) or switch it off (trust_region='none' / "
            "--trust-region none) and accept an extrapolated mixture"
        )
    lo, hi = lo2, np.maximum(hi2, lo2)
    vg = _value_grad(laws_, obj, domains, float(model_size), float(n_tokens))
    mixtures = _fitting_mixtures(used, domains)
    h0 = _starts(len(domains), lo, hi, n_starts, seed, mixtures)
    f0 = np.abs(vg(h0)[0])
    scale = max(float(f0[np.isfinite(f0)].min()) if np.isfinite(f0).any() else 1.0, 1.0)
    x, _, _, nit, n_basins = _solve(vg, h0, lo, hi, max_iter, tol * scale)
    # The projection floors weights at 1e-300 (the multiplicative updates need them > 0): on
    # the bound they are the bound, not a number a user should read in WEIGHTS.json.
    x = repair_feasible(np.where(x - lo < 1e-250, lo, x), lo, hi)[0]
    fx, gx = (a[0] for a in vg(x[None]))  # at the returned (repaired) point, not before
    gap = float(fw_gap(x, gx, lo, hi)[0])
    convex = all(convex_in_weights(law) for law in used.values())
    res = _result(laws_, obj, x, float(fx), gap, nit, tol * scale, lo, hi, model_size, n_tokens)
    res.n_starts, res.n_basins, res.convex, res.trust_region = len(h0), n_basins, convex, trust
    if not res.success:
        res.search = f"not certified: best of {len(h0)} starts"
        res.message += f" (max_iter {max_iter}, {len(h0)} starts)"
    elif convex:
        res.search = "global"
        res.message += "; global: every law of the objective is convex in the weights"
    else:
        res.search = f"best of {len(h0)} starts, {n_basins} basin{'s' * (n_basins != 1)}"
        res.message += f"; {res.search} (the law is not convex in the weights: a local result)"
    return res


def _fitting_mixtures(laws_: Mapping[str, FittedLaw], domains: tuple[str, ...]) -> np.ndarray:
    """The distinct fitting mixtures the laws record (rows in ``domains`` order), as starts."""
    rows: list[list[float]] = []
    for law in laws_.values():
        ev = law.evidence
        mixes = ev.get("mixtures") if ev is not None else None
        if not isinstance(mixes, (list, tuple)):
            continue
        perm = [law.domains.index(d) for d in domains]
        for m in mixes:
            if isinstance(m, (list, tuple)) and len(m) == len(domains):
                rows.append([float(m[j]) for j in perm])
    out = np.array(rows, dtype=float).reshape(-1, len(domains))
    out = out[np.isfinite(out).all(axis=1) & (out.sum(axis=1) > 0)]
    return out[:512]  # each start costs one mirror-descent row; 512 mixtures is plenty


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
