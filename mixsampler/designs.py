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

__all__ = ["DESIGNS", "design_weights"]

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


def _grid_design(k: int, n: int, m: float, steps: int | None, seed: int) -> np.ndarray:
    """Seeded subset of the compositions of S into k parts, divided by S."""
    if steps is None:
        # A step near 1/(2k) reproduces the paper's grid (k=7, m=0.02 -> S=13); grow S until the
        # grid has room for n distinct points.
        steps = max(1, math.ceil(2 * k * (1.0 - k * m)))
        while math.comb(steps + k - 1, k - 1) < n:
            steps += 1
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


def _compositions(total: int, k: int):
    """All k-tuples of non-negative integers summing to total, in lexicographic order."""
    if k == 1:
        yield (total,)
        return
    for first in range(total + 1):
        for rest in _compositions(total - first, k - 1):
            yield (first, *rest)


def _dirichlet_design(k: int, n: int, alpha: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet(np.full(k, float(alpha)), size=n)


def _sobol_design(k: int, n: int, seed: int) -> np.ndarray:
    from scipy.stats import qmc

    # Draw a power of two (Sobol's balance property holds for those) and keep the first n.
    u = qmc.Sobol(d=k, scramble=True, seed=seed).random_base2(max(1, math.ceil(math.log2(n))))[:n]
    e = -np.log1p(-np.clip(u, 0.0, 1.0 - 1e-12))
    return e / e.sum(axis=1, keepdims=True)
