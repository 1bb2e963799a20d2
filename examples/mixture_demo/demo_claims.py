"""The demo's statistics, fixed before any run: what each part of the claim is tested with.

The claim "small proxy runs pick the mixture of a large run" mixes three things a CPU-sized
demo tests unequally, so each is tested on its own, with rules written into the report (and
into ``analysis_plan.md`` before the first run trains):

(a) **The mixture part of the law**, at a scale the proxies reached: at the largest proxy size
    and D, mixtures the proxies never saw (drawn at random before any run) plus uniform,
    natural and the law's optima for that size, all on the main runs' seeds. Goals: MRE of the
    law on those runs <= :data:`MRE_GOAL_PCT`, Spearman rank correlation between predicted
    and measured mean objective >= :data:`SPEARMAN_GOAL` per objective, and the optimum's
    regret (its measured objective minus the best measured one) within the paired noise: the
    95 % half-width of the paired difference to the best mixture.
(b) **The extrapolation in N** to the main size: the law's signed error per domain on the main
    runs, beside the held-out-N check on the proxies (fitted below the largest proxy size,
    scored at it). Reported, no pass/fail: the report says how far off the law was and where.
(c) **The decision**: per objective and baseline (uniform, natural), the paired gains seed by
    seed (seed s fixes the initialisation and the data order of every mixture, so the paired
    difference cancels what the runs share), their mean, a one-sided paired t-test and a
    one-sided sign test. Before the main runs the tool states whether it expects the gain to
    be distinguishable: ``laws.decide``, the decision ``mixsampler optimize`` prints,
    compares the law's predicted gain with what the law can resolve (its largest held-out
    error times the predicted objective) and refuses an untrusted law
    (:func:`decision_statement`). PASS when every gain the tool called distinguishable is
    positive on every seed and significant at :data:`ALPHA`, and nothing it called
    distinguishable lost; a gain it made no claim on is reported, not judged.

The test is one-sided because the claim is directional (the optimum is lower than the
baseline); the sign test needs 5 seeds all positive to reach p < 0.05 (0.5^5 = 0.031), so
with 3 seeds only the t-test can pass, and the report says how many seeds the measured
effect would need.

Example:
    >>> t = paired_test([0.07, 0.05, 0.025])
    >>> round(t.mean, 4), t.positive_every_seed, round(t.t_p, 3)
    (0.0483, True, 0.033)
    >>> round(t.sign_p, 3), t.seeds_needed
    (0.125, 3)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from demo_results import (
    BASELINES,
    DecisionCheck,
    DecisionStatement,
    DomainExtrapolation,
    MainEvaluation,
    MixtureCheck,
    PairedTest,
    RunSummary,
    ScaleCheck,
    ScaleObjective,
)

if TYPE_CHECKING:
    from mixsampler.laws import Decision

ALPHA = 0.05  # significance level of every test, one-sided
MRE_GOAL_PCT = 2.0  # (a): the law's MRE on unseen mixtures at the proxies' scale, in %
SPEARMAN_GOAL = 0.9  # (a): rank correlation of predicted and measured, per objective

ANALYSIS_PLAN = f"""\
# Analysis plan (written before any run trains)

(a) Mixture part of the law, at the largest proxy size and D, on unseen random mixtures plus
    uniform, natural and the law's optima for that size, on the main runs' seeds:
    PASS if MRE <= {MRE_GOAL_PCT:g} %, Spearman(predicted, measured mean objective) >=
    {SPEARMAN_GOAL:g} for every objective, and the optimum's regret <= the 95 % half-width
    of its paired difference to the best measured mixture.
(b) Extrapolation in N to the main size: signed error per domain on the main runs, beside
    the held-out-N error on the proxies. Reported, not judged.
(c) Decision: per objective and baseline (uniform, natural), paired gains baseline - optimum
    per seed; one-sided paired t-test and one-sided sign test at alpha = {ALPHA:g}.
    Before the main runs the tool (laws.decide, as `mixsampler optimize` decides) calls a
    gain distinguishable when the law's predicted gain exceeds what the law can resolve:
    the largest held-out error (N or D) of the objective's targets times the predicted
    objective at the optimum; a law the tool refuses (untrusted, or an uncertified optimum)
    makes no claim. PASS if every gain called distinguishable is positive on every seed and
    significant (t-test p < {ALPHA:g}), and none called distinguishable lost; gains
    called within the error are reported, not judged.
