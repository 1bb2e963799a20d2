"""The solver behind :func:`laws.optimize.optimize`: every stage of the search on the simplex.

Owns the KL projection onto the bounded simplex, the Frank-Wolfe vertex and gap (the
certificate), exponentiated-gradient mirror descent, active-set Newton on the face of the
bounds, the starting points, and :func:`_solve`, which chains them. It sees the objective only
through a :data:`ValueGrad` callable, so it knows nothing of laws; the problem (bounds,
objective, result) is set up in :mod:`laws.optimize`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


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
