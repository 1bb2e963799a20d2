"""Fitting a law to a run table (paper sec. 2.6), fast and deterministic.

The objective is the mean Huber loss (delta = 1e-3) of observed minus predicted loss. Positive
parameters live in log space. The search is: random-search initialisation, L-BFGS-B polishing of
the best candidates, then basin-hopping with L-BFGS-B as inner minimiser, all with the analytic
gradient of :class:`laws.forms.Form`. The joint law starts from the fitted additive law mapped
into it (gammaA = gammaB = 1, CA_i = A, CB_i = B), so its training objective can never end
above the additive law's; the full law starts from the fitted joint law likewise.

One module for one concept: the settings, the objective and its parameter space
(:func:`to_theta`, :func:`from_theta`, :func:`random_theta`, :func:`residuals`), the local
search and the stages around it (rows, starts, result).

Example:
    Rows from a known Chinchilla law (one domain), fitted back:

    >>> n, d = np.meshgrid([1e8, 3e8, 1e9], [1e9, 3e9, 1e10, 3e10])
    >>> n, d = n.ravel(), d.ravel()
    >>> y = 1.8 + 0.4 / (n / 1e9) ** 0.35 + 0.9 / (d / 1e9) ** 0.3
    >>> table = RunTable(("a",), ("a",), n, d, np.ones((12, 1)), {"a": y},
    ...                  np.array([f"run{x:g}" for x in n]))
    >>> res = fit(table, "chinchilla", "a", seed=0)
    >>> res.success, res.mre < 1e-3, round(float(res.law.predict(3e9, 1e11, [1.0])), 3)
    (True, True, 2.298)
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy.optimize import OptimizeResult, basinhopping, least_squares, minimize

from mixsampler.laws.fitted import FittedLaw
from mixsampler.laws.forms import Form
from mixsampler.laws.law_checks import evidence, identifiability_warnings, never_learned, on_bounds
from mixsampler.laws.law_defs import get_law
from mixsampler.laws.runtable import RunTable

__all__ = [
    "FitResult",
    "FitSettings",
    "fit",
    "from_theta",
    "huber_objective",
    "random_theta",
    "residuals",
    "shrink_matrix",
    "to_theta",
]

log = logging.getLogger(__name__)

_RESTARTS = ("trf", "unconverged", "never")
Objective = Literal["absolute", "relative", "huber"]
OBJECTIVES: tuple[str, ...] = ("absolute", "relative", "huber")
SIZE_WEIGHTS: tuple[str, ...] = ("row", "size")


@dataclass(frozen=True)
class FitSettings:
    """How a fit searches; stored in LAW.json with the result.

    Attributes:
        objective: what the fit minimizes. ``"absolute"`` (default, the paper's): mean Huber
            loss with threshold ``delta`` on the raw residual, nearly the mean absolute error.
            ``"relative"``: the same on the residual divided by the row's loss (times the
            mean loss, so ``delta`` keeps its meaning), nearly the MRE the fit is scored by.
            ``"huber"``: Huber with the wider threshold ``huber_scale`` on the raw residual,
            squared error for typical residuals and robust only to outliers. Measured on the
            paper's table (docs/laws.md): none extrapolates in N 20 % better than absolute.
        huber_scale: the threshold of ``objective="huber"``, in loss units (0.02 is about 1 %
            of a loss of 2.5, where most residuals of a good fit lie).
        delta: Huber threshold on the raw loss; the paper's 1e-3 makes the objective nearly
            the mean absolute error, robust to the odd bad checkpoint.
        n_random: random-search candidates; cheap (one vectorized evaluation each) and they
            keep the first L-BFGS-B runs out of the worst basins.
        n_starts: best random candidates polished by L-BFGS-B before basin-hopping.
        niter: basin-hopping iterations; each is one perturbation plus one L-BFGS-B run.
        stepsize: basin-hopping perturbation in log-parameter units (0.5 = a factor e^0.5).
        temperature: basin-hopping acceptance temperature, in units of the scaled objective
            (about the MRE in %), so it does not depend on the table's loss level.
        maxiter: evaluations per local run (trf), or iterations (lbfgsb).
        warm_start: start joint from additive and full from joint (guarantees the larger law
            is never worse on the training objective).
        warm_random_starts: random candidates also polished when there is a warm start
            (or an ``init``). On the paper's table they always ended above the warm start.
        warm_niter: basin-hopping iterations after a warm start. The optimum of the larger
            law sits next to the embedded smaller one; on the paper's table hops away from it
            never helped and cost seconds each, so by default the warm start gets a second
            local run (a fresh trust region) instead.
        local: the local minimiser: ``"trf"`` (trust-region Gauss-Newton on the Huber loss,
            then an L-BFGS-B polish) or ``"lbfgsb"`` (L-BFGS-B alone, as the paper).
        agree: stop the multi-start early, skipping the remaining starts and basin-hopping,
            once two local runs reach the best objective to this relative tolerance (two
            starts in one basin); 0 (default) always runs everything. On the paper's table
            1e-4 halves the additive law's time at the same MRE (the hops never found a lower
            objective there), but on Ye's M2 law all three starts agreed on a minimum 30x
            above the one the third hop found: agreement is not proof, so it is opt-in.
        size_weights: ``"row"`` (default, the paper's): every row weighs the same, so the
            model sizes with many runs and checkpoints dominate; ``"size"``: each model size
            weighs the same in total (a row weighs 1 / its size's row count), so the few
            large-N rows, the ones closest to an N extrapolation, count as much as the many
            small ones. The weight scales the row's residual (in the linear part of a
            delta=1e-3 Huber loss, where nearly every residual lies, that is its loss).
        size_power: a row's weight is also multiplied by (N / largest N) ** size_power
            (0: off): the larger the power, the more the fit trusts its largest models.
            Weights are normalized to mean 1 so ``delta`` and ``fun`` keep their scale.
            Measured on the paper's table (docs/laws.md, 2026-12-04), with the relative
            objective: 2 lowers the N extrapolation error 27 % (additive and joint), 4 (the
            inner held-out check's choice) 32 %, and the D and mixture errors at the largest
            size fall too; the mixture k-fold error pooled over all sizes rises 13-15 % (2)
            and 27-31 % (4), so it is opt-in, not the default.
        shrink: penalty pulling the parameters by which a law differs from the nested law
            it contains (``law_defs.Law.nested_blocks``: joint's CA_i and CB_i, full's
            Calpha_i and Cbeta_i) toward their common value in log space (0: off). The
            objective gains shrink * sum_i |log p_i - mean_j log p_j| / n_rows per block, in
            the units of the training MRE as a fraction (so 1 means: a factor e between one
            domain's parameter and the others' costs as much as 1 / n_rows of MRE on every
            row). As it grows the law tends to its nested law (joint -> additive, full ->
            joint): a prior that the mixture changes the scale terms little, which the
            few sizes of a proxy table barely identify. Measured on the paper's table
            (joint, with size_power 2): 0.1 moved the N error by -0.3 %, 1 by +3 %; kept as an
            option, off by default.
        restart: after a warm start, run the local search once more from where it stopped:
            ``"trf"`` when the trust-region run ran out of evaluations (the joint law's
            exponents creep), ``"unconverged"`` only when the run did not converge at all
            (cheaper; the bootstrap's replicates), ``"never"``.
    """

    delta: float = 1e-3
    objective: Objective = "absolute"
    huber_scale: float = 0.02
    n_random: int = 1000
    n_starts: int = 3
    niter: int = 3
    stepsize: float = 0.5
    temperature: float = 0.05
    maxiter: int = 600
    warm_start: bool = True
    warm_random_starts: int = 0
    warm_niter: int = 0
    local: str = "trf"
    restart: str = "trf"
    agree: float = 0.0
    size_weights: Literal["row", "size"] = "row"
    size_power: float = 0.0
    shrink: float = 0.0

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective can be {', '.join(OBJECTIVES)}, got {self.objective!r}")
        for name in ("delta", "stepsize", "temperature", "huber_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.warm_random_starts < 0 or self.warm_niter < 0:
            raise ValueError(
                "warm_random_starts and warm_niter must be >= 0, got "
                f"{self.warm_random_starts}, {self.warm_niter}"
            )
        for name in ("n_random", "n_starts", "maxiter"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.restart not in _RESTARTS:
            raise ValueError(f"restart can be {', '.join(_RESTARTS)}, got {self.restart!r}")
        if self.local not in ("trf", "lbfgsb"):
            raise ValueError(f"local can be trf, lbfgsb, got {self.local!r}")
        if not self.agree >= 0:
            raise ValueError(f"agree must be >= 0, got {self.agree}")
        if self.niter < 0:
            raise ValueError(f"niter must be >= 0, got {self.niter}")
        if self.size_weights not in SIZE_WEIGHTS:
            raise ValueError(
                f"size_weights can be {', '.join(SIZE_WEIGHTS)}, got {self.size_weights!r}"
            )
        if not np.isfinite(self.size_power):
            raise ValueError(f"size_power must be a finite number, got {self.size_power}")
        if not (np.isfinite(self.shrink) and self.shrink >= 0):
            raise ValueError(f"shrink must be >= 0, got {self.shrink}")

    @property
    def huber_delta(self) -> float:
        """The Huber threshold the objective uses (``huber_scale`` for ``"huber"``)."""
        return self.huber_scale if self.objective == "huber" else self.delta

    def row_weights(self, y: np.ndarray, model_size: np.ndarray | None = None) -> np.ndarray:
        """Each row's residual weight: 1, or mean(y) / y for the relative objective, times
        the size weights (``size_weights``, ``size_power``; they need ``model_size``).

        Example:
            >>> FitSettings(size_weights="size").row_weights(np.ones(4), np.array([1, 1, 1, 2]))
            array([0.66666667, 0.66666667, 0.66666667, 2.        ])
        """
        y = np.asarray(y, dtype=float)
        w = float(np.mean(y)) / y if self.objective == "relative" else np.ones(len(y))
        if self.size_weights == "row" and self.size_power == 0:
            return w
        if model_size is None:
            raise ValueError("size_weights / size_power need the rows' model_size")
        n = np.asarray(model_size, dtype=float)
        s = np.ones(len(n))
        if self.size_weights == "size":
            _, inv, counts = np.unique(n, return_inverse=True, return_counts=True)
            s = 1.0 / counts[np.asarray(inv).reshape(-1)]
        if self.size_power:
            s = s * (n / n.max()) ** self.size_power
        return w * s / s.mean()

    def describe(self) -> str:
        """The objective in words, for LAW.json."""
        if self.objective == "relative":
            out = f"mean Huber(delta={self.delta:g}) on relative residual x mean loss"
        else:
            out = f"mean Huber(delta={self.huber_delta:g}) on raw loss"
        if self.size_weights == "size":
            out += ", each model size weighing the same"
        if self.size_power:
            out += f", rows weighted by (N / max N)^{self.size_power:g}"
        if self.shrink:
            out += f", + {self.shrink:g} x L1 shrinkage of the nested law's blocks"
        return out


@dataclass
class FitResult:
    """Outcome of :func:`fit`, in the style of ``scipy.optimize.OptimizeResult``.

    Attributes:
        law: the fitted law.
        x: parameters by name.
        fun: mean Huber loss at ``x`` (on the raw loss).
        mre: training mean relative error, in %.
        success: whether the last local minimisation converged.
        message: what happened, including any fixed-scale fallback.
        nit: basin-hopping iterations run.
        nfev: objective evaluations.
        seconds: wall time of the fit.
        n_rows: rows used (with a loss for the target).
        n_missing: rows skipped because the target's loss is missing.
        fixed: the scale terms dropped because N or D was constant (``["N"]``, ...).
        warnings: identifiability problems, one line per parameter or group (a parameter on
            its bound, a mixture term with fewer distinct mixtures than parameters, a flat
            direction of the fit); also in ``law.warnings`` and logged at WARNING.
    """

    law: FittedLaw
    x: dict[str, float]
    fun: float
    mre: float
    success: bool
    message: str
    nit: int
    nfev: int
    seconds: float
    n_rows: int
    n_missing: int
    fixed: list[str] = field(default_factory=list)
    warnings: tuple[str, ...] = ()


_RESID_CAP = 1e3


def from_theta(form: Form, theta: np.ndarray) -> np.ndarray:
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
    w: np.ndarray | None = None,
    pen: np.ndarray | None = None,
) -> Any:
    """Return ``f(theta) -> (value, grad)``: scaled mean Huber loss in log-parameter space.

    ``w`` weighs each row's residual before the Huber loss (None: 1); the relative objective
    passes ``mean(y) / y``. ``pen`` (:func:`shrink_matrix`, None: none) adds the Huber loss
    of the penalty residuals ``pen @ theta``, summed and divided by the row count, as
    least_squares sees them appended to the rows (:func:`residuals`).
    """
    pos = form.positive
    n = y.shape[0]
    w = np.ones_like(y) if w is None else np.asarray(w, dtype=float)

    def f(theta: np.ndarray) -> tuple[float, np.ndarray]:
        p = from_theta(form, theta)
        with np.errstate(all="ignore"):
            pred, jac, _ = form.evaluate(p, ln, ld, h, jac=True)
            r = (y - pred) * w
            val = scale * float(_huber(r, delta).mean())
            psi = np.clip(r, -delta, delta) * w
            assert jac is not None
            grad = -(scale / n) * (psi @ jac) * np.where(pos, p, 1.0)
            if pen is not None:
                q = pen @ theta
                val += scale * float(_huber(q, delta).sum()) / n
                grad = grad + (scale / n) * (np.clip(q, -delta, delta) @ pen)
        if not np.isfinite(val) or not np.all(np.isfinite(grad)):
            # Outside the law's domain (overflow): a high wall makes the line search back off.
            return 1e10, np.zeros_like(theta)
        return val, grad

    return f


def _value_only(form: Form, ln, ld, h, y, delta, scale, w, pen=None):  # type: ignore[no-untyped-def]
    def f(theta: np.ndarray) -> float:
        with np.errstate(all="ignore"):
            pred, _, _ = form.evaluate(from_theta(form, theta), ln, ld, h)
            v = scale * float(_huber((y - pred) * w, delta).mean())
            if pen is not None:
                v += scale * float(_huber(pen @ theta, delta).sum()) / len(y)
        return v if np.isfinite(v) else np.inf

    return f


def shrink_matrix(form: Form, strength: float) -> np.ndarray | None:
    """The penalty rows of ``FitSettings.shrink``: ``strength`` x (log p_i - block mean).

    One row per parameter of each of the law's ``nested_blocks`` (law_defs) present in this
    variant; None when there is nothing to shrink. ``strength`` is in loss units (the fit
    passes shrink x mean loss, so the penalty reads in units of MRE).

    Example:
        >>> m = shrink_matrix(Form("joint", ("a", "b"), True, True), 1.0)
        >>> m.shape, m[0][np.nonzero(m[0])].tolist()
        ((4, 13), [0.5, -0.5])
    """
    if strength <= 0:
        return None
    nested = set(form.definition.nested_blocks)
    blocks = [b.name for b in form.per_param()]
    rows: list[np.ndarray] = []
    for name in dict.fromkeys(b for b in blocks if b in nested):
        idx = [i for i, b in enumerate(blocks) if b == name]
        if len(idx) < 2:
            continue
        for i in idx:
            row = np.zeros(len(blocks))
            row[idx] = -1.0 / len(idx)
            row[i] += 1.0
            rows.append(strength * row)
    return np.array(rows) if rows else None


def random_theta(form: Form, y: np.ndarray, rng: np.random.Generator, m: int) -> np.ndarray:
    """Draw m starting points in fitting space from each block's prior (law_defs)."""
    parts = [b.prior.draw(rng, m, n, y) for b, n in zip(form.blocks, form.block_sizes, strict=True)]
    return np.concatenate(parts, axis=1) if parts else np.empty((m, 0))


def to_theta(form: Form, params: Mapping[str, float]) -> np.ndarray:
    p = np.array([float(params[n]) for n in form.names])
    pos = form.positive
    if np.any(p[pos] <= 0):
        bad = [n for n, v, q in zip(form.names, p, pos, strict=True) if q and v <= 0]
        raise ValueError(f"initial parameters must be > 0 for {', '.join(bad)}")
    return np.where(pos, np.log(np.where(pos, p, 1.0)), p)


def residuals(form, ln, ld, h, y, w=None, pen=None):  # type: ignore[no-untyped-def]
    """Residuals (pred - obs) and their Jacobian in log-parameter space, for least_squares.

    ``w`` weighs each row (None: 1), as in :func:`huber_objective`; ``pen`` appends the
    penalty residuals ``pen @ theta`` (:func:`shrink_matrix`).
    """
    pos = form.positive
    w = np.ones_like(y) if w is None else np.asarray(w, dtype=float)

    def resid(theta: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            r = (form.evaluate(from_theta(form, theta), ln, ld, h)[0] - y) * w
        # Far outside the data's range (overflow while the trust region probes) a capped
        # residual keeps the Huber weights finite; the step is then rejected as worse.
        r = np.clip(np.nan_to_num(r, nan=_RESID_CAP), -_RESID_CAP, _RESID_CAP)
        return r if pen is None else np.concatenate([r, pen @ theta])

    def jac(theta: np.ndarray) -> np.ndarray:
        p = from_theta(form, theta)
        with np.errstate(all="ignore"):
            j = form.evaluate(p, ln, ld, h, jac=True)[1]
            assert j is not None
            j = j * np.where(pos, p, 1.0) * w[:, None]
        # Huge entries (overflowing terms) would turn the solver's SVD into NaN.
        j = np.clip(np.where(np.isfinite(j), j, 0.0), -1e100, 1e100)
        return j if pen is None else np.concatenate([j, pen])

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
                    f_scale=settings.huber_delta,
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
        delta = settings.huber_delta
        self.scale = 100.0 / (delta * float(np.mean(y)))
        self.w = settings.row_weights(y, prob.sub.model_size)
        # Penalty residuals in loss units: shrink x mean loss x log-deviation, so that in
        # Huber's linear part the penalty reads in units of the MRE (FitSettings.shrink).
        pen = shrink_matrix(f, settings.shrink * float(np.mean(y)))
        self.n_rows = len(y)
        self.fg = huber_objective(f, prob.ln, prob.ld, prob.h, y, delta, self.scale, self.w, pen)
        self.fv = _value_only(f, prob.ln, prob.ld, prob.h, y, delta, self.scale, self.w, pen)
        self.resid, self.rjac = residuals(f, prob.ln, prob.ld, prob.h, y, self.w, pen)
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


def _embed(src: FittedLaw, form: Form) -> dict[str, float] | None:
    """Map a fitted smaller law into a larger one it is a special case of (law_defs)."""
    d = form.definition
    if d.embed is None or src.law != d.warm_from:
        return None
    out = d.embed(src.params, form.domains, form.use_n, form.use_d)
    return out if out is not None and set(out) == set(form.names) else None


def _fingerprint(n: np.ndarray, d: np.ndarray, h: np.ndarray, y: np.ndarray) -> str:
    digest = hashlib.sha256()
    for a in (n, d, h, y):
        digest.update(np.ascontiguousarray(a, dtype="<f8").tobytes())
    return digest.hexdigest()[:16]


def _prepare(table: RunTable, law: str, target: str) -> _Problem:
    """Stage 1: pick the rows with a loss, drop constant scales, check there are enough."""
    definition = get_law(law)
    if target.endswith("_loss") and target[:-5] in table.losses:
        target = target[:-5]
    if target not in table.losses:
        raise ValueError(
            f"target can be {', '.join(table.targets) or '(none)'}, got {target!r} "
            f"(no column {target}_loss in {', '.join(table.files) or 'the table'})"
        )
    y_all = table.losses[target]
    keep = np.isfinite(y_all)
    n_missing = int((~keep).sum())
    sub = table.select(keep)
    y = y_all[keep]
    where = ", ".join(sub.files or table.files) or "the table"
    fixed: list[str] = []
    if definition.uses_n and len(y) and np.ptp(np.log(sub.model_size)) == 0:
        fixed.append("N")
    if definition.uses_d and len(y) and np.ptp(np.log(sub.n_tokens)) == 0:
        fixed.append("D")
    target_domain = target if definition.needs_target else None
    form = Form(law, table.domains, "N" not in fixed, "D" not in fixed, target_domain)
    if len(y) < form.n_params:
        raise ValueError(
            f"{where}: {len(y)} rows with {target}_loss ({n_missing} missing), but law {law} "
            f"has {form.n_params} parameters; need at least as many rows as parameters"
        )
    if definition.needs_target:
        zero = int((sub.weights[:, table.domains.index(target)] <= 0).sum())
        if zero:
            raise ValueError(
                f"{where}: law {law} needs weight_{target} > 0, but {zero} rows have it at 0"
            )
    notes: list[str] = []
    if fixed:
        const = []
        if "N" in fixed:
            const.append(f"model_size = {sub.model_size[0]:.6g}")
        if "D" in fixed:
            const.append(f"n_tokens = {sub.n_tokens[0]:.6g}")
        note = (
            f"{' and '.join(const)} on every fitting row, so the {'/'.join(fixed)} term cannot "
            f"be identified: fitted the fixed-scale variant of {law} without it"
        )
        log.warning("fit %s/%s: %s", law, target, note)
        notes.append(note)
    ln, ld, h = Form.inputs(sub.model_size, sub.n_tokens, sub.weights)
    return _Problem(
        law,
        target,
        form,
        sub,
        y,
        ln,
        ld,
        h,
        n_missing,
        fixed,
        notes,
        list(sub.files or table.files),
    )


def _global_starts(
    prob: _Problem,
    search: _Search,
    table: RunTable,
    settings: FitSettings,
    init: Mapping[str, float] | FittedLaw | None,
    seed: int,
    rng: np.random.Generator,
) -> tuple[list[np.ndarray], bool]:
    """Stage 2: starting points: a warm start (embedded smaller law), ``init``, random search.

    Returns the starts (warm one first) and whether there is a warm start.
    """
    form = prob.form
    starts: list[np.ndarray] = []
    warm_from = form.definition.warm_from
    if isinstance(init, FittedLaw) and warm_from is not None and init.law == warm_from:
        emb = _embed(init, form)
        if emb is not None:
            starts.append(to_theta(form, emb))
    elif init is not None:
        params = init.params if isinstance(init, FittedLaw) else init
        if set(params) == set(form.names):
            starts.append(to_theta(form, params))
        else:
            prob.notes.append("init ignored: its parameters do not match the law")
    elif settings.warm_start and warm_from is not None:
        # The warm start's own warnings are about a law nobody asked for (only its optimum is
        # used); the law being fitted makes its own checks.
        with _warnings_muted():
            warm_res = fit(table, warm_from, prob.target, seed=seed, settings=settings)
        search.nfev += warm_res.nfev
        emb = _embed(warm_res.law, form)
        if emb is not None:
            starts.append(to_theta(form, emb))
    warm = bool(starts)
    cand = random_theta(form, prob.y, rng, settings.n_random)
    n_rand = settings.warm_random_starts if warm else settings.n_starts
    if n_rand > 0:
        vals = np.array([search.fv(c) for c in cand])
        search.nfev += settings.n_random
        starts += [cand[i] for i in np.argsort(vals)[:n_rand]]
    return starts, warm


def _result(
    prob: _Problem,
    search: _Search,
    best: OptimizeResult,
    nit: int,
    warm_fun: float | None,
    seed: int,
    settings: FitSettings,
    t0: float,
    chance_loss: float | None,
) -> FitResult:
    """Stage 4: the fitted law, its identifiability warnings, and the result object."""
    form, y = prob.form, prob.y
    success = bool(best.get("success", True)) or bool(best.get("trf_success"))
    msg = str(best.get("message", ""))
    p = from_theta(form, best.x)
    pred = form.evaluate(p, prob.ln, prob.ld, prob.h)[0]
    mre = float(np.mean(np.abs(pred - y) / y) * 100.0)
    fun = float(best.fun) / search.scale
    if warm_fun is not None and fun > warm_fun * (1 + 1e-12):
        prob.notes.append("ended above its starting point's objective")
    # The data rows' Jacobian only: the shrink penalty's rows (if any) are not predictions.
    jac = search.rjac(best.x)[: search.n_rows]
    warnings = identifiability_warnings(form, best.x, search.bounds, jac, prob.h, y)
    sub = prob.sub
    dead = never_learned(sub.run_ids, sub.n_tokens, y, chance_loss)
    if dead:
        names = ", ".join(str(r["run"]) for r in dead[:8]) + (" ..." if len(dead) > 8 else "")
        warnings.append(
            f"{len(dead)} run(s) never learned ({names}; {dead[0]['reason']}): the fit treats "
            "their loss as their mixture's effect; drop them (--where) or rerun them"
        )
    n_bad = int((~np.isfinite(pred)).sum())
    if n_bad:
        warnings.append(f"{n_bad} fitting rows have a non-finite prediction")
    for w in warnings:
        log.warning("fit %s/%s: %s", prob.law, prob.target, w)
    fitted = FittedLaw(
        law=prob.law,
        domains=form.domains,
        target=prob.target,
        params=dict(zip(form.names, p.tolist(), strict=True)),
        use_n=form.use_n,
        use_d=form.use_d,
        target_domain=form.target_domain,
        fit={
            "objective": settings.describe(),
            "seed": seed,
            "settings": dataclasses.asdict(settings),
            "fun": fun,
            "mre_percent": mre if np.isfinite(mre) else None,
            # The contract with optimize (FittedLaw.trust_issues): fractions, not %.
            "converged": success,
            "train_mre": mre / 100.0 if np.isfinite(mre) else None,
            "on_bounds": on_bounds(form, best.x, search.bounds),
            "never_learned": dead,
            "nonfinite_rows": n_bad,
            "chance_loss": chance_loss,
            "evidence": evidence(form.domains, sub.model_size, sub.n_tokens, sub.weights),
            "n_rows": int(len(y)),
            "n_missing": prob.n_missing,
            "fixed": prob.fixed,
            "files": prob.files,
        },
        fingerprint=_fingerprint(sub.model_size, sub.n_tokens, sub.weights, y),
        warnings=tuple(warnings),
    )
    message = "; ".join(
        [f"{'converged' if success else 'did not converge'} ({msg.strip() or 'no message'})"]
        + prob.notes
    )
    if not success:
        log.warning("fit %s/%s: %s", prob.law, prob.target, message)
    return FitResult(
        law=fitted,
        x=dict(fitted.params),
        fun=fun,
        mre=mre,
        success=success,
        message=message,
        nit=nit,
        nfev=search.nfev,
        seconds=time.perf_counter() - t0,
        n_rows=int(len(y)),
        n_missing=prob.n_missing,
        fixed=list(prob.fixed),
        warnings=tuple(warnings),
    )


@contextlib.contextmanager
def _warnings_muted() -> Iterator[None]:
    """Drop this module's warnings while the block runs (the warm-start fit)."""

    def below_warning(record: logging.LogRecord) -> bool:
        return record.levelno < logging.WARNING

    log.addFilter(below_warning)
    try:
        yield
    finally:
        log.removeFilter(below_warning)


def fit(
    table: RunTable,
    law: str,
    target: str,
    *,
    seed: int = 0,
    settings: FitSettings | None = None,
    init: Mapping[str, float] | FittedLaw | None = None,
    chance_loss: float | None = None,
) -> FitResult:
    """Fit one law to one target of a run table.

    Stages: :func:`_prepare` (rows, fixed scales), :func:`_global_starts` (warm start, random
    search), :func:`_refine` (local runs, basin-hopping), :func:`_result` (law, warnings).

    Args:
        table: the runs (rows with a missing loss for ``target`` are skipped and counted).
        law: one of :data:`laws.forms.LAWS`.
        target: a target of the table (``arxiv`` or ``arxiv_loss``).
        seed: makes the random search and basin-hopping reproducible.
        settings: search settings; defaults to :class:`FitSettings()`.
        init: parameters (or a fitted law of the same form) to start from; with the default
            ``warm_random_starts=0`` the fit is then a local refinement from it alone (what
            the bootstrap's replicates do). For joint (full) a fitted additive (joint) law of
            the same rows is embedded and used as the warm start instead of fitting one.
        chance_loss: the loss of a model that learned nothing (``ln(10)`` for CIFAR-10);
            runs at or above it are flagged as never learned (``fit["never_learned"]``, a
            warning, and :meth:`FittedLaw.trust_issues`). Flat curves are flagged without it.

    Returns:
        A :class:`FitResult`; non-convergence is reported in ``success``/``message`` and
        unidentified parameters in ``warnings``, never raised.

    Raises:
        ValueError: unknown law or target, or fewer rows than parameters.

    Example:
        >>> table = load_runs("runs.csv")  # doctest: +SKIP
        >>> res = fit(table, "additive", "c4", seed=0)  # doctest: +SKIP
        >>> print(f"{res.mre:.2f}% in {res.seconds:.1f}s: {res.message}")  # doctest: +SKIP
    """
    t0 = time.perf_counter()
    settings = settings or FitSettings()
    if chance_loss is not None and not (np.isfinite(chance_loss) and chance_loss > 0):
        raise ValueError(f"chance_loss must be a positive number, got {chance_loss!r}")
    prob = _prepare(table, law, target)
    search = _Search(prob, settings)
    rng = np.random.default_rng(seed)
    starts, warm = _global_starts(prob, search, table, settings, init, seed, rng)
    warm_fun = search.fv(starts[0]) / search.scale if warm else None
    best, nit = _refine(search, starts, settings, warm, rng)
    return _result(prob, search, best, nit, warm_fun, seed, settings, t0, chance_loss)
