"""laws.optimize against an independent solver and a brute-force sample, on every law form.

The laws are fitted (cheaply: the optimizer's correctness does not depend on the fit's) to the
public SlimPajama table of the paper, found at ``../shared/data/dmsl_slimpajama.csv`` from the
repository root. For each form, at several (N, D) and constraint sets, ``optimize`` must report
success, match scipy's SLSQP (many starts, same bounds) to 1e-6 in objective, and never be worse
than the best of 20,000 random mixtures within the bounds scored by the same law.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.optimize import minimize

from mixsampler.laws import FitSettings, FittedLaw, feasible_bounds, fit, load_runs, optimize
from mixsampler.laws.runtable import drop_repeated_checkpoints

REPO = Path(__file__).resolve().parents[2]
# ../shared/data/ beside the repository (CI); a worktree sits one level deeper.
DATA = next(
    (
        p / "shared" / "data" / "dmsl_slimpajama.csv"
        for p in REPO.parents[:3]
        if (p / "shared" / "data" / "dmsl_slimpajama.csv").exists()
    ),
    REPO.parent / "shared" / "data" / "dmsl_slimpajama.csv",
)
pytestmark = pytest.mark.skipif(
    not DATA.exists(), reason=f"public run table not found at {DATA} (see shared/data/README.md)"
)
# The paper's fit set, every other checkpoint: a few hundred rows fit in about a second.
FIT_SET = (
    "((model_size == 310e6 and n_tokens > 3e9) or (model_size == 680e6 and n_tokens > 7e9)"
    " or (model_size == 937e6 and n_tokens > 7e9) or (model_size == 1235e6 and n_tokens > 13e9))"
    " and (n_tokens < 9e9 or n_tokens > 17e9)"
)
CHEAP = FitSettings(n_random=100, n_starts=1, niter=0, maxiter=100)
SCALE_LAWS = ("chinchilla", "additive", "simple", "joint", "full")
FIXED_LAWS = ("ye_m1", "ye_m2", "ye_m4", "linear", "bimix")
TARGETS = ("c4", "wikipedia")


@pytest.fixture(scope="module")
def fitted() -> dict[str, dict[str, FittedLaw]]:
    table, _ = drop_repeated_checkpoints(load_runs(DATA, where=FIT_SET))
    one_scale = load_runs(DATA, where="model_size == 310e6 and n_tokens == 20e9")
    one_n = load_runs(DATA, where="model_size == 310e6 and n_tokens > 3e9 and n_tokens < 19e9")
    out: dict[str, dict[str, FittedLaw]] = {}
    for law in SCALE_LAWS:
        smaller = {"joint": "additive", "full": "joint"}.get(law)
        out[law] = {
            t: fit(table, law, t, settings=CHEAP, init=out[smaller][t] if smaller else None).law
            for t in TARGETS
        }
    for law in FIXED_LAWS:
        rows = one_n if law == "bimix" else one_scale
        out[law] = {t: fit(rows, law, t, settings=CHEAP).law for t in TARGETS}
    return out


def _reference(
    laws_: dict[str, FittedLaw],
    obj: dict[str, float],
    n: float,
    d: float,
    lo: np.ndarray,
    hi: np.ndarray,
    rng: np.random.Generator,
) -> float:
    """Best SLSQP optimum over 8 starts (uniform, the bounds' centre, Dirichlet draws)."""

    def f(h: np.ndarray) -> float:
        # A large fitted exponent overflows far from the optimum: +inf there is the truth.
        with np.errstate(over="ignore", invalid="ignore"):
            v = float(sum(w * laws_[t].predict(n, d, h) for t, w in obj.items()))
        return v if np.isfinite(v) else 1e300

    k = len(lo)
    starts = [np.full(k, 1 / k), 0.5 * (lo + hi), *rng.dirichlet(np.ones(k), 6)]
    best = np.inf
    for s in starts:
        r = minimize(
            f,
            np.clip(s, lo, hi),
            method="SLSQP",
            bounds=list(zip(lo, hi, strict=True)),
            constraints=[{"type": "eq", "fun": lambda h: h.sum() - 1.0}],
            options={"ftol": 1e-14, "maxiter": 500},
        )
        if r.success and np.all(r.x >= lo - 1e-9) and np.all(r.x <= hi + 1e-9):
            best = min(best, f(np.clip(r.x, lo, hi)))
    return best


def _sample(
    lo: np.ndarray, hi: np.ndarray, rng: np.random.Generator, m: int = 20_000
) -> np.ndarray:
    """m random mixtures within the bounds: lo + the free mass spread by Dirichlet draws."""
    out: list[np.ndarray] = []
    while sum(len(x) for x in out) < m:
        h = lo + (1 - lo.sum()) * rng.dirichlet(np.ones(len(lo)), 4 * m)
        out.append(h[(h <= hi + 1e-12).all(axis=1)])
    return np.concatenate(out)[:m]


# (N, D, constraints): no constraint, minimum weights, a cap with a minimum, availability.
CASES: list[tuple[float, float, dict[str, Any]]] = [
    (1e8, 1e9, {}),
    (2.718e9, 1.0368e11, {"min_weight": 0.02}),
    (1e9, 2e10, {"max_weight": {"c4": 0.3, "wikipedia": 0.2}, "min_weight": {"github": 0.05}}),
    (1e10, 1e12, {"available": {"wikipedia": 4e10, "book": 3e10}, "max_repeat": 2.0}),
]


@pytest.mark.parametrize("law", SCALE_LAWS + FIXED_LAWS)
def test_matches_reference_and_brute_force(
    law: str, fitted: dict[str, dict[str, FittedLaw]]
) -> None:
    laws_ = fitted[law]
    rng = np.random.default_rng(0)
    objectives = [{"c4": 1.0}, {"c4": 0.7, "wikipedia": 0.3}]
    # With the default trust region, and without it (the whole constrained simplex).
    runs = [(c, o, tr) for c in CASES for o in objectives for tr in ("range", "none")]
    for (n, d, cons), obj, tr in runs:
        res = optimize(laws_, model_size=n, n_tokens=d, objective=obj, trust_region=tr, **cons)
        where = f"{law} at N={n:.3g}, D={d:.3g}, {obj}, {cons}, trust {tr}: {res.message}"
        assert res.success, where
        lo, hi = feasible_bounds(res.domains, d, **cons)
        assert (res.x >= lo - 1e-12).all() and (res.x <= hi + 1e-12).all(), where
        assert res.x.sum() == pytest.approx(1.0, abs=1e-12), where
        # The references search the set optimize searched: the constraints and, since fitted
        # laws record their fitting mixtures, the default trust region inside them.
        tlo = np.array([res.lower[dom] for dom in res.domains])
        thi = np.array([res.upper[dom] for dom in res.domains])
        assert (tlo >= lo - 1e-12).all() and (thi <= hi + 1e-12).all(), where
        ref = _reference(laws_, obj, n, d, tlo, thi, rng)
        assert res.fun <= ref + 1e-6, f"{where}: reference found {ref:.10f} < {res.fun:.10f}"
        assert res.fun == pytest.approx(ref, abs=1e-6) or res.fun < ref, where
        h = _sample(tlo, thi, rng)
        with np.errstate(over="ignore", invalid="ignore"):
            brute = np.nanmin(sum(w * laws_[t].predict(n, d, h) for t, w in obj.items()))
        assert res.fun <= brute + 1e-12, f"{where}: a random mixture scores {brute:.10f}"
