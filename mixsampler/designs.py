"""Mixture designs on the simplex for :func:`mixsampler.plan.make_plan`: grid, Dirichlet, Sobol.

Owns how the mixtures of a proxy sweep are drawn (see :mod:`mixsampler.plan` for when to use
which) and the shift that gives every domain its minimum weight; the sweep around them (model
sizes, token budgets, runs, configs) stays in :mod:`mixsampler.plan`.

Example:
    >>> design_weights("grid", 3, 4, 0.02, None, 1.0, 0).shape
    (4, 3)
"""

from __future__ import annotations

import math

import numpy as np

from mixsampler.checks import check_int

__all__ = [
    "DESIGNS",
    "capped_design_weights",
    "count_capped_grid",
    "default_grid_steps",
    "design_weights",
    "grid_caps",
]

DESIGNS: tuple[str, ...] = ("grid", "dirichlet", "sobol")


def design_weights(
    design: str,
    k: int,
    n_mixtures: int,
    min_weight: float,
    grid_steps: int | None,
    alpha: float,
    seed: int,
) -> np.ndarray:
    """``n_mixtures`` mixtures of ``design`` over ``k`` domains, each weight >= ``min_weight``."""
    if design == "grid":
        x = _grid_design(k, n_mixtures, min_weight, grid_steps, seed)
    elif design == "dirichlet":
        if not (isinstance(alpha, (int, float)) and alpha > 0):
            raise ValueError(f"alpha must be a positive number, got {alpha!r}")
        x = _dirichlet_design(k, n_mixtures, alpha, seed)
    else:
        x = _sobol_design(k, n_mixtures, seed)
    weights = min_weight + (1.0 - k * min_weight) * x
    weights /= weights.sum(axis=1, keepdims=True)
    return weights


def default_grid_steps(k: int, n: int, min_weight: float) -> int:
    """The grid resolution ``S`` the grid design uses when none is given.

    A step near ``1 / (2k)`` reproduces the paper's grid (k=7, m=0.02 -> S=13); ``S`` grows
    until the grid has room for ``n`` distinct points.

    Example:
        >>> default_grid_steps(7, 20, 0.02), default_grid_steps(2, 10, 0.02)
        (13, 9)
    """
    steps = max(1, math.ceil(2 * k * (1.0 - k * min_weight)))
    while math.comb(steps + k - 1, k - 1) < n:
        steps += 1
    return steps


def grid_caps(upper: np.ndarray, min_weight: float, steps: int) -> np.ndarray:
    """Per domain, the largest grid count ``c_i`` whose weight stays under its cap.

    On the grid ``h_i = m + (1 - k m) c_i / S``, so ``h_i <= upper_i`` is ``c_i <= u_i`` with
    ``u_i = floor((upper_i - m) S / (1 - k m))``, clipped to ``[-1, S]``; ``-1``: not even the
    minimum weight fits under the cap.

    Example:
        >>> grid_caps(np.array([1.0, 0.2, 0.01]), 0.02, 10).tolist()
        [10, 1, -1]
    """
    upper = np.asarray(upper, dtype=float)
    free = 1.0 - upper.size * min_weight
    # The 1e-9 keeps a cap that lands exactly on a grid point (up to rounding) on it.
    u = np.floor((upper - min_weight) / free * steps + 1e-9)
    return np.clip(u, -1, steps).astype(int)


def count_capped_grid(steps: int, caps: np.ndarray) -> int:
    """How many compositions of ``steps`` into ``len(caps)`` parts have ``c_i <= caps[i]``.

    Example:
        >>> count_capped_grid(4, np.array([4, 4])), count_capped_grid(4, np.array([1, 4]))
        (5, 2)
    """
    if (np.asarray(caps) < 0).any():
        return 0
    return _capped_counts(steps, caps)[steps]


