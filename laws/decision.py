"""A decision a user can bet a run on: check the law, optimize, compare, say how sure.

``optimize`` (:mod:`laws.optimize`) answers "which weights minimize this law"; this module
answers "should I train on them". One path for the ``optimize`` verb and
:class:`~mixsampler.callbacks.MixtureWeights`:

1. :func:`check_trusted`: refuse a law whose fit did not converge, that was fitted on runs
   that never learned, whose held-out error is above 5 % (or far above its training error:
   ``FittedLaw.trust_issues``), raising :class:`UntrustedLawError` with the reason and the way
   out (``allow_untrusted_law``);
2. :func:`laws.optimize.optimize` inside the trust region, then :func:`require_certified`
   (:class:`UnconvergedOptimumError` unless allowed);
3. the predictions at the optimum, for every target of the law file, must stay within 3x of
   the loss range the law covers on its fitting runs (a law predicting 1,078 nats where every
   run was near 2.3 is broken, whatever the optimizer certified);
4. the gain over uniform, the natural mixture (when given) and the best fitting run, each
   against what the law can resolve: its held-out error times the predicted loss. A gain
   within that error "cannot be told apart" from the baseline.

Everything it reads from LAW.json's fit record is optional: a missing key is "unknown" and
said so, never a pass.

Example:
    >>> from mixsampler.laws.fitted import FittedLaw
    >>> law = FittedLaw("additive", ("a", "b"), "a", {"E": 1.0, "C_a": 1.0, "C_b": 0.5,
    ...     "gamma_a": 0.5, "gamma_b": 0.5, "A": 0.2, "alpha": 0.3, "B": 0.5, "beta": 0.3},
    ...     fit={"converged": True, "train_mre": 0.004, "heldout": {"n": {"mre": 0.01}}})
    >>> dec = decide({"a": law}, model_size=1e9, n_tokens=1e10, trust_region="none")
    >>> dec.result.search, round(dec.resolution, 3)
    ('global', 0.023)
    >>> b = dec.baselines["uniform"]
    >>> round(b["gain"], 3), b["verdict"].split(":")[0]
    (0.048, 'resolvable')
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mixsampler.laws.fitted import FittedLaw
from mixsampler.laws.optimize import OptimizeResult, optimize

__all__ = [
    "MAX_HELDOUT_MRE",
    "MAX_RANGE_RATIO",
    "Decision",
    "UnconvergedOptimumError",
    "UntrustedLawError",
    "check_trusted",
    "decide",
    "default_objective",
    "extrapolation",
    "heldout_error",
    "require_certified",
]

log = logging.getLogger(__name__)

# A held-out error above this is larger than any mixture effect worth deciding on: on the
# paper's table mixtures move the loss by 1-3 %, and a law 5 % off on rows it has not seen
# cannot rank them.
MAX_HELDOUT_MRE = 0.05
# A prediction more than this factor outside the loss range the law covers on its fitting
# runs is not an extrapolation but a broken law (1,078 nats where every run was near 2.3).
MAX_RANGE_RATIO = 3.0


class UntrustedLawError(ValueError):
    """The law is not fit to decide a mixture (unconverged, never-learned runs, held-out error)."""


class UnconvergedOptimumError(ValueError):
    """The optimizer did not certify its weights (Frank-Wolfe gap above tolerance)."""


def heldout_error(law: FittedLaw) -> tuple[float | None, str]:
    """The largest held-out MRE LAW.json records for ``law`` (a fraction), and where from.

    Falls back to the training MRE (saying so) when no held-out check was recorded; None when
    neither is.

    Example:
        >>> heldout_error(FittedLaw("chinchilla", ("a",), "a", {"E": 1.0, "A": 0.2,
        ...     "alpha": 0.3, "B": 0.5, "beta": 0.3}, fit={"train_mre": 0.01}))
        (0.01, 'training error (no held-out check recorded)')
    """
    found = {}
    for kind, rec in (law.fit.get("heldout") or {}).items():
        mre = rec.get("mre") if isinstance(rec, Mapping) else None
        if isinstance(mre, (int, float)) and math.isfinite(mre):
            found[str(kind)] = float(mre)
    if found:
        kind = max(found, key=lambda k: found[k])
        return found[kind], f"held-out {kind} error"
    train = law.fit.get("train_mre")
    if isinstance(train, (int, float)) and math.isfinite(train):
        return float(train), "training error (no held-out check recorded)"
    return None, "unknown (LAW.json records no error)"


def _never_learned(law: FittedLaw) -> list[str]:
    dead = law.fit.get("never_learned") or ()
    names = []
    for r in dead:
        names.append(str(r.get("run", r)) if isinstance(r, Mapping) else str(r))
    return names


def law_issues(
    laws_: Mapping[str, FittedLaw], *, max_heldout_mre: float = MAX_HELDOUT_MRE
) -> list[str]:
    """Every recorded reason not to let these laws decide (empty: none recorded)."""
    out: list[str] = []
    for t, law in laws_.items():
        out += list(law.trust_issues())
        dead = _never_learned(law)
        if dead and not any("never" in s for s in law.trust_issues()):
            shown = ", ".join(dead[:5]) + (f" and {len(dead) - 5} more" if len(dead) > 5 else "")
            out.append(f"{t}: fitted on {len(dead)} run(s) that never learned ({shown})")
        err, src = heldout_error(law)
        if err is not None and src.startswith("held-out") and err > max_heldout_mre:
            out.append(
                f"{t}: {src} {100 * err:.3g} % is above {100 * max_heldout_mre:.3g} %: the law "
                "cannot rank mixtures whose losses differ by less"
            )
    return list(dict.fromkeys(out))


def check_trusted(
    laws_: Mapping[str, FittedLaw],
    *,
    allow: bool = False,
    where: str = "the law file",
    option: str = "--allow-untrusted-law",
    max_heldout_mre: float = MAX_HELDOUT_MRE,
) -> list[str]:
    """Raise :class:`UntrustedLawError` naming every reason, unless ``allow``.

    Returns the reasons (logged as warnings when allowed).
    """
    issues = law_issues(laws_, max_heldout_mre=max_heldout_mre)
    if issues and not allow:
        raise UntrustedLawError(
            f"{where}: the law is not trusted to decide a mixture: "
            + "; ".join(issues)
            + f". Refit (more runs, drop runs that never learned, another --law), or pass "
            f"{option} to use it anyway"
        )
    for s in issues:
        log.warning("untrusted law used (%s): %s", option, s)
    return issues


def require_certified(
    res: OptimizeResult, *, allow: bool = False, option: str = "--allow-unconverged"
) -> None:
    """Raise :class:`UnconvergedOptimumError` when the optimum is uncertified, unless ``allow``."""
    if not res.success and not allow:
        raise UnconvergedOptimumError(
            f"the optimum is not certified ({res.message}); raise max_iter / --max-iter, or "
            f"pass {option} to use these weights marked success: false"
        )


def default_objective(laws_: Mapping[str, FittedLaw]) -> tuple[dict[str, float], str]:
    """Equal weights over the targets that are training domains, and a sentence saying so.

    Held-out targets (``openhermes``, a domain not trained on) enter only when named: the
    average a user expects is over what the run trains on. When no target is a training
    domain, every target counts.

    Example:
        >>> law = FittedLaw("chinchilla", ("a",), "a", {"E": 1.0, "A": 0.2, "alpha": 0.3,
        ...     "B": 0.5, "beta": 0.3})
        >>> default_objective({"a": law, "x": law})[0]
        {'a': 1.0}
    """
    domains = next(iter(laws_.values())).domains
    train = [t for t in laws_ if t in domains]
    if train:
        rest = [t for t in laws_ if t not in domains]
        why = f"mean loss over the {len(train)} training domain(s) {', '.join(train)}"
        if rest:
            why += f" (held-out target(s) {', '.join(rest)} left out: name them in the objective)"
        return {t: 1.0 / len(train) for t in train}, why
    return {t: 1.0 / len(laws_) for t in laws_}, (
        f"mean over every target ({', '.join(laws_)}): none is a training domain"
    )


def extrapolation(
    laws_: Mapping[str, FittedLaw], model_size: float, n_tokens: float, weights: Mapping[str, float]
) -> dict[str, Any]:
    """How far (N, D, h) lie beyond the fitting rows, and what the held-out checks covered.

    ``model_size_ratio`` / ``n_tokens_ratio``: planned N / D over the largest fitted;
    ``heldout_ratio``: the largest N (D) ratio a held-out check of these laws covered;
    ``outside_range``: domains whose weight is outside every fitting run's range. Keys are
    None when LAW.json does not record the evidence.
    """
    out: dict[str, Any] = {
        "model_size_ratio": None,
        "n_tokens_ratio": None,
        "heldout_ratio": {"n": None, "d": None},
        "outside_range": {},
        "warnings": [],
    }
    nmax = dmax = None
    ranges: dict[str, list[float]] = {}
    for law in laws_.values():
        ev = law.evidence or {}
        n, d = ev.get("model_size"), ev.get("n_tokens")
        if isinstance(n, (list, tuple)) and n:
            nmax = max(nmax or 0.0, float(n[-1]))
        if isinstance(d, (list, tuple)) and d:
            dmax = max(dmax or 0.0, float(d[-1]))
        for dom, r in (ev.get("weights") or {}).items():
            if isinstance(r, (list, tuple)) and len(r) == 2:
                old = ranges.get(dom, [float(r[0]), float(r[1])])
                ranges[dom] = [min(old[0], float(r[0])), max(old[1], float(r[1]))]
        for kind in ("n", "d"):
            rec = (law.fit.get("heldout") or {}).get(kind)
            ratio = rec.get("ratio") if isinstance(rec, Mapping) else None
            if isinstance(ratio, (int, float)) and math.isfinite(ratio):
                cur = out["heldout_ratio"][kind]
                out["heldout_ratio"][kind] = min(cur, ratio) if cur is not None else float(ratio)
    for key, plan, top, kind, what in (
        ("model_size_ratio", model_size, nmax, "n", "N"),
        ("n_tokens_ratio", n_tokens, dmax, "d", "D"),
    ):
        if top:
            ratio = float(plan) / top
            out[key] = ratio
            covered = out["heldout_ratio"][kind]
            if ratio > 1.0 and (covered is None or ratio > covered):
                checked = (
                    f"the held-out {kind} check covered {covered:.3g}x"
                    if covered is not None
                    else f"no held-out {kind} check covers any extrapolation"
                )
                out["warnings"].append(
                    f"{what} = {plan:.3g} is {ratio:.3g}x the largest fitted ({top:.3g}); {checked}"
                )
    for dom, w in weights.items():
        r = ranges.get(dom)
        if r is not None and not (r[0] - 1e-9 <= w <= r[1] + 1e-9):
            out["outside_range"][dom] = {"weight": float(w), "fitted": r}
    if out["outside_range"]:
        out["warnings"].append(
            "weights outside every fitting run's range: "
            + ", ".join(
                f"{d} {v['weight']:.3g} (fitted {v['fitted'][0]:.3g}-{v['fitted'][1]:.3g})"
                for d, v in out["outside_range"].items()
            )
        )
    return out


def _loss_range(law: FittedLaw) -> tuple[float, float] | None:
    """The loss range the law covers on its fitting runs: predictions at the fitting mixtures
    at the corners of the fitted (N, D) box (within its training error of what was observed)."""
    ev = law.evidence
    if ev is None:
        return None
    mixes = np.asarray(ev.get("mixtures") or [], dtype=float)
    n, d = ev.get("model_size"), ev.get("n_tokens")
    if mixes.ndim != 2 or not len(mixes) or not n or not d:
        return None
    preds = [law.predict(a, b, mixes) for a in (n[0], n[-1]) for b in (d[0], d[-1])]
    p = np.concatenate([np.atleast_1d(x) for x in preds])
    p = p[np.isfinite(p)]
    return (float(p.min()), float(p.max())) if len(p) else None


def _range_issues(
    laws_: Mapping[str, FittedLaw], res: OptimizeResult, ratio: float = MAX_RANGE_RATIO
) -> list[str]:
    out = []
    for t, law in laws_.items():
        h = [res.weights[d] for d in law.domains]
        p = float(law.predict(res.model_size, res.n_tokens, h))
        rng = _loss_range(law)
        if not math.isfinite(p) or p <= 0:
            out.append(f"{t}: predicts {p:.4g} at the optimum")
        elif rng is not None and (p > ratio * rng[1] or p < rng[0] / ratio):
            out.append(
                f"{t}: predicts {p:.4g} at the optimum, more than {ratio:g}x outside the "
                f"{rng[0]:.4g}-{rng[1]:.4g} it covers on its fitting runs"
            )
    return out


@dataclass
class Decision:
    """The optimum, its baselines and how sure the law is.

    Attributes:
        result: the optimizer's result (weights, search label, trust region).
        objective_why: what the objective is, in words.
        resolution: the smallest gain the law can resolve, in nats: its held-out error times
            the predicted objective (None: unknown).
        resolution_source: where the error comes from (held-out kind, or training error).
        baselines: name -> ``{"weights", "loss", "gain", "verdict"}`` (and ``"interval"`` with
            a bootstrap); gain > 0 means the optimum is predicted better.
        issues: the law's trust issues (non-empty only when allowed through).
        extrapolation: see :func:`extrapolation`.
    """

    result: OptimizeResult
    objective_why: str
    resolution: float | None
    resolution_source: str
    baselines: dict[str, dict[str, Any]] = field(default_factory=dict)
    issues: list[str] = field(default_factory=list)
    extrapolation: dict[str, Any] = field(default_factory=dict)

    def statement(self) -> list[str]:
        """The decision in words, one line each (what ``optimize`` prints)."""
        r = self.result
        res = (
            f"{self.resolution:.4f} nats ({self.resolution_source})"
            if self.resolution is not None
            else f"unknown ({self.resolution_source})"
        )
        lines = [
            f"objective: {self.objective_why}",
            f"optimum: predicted {r.fun:.4f} ({r.search}); the law resolves {res}",
        ]
        for name, b in self.baselines.items():
            iv = ""
            if "interval" in b:
                lo, hi = b["interval"]
                iv = f", bootstrap [{lo:+.4f}, {hi:+.4f}]"
            lines.append(f"vs {name}: gain {b['gain']:+.4f} nats{iv}: {b['verdict']}")
        tr = r.trust_region
        if tr.get("kind") == "range":
            lines.append(
                f"trust region: fitting runs' weight range +- {tr['margin']:g} per domain "
                "(--trust-region none to search the whole simplex)"
            )
        else:
            lines.append(f"trust region: none ({tr.get('why', '')})")
        lines += [f"warning: {w}" for w in self.extrapolation.get("warnings", [])]
        lines += [f"untrusted law used: {s}" for s in self.issues]
        return lines

    def to_json(self) -> dict[str, Any]:
        """The ``decision`` entry of WEIGHTS.json."""
        return {
            "objective": self.objective_why,
            "resolution": self.resolution,
            "resolution_source": self.resolution_source,
            "baselines": {k: dict(v) for k, v in self.baselines.items()},
            "issues": list(self.issues),
            "extrapolation": self.extrapolation,
            "statement": self.statement(),
        }


def _verdict(gain: float, resolution: float | None, name: str) -> str:
    if resolution is None:
        return "the law records no error: whether this gain is real is unknown"
    if abs(gain) <= resolution:
        return "below what the law can resolve"
    if gain > 0:
        return f"resolvable: the optimum is predicted better than {name} beyond the law's error"
    return f"{name} is predicted better (the constraints or trust region exclude it)"


def decide(
    fitted: Mapping[str, FittedLaw],
    *,
    model_size: float,
    n_tokens: float,
    objective: Mapping[str, float] | None = None,
    natural: Mapping[str, float] | None = None,
    allow_untrusted_law: bool = False,
    allow_unconverged: bool = False,
    where: str = "the law file",
    options: tuple[str, str] = ("--allow-untrusted-law", "--allow-unconverged"),
    **optimize_kwargs: Any,
) -> Decision:
    """Check the laws, optimize, and compare the optimum with the baselines.

    Args:
        fitted: target -> law (a LAW.json's content).
        model_size: N of the run to plan.
        n_tokens: D of the run to plan.
        objective: target -> weight; default: the training domains equally
            (:func:`default_objective`).
        natural: domain -> size (tokens, or any unit): the natural mixture, a baseline.
        allow_untrusted_law: use a law :func:`check_trusted` refuses (warnings instead).
        allow_unconverged: return an uncertified optimum (``result.success`` False).
        where: how errors name the laws (the file).
        options: the names of the two overrides in errors (CLI flags or keyword arguments).
        **optimize_kwargs: constraints and search settings of :func:`laws.optimize.optimize`.

    Raises:
        UntrustedLawError: the laws are not trusted (before or after optimizing), unless allowed.
        UnconvergedOptimumError: the optimum is not certified, unless allowed.
    """
    laws_ = dict(fitted)
    if objective is None:
        obj, why = default_objective(laws_)
    else:
        obj = {str(k): float(v) for k, v in objective.items()}
        why = "weighted " + ", ".join(f"{t} {w:g}" for t, w in obj.items())
    used = {t: laws_[t] for t in obj if t in laws_}
    issues = check_trusted(used or laws_, allow=allow_untrusted_law, where=where, option=options[0])
    res = optimize(
        laws_, model_size=model_size, n_tokens=n_tokens, objective=obj, **optimize_kwargs
    )
    require_certified(res, allow=allow_unconverged, option=options[1])
    broken = _range_issues(laws_, res)
    if broken and not allow_untrusted_law:
        raise UntrustedLawError(
            f"{where}: the law's predictions at the optimum leave the loss range it was fitted "
            f"on: {'; '.join(broken)}. Refit, or pass {options[0]} to use it anyway"
        )
    issues += broken
    domains = res.domains
    total = sum(res.objective.values())

    def loss(h: np.ndarray) -> float:
        return float(
            sum(
                w
                / total
                * float(
                    laws_[t].predict(
                        model_size, n_tokens, h[[domains.index(d) for d in laws_[t].domains]]
                    )
                )
                for t, w in res.objective.items()
                if w
            )
        )

    errs = [heldout_error(laws_[t]) for t, w in res.objective.items() if w]
    known = [e for e, _ in errs if e is not None]
    resolution = max(known) * res.fun / total if len(known) == len(errs) and known else None
    source = max(errs, key=lambda e: -1 if e[0] is None else e[0])[1] if errs else "unknown"
    if resolution is None and known:
        source = "unknown for some targets (LAW.json records no error for them)"
    base: dict[str, np.ndarray] = {"uniform": np.full(len(domains), 1.0 / len(domains))}
    if natural:
        unknown = sorted(set(natural) - set(domains))
        if unknown:
            raise ValueError(
                f"natural names unknown domain(s) {', '.join(unknown)}; domains are "
                f"{', '.join(domains)}"
            )
        nat = np.array([float(natural.get(d, 0.0)) for d in domains])
        if not (np.isfinite(nat).all() and (nat >= 0).all() and nat.sum() > 0):
            raise ValueError(f"natural sizes must be >= 0 and not all 0, got {dict(natural)}")
        base["natural"] = nat / nat.sum()
    mixes = [
        np.asarray(m, dtype=float)
        for law in used.values()
        for m in ((law.evidence or {}).get("mixtures") or [])
        if len(m) == len(domains)
    ]
    if mixes:
        perm = [next(iter(used.values())).domains.index(d) for d in domains]
        cand = [m[perm] for m in mixes]
        losses = [loss(m) for m in cand]
        base["best fitting run"] = cand[int(np.nanargmin(losses))]
    opt_loss = loss(res.x)
    baselines = {}
    for name, h in base.items():
        lb = loss(h)
        gain = lb - opt_loss
        baselines[name] = {
            "weights": {d: float(v) for d, v in zip(domains, h, strict=True)},
            "loss": lb,
            "gain": gain,
            "verdict": _verdict(gain, resolution, name),
        }
    return Decision(
        result=res,
        objective_why=why,
        resolution=resolution,
        resolution_source=source,
        baselines=baselines,
        issues=issues,
        extrapolation=extrapolation(used or laws_, model_size, n_tokens, res.weights),
    )