The data and the training recipe are fixed before this plan; no number below changes them.
"""


def paired_test(gains: Sequence[float], alpha: float = ALPHA) -> PairedTest:
    """One-sided paired t-test and sign test of ``gains`` (baseline - candidate per seed).

    Args:
        gains: at least 2 per-seed gains.
        alpha: the significance level.

    Example:
        >>> paired_test([0.01, 0.02, 0.03]).significant
        True
        >>> paired_test([0.01, -0.02, 0.03]).positive_every_seed
        False
    """
    from scipy import stats

    g = np.asarray(gains, dtype=float)
    if g.size < 2 or not np.all(np.isfinite(g)):
        raise ValueError(f"gains must hold at least 2 finite values, got {list(gains)}")
    n = g.size
    mean = float(g.mean())
    sd = float(g.std(ddof=1))
    if sd == 0.0:
        t_p = 0.0 if mean > 0 else 1.0
    else:
        t = mean / (sd / math.sqrt(n))
        t_p = float(stats.t.sf(t, df=n - 1))
    pos, neg = int(np.sum(g > 0)), int(np.sum(g < 0))
    sign_p = (
        float(stats.binomtest(pos, pos + neg, 0.5, alternative="greater").pvalue)
        if pos + neg
        else 1.0
    )
    return PairedTest(
        gains=tuple(g.tolist()),
        mean=mean,
        sd=sd,
        t_p=t_p,
        sign_p=sign_p,
        positive_every_seed=bool(np.all(g > 0)),
        significant=bool(t_p < alpha),
        seeds_needed=seeds_needed(mean, sd, alpha),
    )


def seeds_needed(mean: float, sd: float, alpha: float = ALPHA, cap: int = 1000) -> int | None:
    """The fewest seeds n >= 2 at which a one-sided paired t-test of a gain with this mean and
    sd reaches p < alpha (the t statistic mean / (sd / sqrt(n)) above its critical value);
    None when the mean is not positive or more than ``cap`` seeds would be needed.

    Example:
        >>> seeds_needed(0.01, 0.01), seeds_needed(-0.01, 0.01)
        (5, None)
    """
    from scipy import stats

    if not mean > 0:
        return None
    if sd == 0.0:
        return 2
    for n in range(2, cap + 1):
        if mean / (sd / math.sqrt(n)) > stats.t.ppf(1 - alpha, df=n - 1):
            return n
    return None


def half_width(diffs: Sequence[float], alpha: float = ALPHA) -> float:
    """Two-sided (1 - alpha) confidence half-width of the mean of paired differences.

    Example:
        >>> round(half_width([0.0, 0.02, 0.04]), 4)
        0.0497
    """
    from scipy import stats

    d = np.asarray(diffs, dtype=float)
    if d.size < 2:
        return math.inf
    return float(stats.t.ppf(1 - alpha / 2, df=d.size - 1) * d.std(ddof=1) / math.sqrt(d.size))


def spearman(predicted: Sequence[float], measured: Sequence[float]) -> float:
    """Spearman rank correlation (scipy's, ties averaged); nan with fewer than 3 points.

    Example:
        >>> round(spearman([1.0, 2.0, 3.0, 4.0], [1.1, 2.5, 2.4, 4.0]), 6)
        0.8
    """
    from scipy import stats

    if len(predicted) < 3:
        return math.nan
    return float(stats.spearmanr(predicted, measured).statistic)


def random_mixtures(
    domains: Sequence[str],
    k: int,
    *,
    min_weight: float,
    seed: int,
    caps: Sequence[float] | None = None,
) -> list[dict[str, float]]:
    """``k`` mixtures drawn uniformly from the simplex above ``min_weight`` (a flat Dirichlet
    scaled into the floor), rounded to 4 decimals with the rest on the last domain.

    ``caps`` (one per domain, e.g. :func:`mixsampler.plan.repeat_caps`) keeps the draws where
    the proxies were planned: a draw above a cap is rejected, so the unseen mixtures test the
    law on the set it was fitted for. Without a binding cap the draws are the uncapped ones.

    Example:
        >>> mixes = random_mixtures(["a", "b", "c"], 2, min_weight=0.02, seed=0)
        >>> len(mixes), all(abs(sum(m.values()) - 1) < 1e-9 for m in mixes)
        (2, True)
        >>> capped = random_mixtures(["a", "b", "c"], 20, min_weight=0.02, seed=0, caps=[1, 1, 0.2])
        >>> max(m["c"] for m in capped) <= 0.2
        True
    """
    rng = np.random.default_rng(seed)
    upper = np.ones(len(domains)) if caps is None else np.asarray(caps, dtype=float)
    out = []
    free = 1.0 - min_weight * len(domains)
    # A cap that leaves room for 1 draw in 10,000 would stall the demo: refuse it instead.
    for _ in range(k):
        for _attempt in range(10_000):
            w = min_weight + free * rng.dirichlet(np.ones(len(domains)))
            w = np.round(w, 4)
            w[-1] = 1.0 - w[:-1].sum()
            if (w <= upper + 1e-9).all():
                break
        else:
            raise ValueError(
                f"caps {dict(zip(domains, upper.round(4).tolist(), strict=True))} leave almost "
                f"no room above min_weight {min_weight}: no mixture in 10,000 draws fits them"
            )
        out.append({d: float(x) for d, x in zip(domains, w, strict=True)})
    return out


def final_rows(pattern: str) -> Any:
    """The last validation of every run whose run-table CSV matches ``pattern``."""
    import glob

    from mixsampler import laws

    paths = sorted(glob.glob(pattern))
    if not paths:
        raise FileNotFoundError(f"no run-table files match {pattern}")
    return laws.load_runs(paths).last_per_run()


def signed_errors(fitted: Mapping[str, Any], table: Any) -> dict[str, np.ndarray]:
    """Per target, (predicted - measured) / measured in % on every row of ``table``."""
    from mixsampler import laws

    return {
        t: (pred - table.losses[t]) / table.losses[t] * 100
        for t, pred in laws.predict_table(fitted, table).items()
    }


def check_mixtures(
    rows: str,
    fitted: Mapping[str, Any],
    *,
    objectives: Mapping[str, Mapping[str, float]],
    runs: Sequence[RunSummary],
    weights: Mapping[str, Mapping[str, float]],
) -> ScaleCheck:
    """Part (a): the law (fitted on every proxy row) on the check runs at the proxies' scale.

    Args:
        rows: glob of the check runs' run-table CSVs.
        fitted: the chosen law per target.
        objectives: objective -> target -> weight.
        runs: the check runs' summaries (run name -> mixture, seed).
        weights: every check mixture's weights, in the order to report them; the optimum of
            objective ``o`` is named ``optimized-<o>``.
    """
    from mixsampler import laws

    final = final_rows(rows)
    preds = laws.predict_table(fitted, final)
    meta = {r.name: r for r in runs}
    names = final.run_ids.tolist()
    err = signed_errors(fitted, final)
    mre_by_target = {t: float(np.mean(np.abs(e))) for t, e in err.items()}
    mixtures: dict[str, MixtureCheck] = {}
    for mix, w in weights.items():
        idx = sorted(
            (i for i, r in enumerate(names) if meta[r].mixture == mix),
            key=lambda i: meta[names[i]].seed,
        )
        meas = {
            o: tuple(float(sum(wt * final.losses[t][i] for t, wt in obj.items())) for i in idx)
            for o, obj in objectives.items()
        }
        pred = {
            o: tuple(float(sum(wt * preds[t][i] for t, wt in obj.items())) for i in idx)
            for o, obj in objectives.items()
        }
        mixtures[mix] = MixtureCheck(
            weights=dict(w),
            seeds=tuple(meta[names[i]].seed for i in idx),
            measured=meas,
            predicted=pred,
        )
    per_obj: dict[str, ScaleObjective] = {}
    for o in objectives:
        mean_meas = {m: float(np.mean(c.measured[o])) for m, c in mixtures.items()}
        mean_pred = {m: float(np.mean(c.predicted[o])) for m, c in mixtures.items()}
        rho = spearman(list(mean_pred.values()), list(mean_meas.values()))
        opt = f"optimized-{o}"
        best = min(mean_meas, key=mean_meas.__getitem__)
        diffs = [
            a - b
            for a, b in zip(mixtures[opt].measured[o], mixtures[best].measured[o], strict=True)
        ]
        regret = mean_meas[opt] - mean_meas[best]
        noise = 0.0 if best == opt else half_width(diffs)
        within = bool(regret <= noise)
        per_obj[o] = ScaleObjective(
            spearman=rho,
            best=best,
            regret=float(regret),
            regret_noise=float(noise),
            regret_within_noise=within,
            passes=bool(rho >= SPEARMAN_GOAL and within),
        )
    mre = float(np.mean(list(mre_by_target.values())))
    return ScaleCheck(
        model_size=float(final.model_size[0]),
        n_tokens=float(np.max(final.n_tokens)),
        mixtures=mixtures,
        mre=mre,
        mre_by_target=mre_by_target,
        objectives=per_obj,
        passes=bool(mre <= MRE_GOAL_PCT and all(v.passes for v in per_obj.values())),
    )


def extrapolation(
    rows: str, fitted: Mapping[str, Any], heldout_n_mre: Mapping[str, float]
) -> dict[str, DomainExtrapolation]:
    """Part (b): per target, the law's error on the main runs' final validations beside its
    held-out-N error on the proxies (fitted below the largest proxy size, scored at it)."""
    err = signed_errors(fitted, final_rows(rows))
    return {
        t: DomainExtrapolation(
            main_mre=float(np.mean(np.abs(e))),
            main_bias=float(np.mean(e)),
            heldout_n_mre=float(heldout_n_mre[t]),
        )
        for t, e in err.items()
    }


def decision_statement(
    objective: str,
    baseline: str,
    decision: Decision,
    weights: Mapping[str, float],
) -> DecisionStatement:
    """The tool's call on one gain, from ``laws.decide``: the optimum of ``objective`` against
    ``baseline``, whose mixture the baseline's runs train (``weights``).

    A claim is made only when decide calls the gain resolvable (larger than the law's
    held-out error times the predicted objective) and the decision needed no override: a law
    :func:`laws.decision.check_trusted` refuses, or an optimum the optimizer did not certify,
    gives a user no weights, so the demo counts no claim.

    Raises:
        ValueError: the decision compared the optimum with another mixture than ``weights``.
    """
    b = decision.baselines[baseline]
    if set(b["weights"]) != set(weights) or any(
        abs(b["weights"][d] - float(w)) > 1e-9 for d, w in weights.items()
    ):
        raise ValueError(
            f"laws.decide's {baseline} mixture {b['weights']} is not the one the {baseline} "
            f"runs train {dict(weights)}"
        )
    refused = list(decision.issues)
    if not decision.result.success:
        refused.append(f"the optimum is not certified ({decision.result.message})")
    resolvable = b["verdict"].startswith("resolvable")
    ok = resolvable and not refused
    gain, loss = float(b["gain"]), float(b["loss"])
    pct = gain / loss * 100
    if ok:
        verb = "distinguishable"
    elif refused:
        more = f"; {len(refused) - 1} more in decision.md" if len(refused) > 1 else ""
        verb = (
            f"not a claim: the tool refuses this decision without an override ({refused[0]}{more})"
        )
    else:
        verb = f"not a claim: {b['verdict']}"
    res = decision.resolution
    resolves = f"{res:.4f} ({decision.resolution_source})" if res is not None else "unknown"
    text = (
        f"optimized-{objective} vs {baseline}: predicted gain {gain:+.4f} ({pct:+.2f} %); "
        f"the law resolves {resolves} -> {verb}"
    )
    return DecisionStatement(
        objective=objective,
        baseline=baseline,
        predicted_gain=gain,
        predicted_gain_pct=pct,
        resolution=res,
        resolution_source=decision.resolution_source,
        verdict=str(b["verdict"]),
        refused=tuple(refused),
        distinguishable=ok,
        text=text,
    )


def decisions_before_main(
    decisions: Mapping[str, Decision], weights: Mapping[str, Mapping[str, float]]
) -> dict[str, dict[str, DecisionStatement]]:
    """Part (c), before any main run: per objective and baseline (uniform, natural), the
    tool's statement (:func:`decision_statement`); ``weights`` maps each baseline to the
    mixture its runs train."""
    return {
        o: {base: decision_statement(o, base, dec, weights[base]) for base in BASELINES}
        for o, dec in decisions.items()
    }


def judge_decisions(
    main: MainEvaluation, statements: Mapping[str, Mapping[str, DecisionStatement]]
) -> tuple[dict[str, dict[str, DecisionCheck]], str]:
    """Part (c), after the main runs: the paired test of every statement and the verdict.

    Returns ``(checks, verdict)``: verdict "PASS", "FAIL" or "NOT JUDGED" (the tool called no
    gain distinguishable, so there was no claim to test).
    """
    checks: dict[str, dict[str, DecisionCheck]] = {}
    for o, per_base in statements.items():
        opt = main.mixtures[f"optimized-{o}"]
        checks[o] = {}
        for base, st in per_base.items():
            b = main.mixtures[base]
            if b.seeds != opt.seeds:
                raise ValueError(f"{base} and optimized-{o} ran different seeds: cannot pair")
            gains = [
                x - y
                for x, y in zip(b.objective[o].measured, opt.objective[o].measured, strict=True)
            ]
            test = paired_test(gains)
            if not st.distinguishable:
                outcome = "not judged"
            elif test.positive_every_seed and test.significant:
                outcome = "PASS"
            else:
                outcome = "FAIL"
            checks[o][base] = DecisionCheck(statement=st, test=test, outcome=outcome)
    judged = [
        c.outcome for per in checks.values() for c in per.values() if c.outcome != "not judged"
    ]
    if not judged:
        return checks, "NOT JUDGED"
    return checks, "PASS" if all(x == "PASS" for x in judged) else "FAIL"