def capped_design_weights(
    design: str,
    k: int,
    n_mixtures: int,
    min_weight: float,
    grid_steps: int | None,
    alpha: float,
    seed: int,
    upper: np.ndarray,
) -> np.ndarray:
    """:func:`design_weights` with ``h_i <= upper[i]`` for every mixture (data caps).

    - ``grid``: the grid at the resolution the uncapped design uses (``grid_steps`` or
      :func:`default_grid_steps`), filtered to the points under the caps, then the same seeded
      subset. Capping never makes the grid finer: mixtures stay a grid step apart.
    - ``dirichlet`` / ``sobol``: the design's draws, those outside the caps rejected (so the
      mixtures follow the design's distribution restricted to the capped simplex; Sobol
      points keep their order). If fewer than 1 in 1000 draws fall inside, every draw is
      scaled into the capped simplex instead (the KL projection ``optimize`` uses,
      :func:`mixsampler.laws.optimize.project_capped_simplex`): rejection would take too long.

    With no cap below a domain's largest possible weight, the result is
    :func:`design_weights`' exactly.

    Raises:
        ValueError: the caps leave fewer than ``n_mixtures`` grid points, or no mixture at all
            (callers check first, with a message naming the domains and sizes).

    Example:
        >>> w = capped_design_weights("sobol", 3, 8, 0.02, None, 1.0, 0, np.array([0.1, 1, 1]))
        >>> bool((w[:, 0] <= 0.1 + 1e-12).all()), w.shape
        (True, (8, 3))
    """
    upper = np.minimum(np.asarray(upper, dtype=float), 1.0)
    top = 1.0 - (k - 1) * min_weight  # the largest weight a domain can have
    if upper.shape != (k,):
        raise ValueError(f"upper must hold one cap per domain ({k}), got shape {upper.shape}")
    if (upper >= top - 1e-12).all():
        return design_weights(design, k, n_mixtures, min_weight, grid_steps, alpha, seed)
    free = 1.0 - k * min_weight
    xcap = (upper - min_weight) / free  # the caps on the design's own simplex point x
    if (xcap < -1e-12).any() or xcap.clip(0).sum() < 1.0 - 1e-12:
        raise ValueError(
            f"caps {upper.tolist()} leave no mixture with min_weight {min_weight} on {k} domains"
        )
    if design == "grid":
        if grid_steps is None:
            grid_steps = default_grid_steps(k, n_mixtures, min_weight)
        else:
            check_int("grid_steps", grid_steps, low=1)
        x = _capped_grid(k, n_mixtures, grid_steps, grid_caps(upper, min_weight, grid_steps), seed)
    else:
        if design == "dirichlet" and not (isinstance(alpha, (int, float)) and alpha > 0):
            raise ValueError(f"alpha must be a positive number, got {alpha!r}")
        x = _capped_draws(design, k, n_mixtures, alpha, seed, xcap)
    weights = min_weight + free * x
    weights /= weights.sum(axis=1, keepdims=True)
    return weights


def _capped_grid(k: int, n: int, steps: int, caps: np.ndarray, seed: int) -> np.ndarray:
    size = count_capped_grid(steps, caps)
    if size < n:
        raise ValueError(
            f"the grid with grid_steps={steps} holds {size} points under the caps, fewer than"
            f" the {n} mixtures asked for"
        )
    rng = np.random.default_rng(seed)
    if size <= 200_000:
        # The same enumeration order and subset as the uncapped grid: no cap, same points.
        comps = np.array(list(_compositions(steps, k, tuple(caps.tolist()))), dtype=float)
        return comps[np.sort(rng.choice(size, size=n, replace=False))] / steps
    # Too many to enumerate: draw capped compositions uniformly, part by part, each value
    # weighted by how many completions of the rest it leaves.
    seen: set[tuple[int, ...]] = set()
    tails = [_capped_counts(steps, caps[j:]) for j in range(k)]
    while len(seen) < n:
        left, c = steps, []
        for j in range(k - 1):
            options = range(min(int(caps[j]), left) + 1)
            counts = np.array([tails[j + 1][left - v] for v in options], dtype=float)
            v = int(rng.choice(len(counts), p=counts / counts.sum()))
            c.append(v)
            left -= v
        c.append(left)
        seen.add(tuple(c))
    return np.array(sorted(seen), dtype=float) / steps


