"""The search space of one fit and its local stage, for :func:`mixsampler.laws.fit.fit`.

Owns the rows of one fit (``_Problem``), parameters in fitting space (log for positive ones),
the Huber objective with its analytic gradient, the residuals and Jacobian for
``least_squares``, one local minimisation (trust region, then an L-BFGS-B polish), and stage 3
(``_refine``: local runs, then basin-hopping or a restart). Preparing the rows, choosing the
starts and building the result stay in :mod:`mixsampler.laws.fit`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.optimize import OptimizeResult, basinhopping, least_squares, minimize

from mixsampler.laws.forms import Form
from mixsampler.laws.runtable import RunTable

if TYPE_CHECKING:  # annotations only: laws.fit imports this module
    from mixsampler.laws.fit import FitSettings

_RESID_CAP = 1e3


def _from_theta(form: Form, theta: np.ndarray) -> np.ndarray:
    """Natural-scale parameters from log space (positive ones) and raw values (the others)."""
    pos = form.positive
    return np.where(pos, np.exp(np.where(pos, theta, 0.0)), theta)


def _huber(r: np.ndarray, delta: float) -> np.ndarray:
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * a * a, delta * (a - 0.5 * delta))


def huber_objective(
    form: Form,
    ln: np.ndarray,
    ld: np.ndarray,
    h: np.ndarray,
    y: np.ndarray,
    delta: float,
    scale: float = 1.0,
) -> Any:
    """Return ``f(theta) -> (value, grad)``: scaled mean Huber loss in log-parameter space."""
    pos = form.positive
    n = y.shape[0]

    def f(theta: np.ndarray) -> tuple[float, np.ndarray]:
        p = _from_theta(form, theta)
        with np.errstate(all="ignore"):
            pred, jac, _ = form.evaluate(p, ln, ld, h, jac=True)
            r = y - pred
            val = scale * float(_huber(r, delta).mean())
            psi = np.clip(r, -delta, delta)
            assert jac is not None
            grad = -(scale / n) * (psi @ jac) * np.where(pos, p, 1.0)
        if not np.isfinite(val) or not np.all(np.isfinite(grad)):
            # Outside the law's domain (overflow): a high wall makes the line search back off.
            return 1e10, np.zeros_like(theta)
        return val, grad

    return f


def _value_only(form: Form, ln, ld, h, y, delta, scale):  # type: ignore[no-untyped-def]
    def f(theta: np.ndarray) -> float:
        with np.errstate(all="ignore"):
            pred, _, _ = form.evaluate(_from_theta(form, theta), ln, ld, h)
            v = scale * float(_huber(y - pred, delta).mean())
        return v if np.isfinite(v) else np.inf

    return f


def _random_theta(form: Form, y: np.ndarray, rng: np.random.Generator, m: int) -> np.ndarray:
    """Draw m starting points in fitting space from each block's prior (law_defs)."""
    parts = [b.prior.draw(rng, m, n, y) for b, n in zip(form.blocks, form.block_sizes, strict=True)]
    return np.concatenate(parts, axis=1) if parts else np.empty((m, 0))


def _bounds(form: Form, y: np.ndarray | None = None) -> list[tuple[float, float]]:
    return form.bounds(y)


def _to_theta(form: Form, params: Mapping[str, float]) -> np.ndarray:
    p = np.array([float(params[n]) for n in form.names])
    pos = form.positive
    if np.any(p[pos] <= 0):
        bad = [n for n, v, q in zip(form.names, p, pos, strict=True) if q and v <= 0]
        raise ValueError(f"initial parameters must be > 0 for {', '.join(bad)}")
    return np.where(pos, np.log(np.where(pos, p, 1.0)), p)


