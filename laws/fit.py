"""Fitting a law to a run table (paper sec. 2.6), fast and deterministic.

The objective is the mean Huber loss (delta = 1e-3) of observed minus predicted loss. Positive
parameters live in log space. The search is: random-search initialisation, L-BFGS-B polishing of
the best candidates, then basin-hopping with L-BFGS-B as inner minimiser, all with the analytic
gradient of :class:`laws.forms.Form`. The joint law starts from the fitted additive law mapped
into it (gammaA = gammaB = 1, CA_i = A, CB_i = B), so its training objective can never end
above the additive law's; the full law starts from the fitted joint law likewise.

Example:
    >>> table = load_runs("runs.csv")  # doctest: +SKIP
    >>> res = fit(table, "joint", "arxiv", seed=0)  # doctest: +SKIP
    >>> res.success, res.mre, res.law.predict(1.4e9, 4.6e10, res_weights)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import OptimizeResult, basinhopping, least_squares, minimize

from laws.fitted import FittedLaw
from laws.forms import LAWS, Form, uses_scale
from laws.runtable import RunTable

__all__ = ["FitResult", "FitSettings", "fit", "huber_objective"]

log = logging.getLogger(__name__)

# Log-space parameters stay inside exp(+-_LOG_BOUND): wide enough for any sensible law, tight
# enough that exp() cannot overflow while the line search probes.
_LOG_BOUND = 25.0
_FREE_BOUND = 200.0
_RESID_CAP = 1e3


@dataclass(frozen=True)
class FitSettings:
    """How a fit searches; stored in LAW.json with the result.

    Attributes:
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
    """

    delta: float = 1e-3
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

    def __post_init__(self) -> None:
        for name in ("delta", "stepsize", "temperature"):
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
        if self.local not in ("trf", "lbfgsb"):
            raise ValueError(f"local can be trf, lbfgsb, got {self.local!r}")
        if self.niter < 0:
            raise ValueError(f"niter must be >= 0, got {self.niter}")


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
    """Draw m starting points in log-parameter space from broad, law-agnostic priors."""
    thetas = np.empty((m, form.n_params))
    i = 0
    ymin = float(np.min(y))
    for b in form.blocks:
        size = form.k if b.per_domain else 1
        sl = slice(i, i + size)
        i += size
        name = b.name
        if name == "E":
            # The irreducible loss sits below every observed loss.
            thetas[:, sl] = np.log(rng.uniform(0.05, 0.95, (m, size)) * ymin)
        elif name in ("gamma", "gammaA", "gammaB", "gamma_alpha", "gamma_beta"):
            thetas[:, sl] = rng.uniform(np.log(0.05), np.log(3.0), (m, size))
        elif name in ("alpha", "beta"):
            thetas[:, sl] = rng.uniform(np.log(0.05), np.log(1.5), (m, size))
        elif name in ("Calpha", "Cbeta"):
            thetas[:, sl] = rng.uniform(np.log(0.05), np.log(1.5), (m, size))
        elif name == "g":
            thetas[:, sl] = rng.normal(0.0, 2.0, (m, size))
        elif name == "C" and not b.positive:  # linear
            thetas[:, sl] = rng.normal(float(np.mean(y)), float(np.std(y)) + 0.1, (m, size))
        else:  # C, A, B, CA, CB: coefficients
            thetas[:, sl] = rng.uniform(np.log(0.01), np.log(20.0), (m, size))
    return thetas


# Bounds in log space per block. They exclude the degenerate plateaus a local search otherwise
# slides into: C_i -> 1e10 with gamma_i -> 0 turns a domain's term into a constant that E
# absorbs, and the fit stalls at 5x the error of the real optimum.
_LOG_RANGES: dict[str, tuple[float, float]] = {
    "C": (1e-6, 1e6),
    "gamma": (1e-3, 30.0),
    "A": (1e-6, 1e6),
    "B": (1e-6, 1e6),
    "CA": (1e-6, 1e6),
    "CB": (1e-6, 1e6),
    "alpha": (1e-3, 3.0),
    "beta": (1e-3, 3.0),
    # Large exponents are legitimate here: (sum_i CA_i h_i)^gammaA with CA_i near 1 and
    # gammaA -> inf tends to exp(sum_i a_i h_i), which some targets prefer (wikipedia).
    "gammaA": (1e-2, 1e4),
    "gammaB": (1e-2, 1e4),
    "Calpha": (1e-4, 10.0),
    "Cbeta": (1e-4, 10.0),
    "gamma_alpha": (1e-2, 1e4),
    "gamma_beta": (1e-2, 1e4),
}


def _bounds(form: Form, y: np.ndarray | None = None) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for b in form.blocks:
        size = form.k if b.per_domain else 1
        if not b.positive:
            lo, hi = -_FREE_BOUND, _FREE_BOUND
        elif b.name == "E":
            # The irreducible loss is below every observed loss.
            top = float(np.max(y)) if y is not None and len(y) else 1e3
            lo, hi = np.log(1e-4), np.log(top)
        else:
            a, c = _LOG_RANGES.get(b.name, (np.exp(-_LOG_BOUND), np.exp(_LOG_BOUND)))
            lo, hi = float(np.log(a)), float(np.log(c))
        out += [(lo, hi)] * size
    return out


def _to_theta(form: Form, params: Mapping[str, float]) -> np.ndarray:
    p = np.array([float(params[n]) for n in form.names])
    pos = form.positive
    if np.any(p[pos] <= 0):
        bad = [n for n, v, q in zip(form.names, p, pos, strict=True) if q and v <= 0]
        raise ValueError(f"initial parameters must be > 0 for {', '.join(bad)}")
    return np.where(pos, np.log(np.where(pos, p, 1.0)), p)


def _embed(src: FittedLaw, form: Form) -> dict[str, float] | None:
    """Map a fitted smaller law into a larger one it is a special case of."""
    p = src.params
    dom = form.domains
    out: dict[str, float] = {"E": p["E"]}
    for d in dom:
        out[f"C_{d}"] = p[f"C_{d}"]
        out[f"gamma_{d}"] = p[f"gamma_{d}"]
    if src.law == "additive" and form.law == "joint":
        if form.use_n:
            out.update({f"CA_{d}": p["A"] for d in dom}, gammaA=1.0, alpha=p["alpha"])
        if form.use_d:
            out.update({f"CB_{d}": p["B"] for d in dom}, gammaB=1.0, beta=p["beta"])
        return out
    if src.law == "joint" and form.law == "full":
        for side, (c, g, e, ce, ge) in (
            ("n", ("CA", "gammaA", "alpha", "Calpha", "gamma_alpha")),
            ("d", ("CB", "gammaB", "beta", "Cbeta", "gamma_beta")),
        ):
            if (form.use_n if side == "n" else form.use_d) and e in p:
                out.update({f"{c}_{d}": p[f"{c}_{d}"] for d in dom})
                out[g] = p[g]
                out.update({f"{ce}_{d}": p[e] for d in dom})
                out[ge] = 1.0
        return out if set(out) == set(form.names) else None
    return None


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


def _fingerprint(n: np.ndarray, d: np.ndarray, h: np.ndarray, y: np.ndarray) -> str:
    digest = hashlib.sha256()
    for a in (n, d, h, y):
        digest.update(np.ascontiguousarray(a, dtype="<f8").tobytes())
    return digest.hexdigest()[:16]


def fit(
    table: RunTable,
    law: str,
    target: str,
    *,
    seed: int = 0,
    settings: FitSettings | None = None,
    init: Mapping[str, float] | FittedLaw | None = None,
) -> FitResult:
    """Fit one law to one target of a run table.

    Args:
        table: the runs (rows with a missing loss for ``target`` are skipped and counted).
        law: one of :data:`laws.forms.LAWS`.
        target: a target of the table (``arxiv`` or ``arxiv_loss``).
        seed: makes the random search and basin-hopping reproducible.
        settings: search settings; defaults to :class:`FitSettings()`.
        init: parameters (or a fitted law of the same form) to start from, added to the
            random candidates; used by bootstrap to refit quickly. For joint (full) a fitted
            additive (joint) law of the same rows is embedded and used as the warm start
            instead of fitting one.

    Returns:
        A :class:`FitResult`; non-convergence is reported in ``success``/``message``,
        never raised.

    Raises:
        ValueError: unknown law or target, or fewer rows than parameters.

    Example:
        >>> res = fit(table, "additive", "c4", seed=0)  # doctest: +SKIP
        >>> print(f"{res.mre:.2f}% in {res.seconds:.1f}s: {res.message}")  # doctest: +SKIP
    """
    t0 = time.perf_counter()
    settings = settings or FitSettings()
    if law not in LAWS:
        raise ValueError(f"law can be {', '.join(LAWS)}, got {law!r}")
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

    has_n, has_d = uses_scale(law)
    fixed: list[str] = []
    use_n = use_d = True
    if has_n and len(y) and np.ptp(np.log(sub.model_size)) == 0:
        use_n = False
        fixed.append("N")
    if has_d and len(y) and np.ptp(np.log(sub.n_tokens)) == 0:
        use_d = False
        fixed.append("D")
    target_domain = target if law == "bimix" else None
    form = Form(law, table.domains, use_n, use_d, target_domain)
    if len(y) < form.n_params:
        raise ValueError(
            f"{where}: {len(y)} rows with {target}_loss ({n_missing} missing), but law {law} "
            f"has {form.n_params} parameters; need at least as many rows as parameters"
        )
    if law == "bimix":
        t = table.domains.index(target)
        zero = int((sub.weights[:, t] <= 0).sum())
        if zero:
            raise ValueError(
                f"{where}: law bimix needs weight_{target} > 0, but {zero} rows have it at 0"
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
    # Internal scale: the objective divided by delta * mean loss reads as an MRE in %, so
    # L-BFGS-B's absolute gradient tolerance means the same on every table.
    scale = 100.0 / (settings.delta * float(np.mean(y)))
    fg = huber_objective(form, ln, ld, h, y, settings.delta, scale)
    fv = _value_only(form, ln, ld, h, y, settings.delta, scale)
    bounds = _bounds(form, y)
    nfev = 0
    rng = np.random.default_rng(seed)

    resid, rjac = _residuals(form, ln, ld, h, y)

    def local(theta0: np.ndarray) -> OptimizeResult:
        nonlocal nfev
        r = _local_minimize(fg, resid, rjac, theta0, bounds, settings)
        nfev += int(r.nfev)
        return r

    # 1. Starting candidates: warm start, user init, random search.
    starts: list[np.ndarray] = []
    warm_from = {"joint": "additive", "full": "joint"}.get(law)
    warm_fun: float | None = None
    if isinstance(init, FittedLaw) and warm_from is not None and init.law == warm_from:
        # A fitted smaller law (e.g. the additive fit of the same rows) as the warm start.
        emb = _embed(init, form)
        if emb is not None:
            starts.append(_to_theta(form, emb))
    elif init is not None:
        params = init.params if isinstance(init, FittedLaw) else init
        if set(params) == set(form.names):
            starts.append(_to_theta(form, params))
        else:
            notes.append("init ignored: its parameters do not match the law")
    elif settings.warm_start and warm_from is not None:
        warm_res = fit(table, warm_from, target, seed=seed, settings=settings)
        nfev += warm_res.nfev
        emb = _embed(warm_res.law, form)
        if emb is not None:
            starts.append(_to_theta(form, emb))
    if starts:
        warm_fun = fv(starts[0]) / scale
    cand = _random_theta(form, y, rng, settings.n_random)
    if not starts or settings.warm_random_starts > 0:
        vals = np.array([fv(c) for c in cand])
        nfev += settings.n_random
    else:
        vals = np.zeros(len(cand))
    warm = bool(starts)
    n_rand = settings.warm_random_starts if warm else settings.n_starts
    starts += [cand[i] for i in np.argsort(vals)[:n_rand]]

    # 2. Polish each start; basin-hop from the best.
    best = None
    for s in starts:
        r = local(s)
        if best is None or r.fun < best.fun:
            best = r
    assert best is not None
    niter = settings.warm_niter if warm else settings.niter
    if warm and niter == 0 and not best.get("trf_success", False):
        # The joint law's exponents creep towards large values (its exp-linear limit); a
        # restart with a fresh trust region goes on where the first run ran out.
        r = local(best.x)
        if r.fun < best.fun:
            best = r
    nit = 0
    if niter > 0:
        bh = basinhopping(
            fg,
            best.x,
            niter=niter,
            T=settings.temperature,
            stepsize=settings.stepsize,
            minimizer_kwargs={"method": lambda fun, x0, *a, **kw: local(x0)},
            rng=np.random.default_rng(rng.integers(2**63)),
        )
        nit = int(bh.nit)
        if bh.fun < best.fun:
            # The local run that found bh.x (same x and fun), with its own convergence report.
            best = bh.lowest_optimization_result
    best_x, best_fun = best.x, float(best.fun)
    success = bool(best.get("success", True)) or bool(best.get("trf_success"))
    msg = str(best.get("message", ""))

    p = _from_theta(form, best_x)
    pred = form.evaluate(p, ln, ld, h)[0]
    mre = float(np.mean(np.abs(pred - y) / y) * 100.0)
    fun = best_fun / scale
    if warm_fun is not None and fun > warm_fun * (1 + 1e-12):
        notes.append("ended above its starting point's objective")
    fitted = FittedLaw(
        law=law,
        domains=table.domains,
        target=target,
        params=dict(zip(form.names, p.tolist(), strict=True)),
        use_n=use_n,
        use_d=use_d,
        target_domain=target_domain,
        fit={
            "objective": f"mean Huber(delta={settings.delta:g}) on raw loss",
            "seed": seed,
            "settings": {
                k: getattr(settings, k)
                for k in settings.__dataclass_fields__  # type: ignore[attr-defined]
            },
            "fun": fun,
            "mre_percent": mre,
            "n_rows": int(len(y)),
            "n_missing": n_missing,
            "fixed": fixed,
            "files": list(sub.files or table.files),
        },
        fingerprint=_fingerprint(sub.model_size, sub.n_tokens, sub.weights, y),
    )
    message = "; ".join(
        [f"{'converged' if success else 'did not converge'} ({msg.strip() or 'no message'})"]
        + notes
    )
    if not success:
        log.warning("fit %s/%s: %s", law, target, message)
    return FitResult(
        law=fitted,
        x=dict(fitted.params),
        fun=fun,
        mre=mre,
        success=success,
        message=message,
        nit=nit,
        nfev=nfev,
        seconds=time.perf_counter() - t0,
        n_rows=int(len(y)),
        n_missing=n_missing,
        fixed=fixed,
    )