def _capped_counts(steps: int, caps: np.ndarray) -> list[int]:
    """``[count_capped_grid(t, caps) for t in range(steps + 1)]`` in one pass (exact ints)."""
    ways = [1] + [0] * steps  # ways[t]: compositions of t over the domains so far
    for u in np.asarray(caps).tolist():
        prefix = np.concatenate([[0], np.cumsum(ways, dtype=object)])
        ways = [int(prefix[t + 1] - prefix[max(0, t - u)]) for t in range(steps + 1)]
    return ways


def _capped_draws(
    design: str, k: int, n: int, alpha: float, seed: int, xcap: np.ndarray
) -> np.ndarray:
    """The first ``n`` draws of the design inside ``x <= xcap``, or all projected into it."""
    from mixsampler.laws.optimize import project_capped_simplex

    def draws(m: int) -> np.ndarray:
        # The same seed gives the same sequence prefix for any m (Dirichlet rows, Sobol points).
        if design == "dirichlet":
            return _dirichlet_design(k, m, alpha, seed)
        return _sobol_design(k, m, seed)

    inside = lambda x: (x <= xcap + 1e-12).all(axis=1)  # noqa: E731
    m = max(1024, 64 * n)
    while True:
        x = draws(m)
        ok = inside(x)
        if ok.sum() >= n:
            return x[ok][:n]
        if ok.mean() < 1e-3 or m >= 2**22:
            return project_capped_simplex(draws(n), np.zeros(k), np.minimum(xcap, 1.0))
        m *= 4


def _grid_design(k: int, n: int, m: float, steps: int | None, seed: int) -> np.ndarray:
    """Seeded subset of the compositions of S into k parts, divided by S."""
    if steps is None:
        steps = default_grid_steps(k, n, m)
    else:
        check_int("grid_steps", steps, low=1)
    size = math.comb(steps + k - 1, k - 1)
    if size < n:
        raise ValueError(
            f"grid_steps={steps} gives {size} grid points for {k} domains, fewer than the {n}"
            " mixtures asked for; raise grid_steps or lower n_mixtures"
        )
    rng = np.random.default_rng(seed)
    if size <= 200_000:
        comps = np.array(list(_compositions(steps, k)), dtype=float)
        picked = comps[np.sort(rng.choice(size, size=n, replace=False))]
    else:
        # Too many to enumerate: rejection-sample distinct compositions (stars and bars).
        seen: set[tuple[int, ...]] = set()
        while len(seen) < n:
            bars = np.sort(rng.choice(steps + k - 1, size=k - 1, replace=False))
            c = np.diff(np.concatenate([[-1], bars, [steps + k - 1]])) - 1
            seen.add(tuple(int(v) for v in c))
        picked = np.array(sorted(seen), dtype=float)
    return picked / steps


def _compositions(total: int, k: int, caps: tuple[int, ...] | None = None):
    """All k-tuples of non-negative integers summing to total (each at most its cap), in
    lexicographic order."""
    cap = total if caps is None else caps[0]
    if k == 1:
        if total <= cap:
            yield (total,)
        return
    rest_caps = None if caps is None else caps[1:]
    for first in range(min(total, cap) + 1):
        for rest in _compositions(total - first, k - 1, rest_caps):
            yield (first, *rest)


def _dirichlet_design(k: int, n: int, alpha: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet(np.full(k, float(alpha)), size=n)


def _sobol_design(k: int, n: int, seed: int) -> np.ndarray:
    from scipy.stats import qmc

    # Draw a power of two (Sobol's balance property holds for those) and keep the first n.
    u = qmc.Sobol(d=k, scramble=True, seed=seed).random_base2(max(1, math.ceil(math.log2(n))))[:n]
    e = -np.log1p(-np.clip(u, 0.0, 1.0 - 1e-12))
    return e / e.sum(axis=1, keepdims=True)