def _residuals(form: Form, ln, ld, h, y):  # type: ignore[no-untyped-def]
    """Residuals (pred - obs) and their Jacobian in log-parameter space, for least_squares."""
    pos = form.positive

    def resid(theta: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            r = form.evaluate(_from_theta(form, theta), ln, ld, h)[0] - y
        # Far outside the data's range (overflow while the trust region probes) a capped
        # residual keeps the Huber weights finite; the step is then rejected as worse.
        return np.clip(np.nan_to_num(r, nan=_RESID_CAP), -_RESID_CAP, _RESID_CAP)

    def jac(theta: np.ndarray) -> np.ndarray:
        p = _from_theta(form, theta)
        with np.errstate(all="ignore"):
            j = form.evaluate(p, ln, ld, h, jac=True)[1]
            assert j is not None
            j = j * np.where(pos, p, 1.0)
        # Huge entries (overflowing terms) would turn the solver's SVD into NaN.
        return np.clip(np.where(np.isfinite(j), j, 0.0), -1e100, 1e100)

    return resid, jac


def _local_minimize(fg, resid, rjac, theta0, bounds, settings: FitSettings) -> OptimizeResult:  # type: ignore[no-untyped-def]
    """One local minimisation of the Huber objective from theta0.

    With delta = 1e-3 nearly every residual is in Huber's linear part, so the objective is
    close to a mean absolute error: L-BFGS-B alone crawls (thousands of iterations on the
    paper's table without converging). A trust-region Gauss-Newton on the same Huber loss
    (scipy's least_squares, loss="huber", f_scale=delta: identical objective up to the 1/n
    factor) converges in a few hundred evaluations; L-BFGS-B then polishes with the exact
    analytic gradient and confirms the stationary point.
    """
    lo = np.array([b[0] for b in bounds])
    hi = np.array([b[1] for b in bounds])
    # least_squares wants a strictly interior start.
    theta0 = np.clip(theta0, lo + 1e-9 * (hi - lo), hi - 1e-9 * (hi - lo))
    nfev = 0
    x = theta0
    trf_ok, trf_msg = False, ""
    if settings.local == "trf":
        try:
            with np.errstate(all="ignore"):
                ls = least_squares(
                    resid,
                    theta0,
                    jac=rjac,
                    loss="huber",
                    f_scale=settings.delta,
                    method="trf",
                    bounds=(lo, hi),
                    x_scale="jac",
                    max_nfev=settings.maxiter,
                    # 1e-8 stops within ~1e-5 (relative) of where 1e-10 would, at a third of
                    # the evaluations on the paper's table.
                    ftol=1e-8,
                    xtol=1e-8,
                    gtol=1e-8,
                )
        except (ValueError, np.linalg.LinAlgError) as err:
            # Overflow inside the trust-region solver (a start far outside the data's
            # range): report it and let L-BFGS-B carry on from the start.
            trf_msg = f"trust-region step failed ({err})"
        else:
            nfev += int(ls.nfev)
            x = ls.x
            trf_ok, trf_msg = bool(ls.status > 0), str(ls.message)
    r = minimize(
        fg,
        np.clip(x, [b[0] for b in bounds], [b[1] for b in bounds]),
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        # After trf the polish is short; alone, L-BFGS-B gets the full budget.
        options={
            "maxiter": 100 if settings.local == "trf" else settings.maxiter,
            "gtol": 1e-9,
            "ftol": 1e-13,
        },
    )
    r.nfev = int(r.nfev) + nfev
    # The polish's line search often ends "ABNORMAL" at a kink of the Huber loss; the
    # trust-region run's own convergence test is the meaningful one then.
    r.trf_success = trf_ok
    if trf_ok and not r.success:
        r.message = f"{trf_msg.rstrip('.')}; L-BFGS-B polish: {r.message}"
    return r


@dataclass
class _Problem:
    """The rows of one fit, ready for the search (stage 1)."""

    law: str
    target: str
    form: Form
    sub: RunTable
    y: np.ndarray
    ln: np.ndarray
    ld: np.ndarray
    h: np.ndarray
    n_missing: int
    fixed: list[str]
    notes: list[str]
    files: list[str]


class _Search:
    """The objective of one problem and its local minimiser, counting evaluations."""

    def __init__(self, prob: _Problem, settings: FitSettings) -> None:
        f, y = prob.form, prob.y
        self.settings = settings
        # Internal scale: the objective divided by delta * mean loss reads as an MRE in %, so
        # L-BFGS-B's absolute gradient tolerance means the same on every table.
        self.scale = 100.0 / (settings.delta * float(np.mean(y)))
        self.fg = huber_objective(f, prob.ln, prob.ld, prob.h, y, settings.delta, self.scale)
        self.fv = _value_only(f, prob.ln, prob.ld, prob.h, y, settings.delta, self.scale)
        self.resid, self.rjac = _residuals(f, prob.ln, prob.ld, prob.h, y)
        self.bounds = f.bounds(y)
        self.nfev = 0

    def local(self, theta0: np.ndarray) -> OptimizeResult:
        r = _local_minimize(self.fg, self.resid, self.rjac, theta0, self.bounds, self.settings)
        self.nfev += int(r.nfev)
        return r


def _refine(
    search: _Search,
    starts: list[np.ndarray],
    settings: FitSettings,
    warm: bool,
    rng: np.random.Generator,
) -> tuple[OptimizeResult, int]:
    """Stage 3: a local run from each start, then basin-hopping (or a restart) from the best."""
    best = None
    agreed = False
    for s in starts:
        r = search.local(s)
        if best is not None and abs(r.fun - best.fun) <= settings.agree * abs(best.fun):
            agreed = True
        if best is None or r.fun < best.fun:
            best = r
        if agreed:
            break
    assert best is not None
    niter = 0 if agreed else settings.warm_niter if warm else settings.niter
    ok = bool(best.get("trf_success", False))
    if settings.restart == "unconverged":
        ok = ok or bool(best.get("success", False))
    if warm and niter == 0 and settings.restart != "never" and not ok:
        # The joint law's exponents creep towards large values (its exp-linear limit); a
        # restart with a fresh trust region goes on where the first run ran out.
        r = search.local(best.x)
        if r.fun < best.fun:
            best = r
    nit = 0
    if niter > 0:
        bh = basinhopping(
            search.fg,
            best.x,
            niter=niter,
            T=settings.temperature,
            stepsize=settings.stepsize,
            minimizer_kwargs={"method": lambda fun, x0, *a, **kw: search.local(x0)},
            rng=np.random.default_rng(rng.integers(2**63)),
        )
        nit = int(bh.nit)
        if bh.fun < best.fun:
            # The local run that found bh.x (same x and fun), with its own convergence report.
            best = bh.lowest_optimization_result
    return best, nit
