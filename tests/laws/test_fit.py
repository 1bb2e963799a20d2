"""Fitting: every law recovers the law that generated noisy data, and its optimum."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest

from mixsampler.laws import LAWS, FitSettings, fit, optimize

# A short search: the synthetic problems are small and well posed.
FAST = FitSettings(n_random=200, n_starts=2, niter=0, maxiter=600)


def _grid(helpers: Any, n: int = 200, seed: int = 1) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    h = rng.dirichlet(np.ones(3), size=n) * 0.85 + 0.05
    size = rng.choice([1e8, 3e8, 1e9], size=n)
    tokens = rng.choice([1e9, 2e9, 4e9, 8e9], size=n)
    return size, tokens, h


@pytest.mark.parametrize("law", LAWS)
def test_each_law_recovers_its_predictions_and_optimum(
    law: str, helpers: Any, synth_table: Any
) -> None:
    true = helpers.true_law(law)
    table = synth_table({"a": true}, seed=3)
    # Ye's laws have local minima at E -> 0 that a two-start search can end in.
    res = fit(table, law, "a", seed=0, settings=FitSettings() if law.startswith("ye") else FAST)
    assert res.law.law == law
    assert res.n_rows == len(table) and res.n_missing == 0
    size, tokens, h = _grid(helpers)
    pred = res.law.predict(size, tokens, h)
    truth = true.predict(size, tokens, h)
    # Noise is 5e-4 on losses of 2-5: predictions must be within 0.1 % of the true law.
    assert np.max(np.abs(pred - truth) / truth) < 1e-3
    if law == "chinchilla":
        for name, v in helpers.TRUE_PARAMS[law].items():
            assert res.x[name] == pytest.approx(v, rel=0.15), name
        return
    # The optimum of the fitted law must be (nearly) as good as the true optimum, judged by
    # the true law.
    o_true = optimize({"a": true}, model_size=1e9, n_tokens=8e9, min_weight=0.05)
    # No trust region: this tests the fit's recovery of the truth, whose optimum may lie
    # beyond the fitting mixtures' range (the default region stops at the range + 0.05).
    o_fit = optimize(
        {"a": res.law}, model_size=1e9, n_tokens=8e9, min_weight=0.05, trust_region="none"
    )
    regret = float(true.predict(1e9, 8e9, o_fit.x)) - o_true.fun
    assert regret < 2e-3


def test_linear_and_additive_parameters_are_recovered(helpers: Any, synth_table: Any) -> None:
    for law in ("linear", "additive"):
        table = synth_table({"a": helpers.true_law(law)}, noise=1e-4, seed=4)
        res = fit(table, law, "a", seed=0, settings=FAST)
        for name in ("C_a", "C_b", "C_c", "E", "alpha", "beta"):
            if name in res.x:
                assert res.x[name] == pytest.approx(helpers.TRUE_PARAMS[law][name], rel=0.1)


def test_joint_never_worse_than_additive(synth_table: Any, helpers: Any) -> None:
    table = synth_table({"a": helpers.true_law("joint")}, noise=2e-3, seed=5, n_mix=8)
    add = fit(table, "additive", "a", seed=0, settings=FAST)
    joint = fit(table, "joint", "a", seed=0, settings=FAST, init=add.law)
    assert joint.fun <= add.fun * (1 + 1e-12)
    cold = fit(table, "joint", "a", seed=0, settings=FAST)  # fits its own additive first
    assert cold.fun <= fit(table, "additive", "a", seed=0, settings=FAST).fun * (1 + 1e-12)


def test_fit_is_deterministic_given_seed(synth_table: Any, helpers: Any) -> None:
    table = synth_table({"a": helpers.true_law("additive")}, noise=2e-3)
    r1 = fit(table, "additive", "a", seed=7, settings=FAST)
    r2 = fit(table, "additive", "a", seed=7, settings=FAST)
    assert r1.x == r2.x and r1.fun == r2.fun


def test_fixed_scale_fallback_is_said(
    synth_table: Any, helpers: Any, caplog: pytest.LogCaptureFixture
) -> None:
    table = synth_table({"a": helpers.true_law("additive")}, sizes=(3e8,), tokens=(4e9,), n_mix=30)
    with caplog.at_level(logging.WARNING, logger="mixsampler.laws.fit"):
        res = fit(table, "additive", "a", seed=0, settings=FAST)
    assert res.fixed == ["N", "D"]
    assert "fixed-scale" in res.message and "model_size = 3e+08" in res.message
    assert "fixed-scale" in caplog.text
    assert "A" not in res.x and "B" not in res.x
    assert not res.law.use_n and not res.law.use_d
    # Still predicts the mixture effect at that scale.
    h = np.array([[0.6, 0.2, 0.2], [0.1, 0.1, 0.8]])
    truth = helpers.true_law("additive").predict(3e8, 4e9, h)
    assert np.allclose(res.law.predict(3e8, 4e9, h), truth, rtol=2e-3)
    # Only D constant: the N term stays.
    table = synth_table({"a": helpers.true_law("additive")}, tokens=(4e9,))
    res = fit(table, "joint", "a", seed=0, settings=FAST)
    assert res.fixed == ["D"] and "alpha" in res.x and "beta" not in res.x


def test_missing_losses_are_skipped_and_counted(helpers: Any, tmp_path: Any) -> None:
    from mixsampler.laws import load_runs

    rows = helpers.synth_rows({"a": helpers.true_law("additive")})
    for i in (0, 5, 9):
        rows[i]["a_loss"] = ""
    table = load_runs(helpers.write_csv(tmp_path / "m.csv", rows))
    res = fit(table, "additive", "a_loss", seed=0, settings=FAST)
    assert res.n_missing == 3 and res.n_rows == len(rows) - 3
    assert res.law.fit["n_missing"] == 3


def test_fewer_rows_than_parameters_is_an_error(helpers: Any, synth_table: Any) -> None:
    table = synth_table(
        {"a": helpers.true_law("joint")}, n_mix=2, sizes=(1e8, 3e8), tokens=(1e9, 2e9)
    )
    with pytest.raises(ValueError, match=r"synth\.csv: 8 rows .* joint has 17 parameters"):
        fit(table, "joint", "a")


def test_unknown_law_and_target(helpers: Any, synth_table: Any) -> None:
    table = synth_table({"a": helpers.true_law("additive")})
    with pytest.raises(ValueError, match="law can be chinchilla, additive"):
        fit(table, "cubic", "a")
    with pytest.raises(ValueError, match="target can be a, got 'zz'"):
        fit(table, "additive", "zz")


def test_non_convergence_is_reported_not_raised(helpers: Any, synth_table: Any) -> None:
    table = synth_table({"a": helpers.true_law("joint")}, noise=1e-2)
    res = fit(
        table,
        "joint",
        "a",
        settings=FitSettings(n_random=5, n_starts=1, niter=0, maxiter=2, warm_start=False),
    )
    assert isinstance(res.success, bool) and res.message
    assert np.isfinite(res.fun)


@pytest.mark.parametrize("law", ["additive", "joint"])
def test_too_few_mixtures_is_warned_per_parameter(
    law: str, helpers: Any, synth_table: Any, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # The case: 6 mixtures of 3 domains, 7 mixture parameters (E, C_i, gamma_i).
    from mixsampler.laws import load_laws, save_laws

    table = synth_table({"a": helpers.true_law("joint")}, n_mix=6, noise=1e-3, seed=3)
    with caplog.at_level(logging.WARNING, logger="mixsampler.laws"):
        res = fit(table, law, "a", seed=0, settings=FAST)
    text = "\n".join(res.warnings)
    assert "7 parameters that only distinct mixtures identify" in text
    assert "6 distinct mixtures" in text and "gamma_a" in text
    assert "flat direction" in text
    assert res.law.warnings == res.warnings
    assert all(w in caplog.text for w in res.warnings)
    save_laws(tmp_path / "LAW.json", {"a": res.law})
    assert load_laws(tmp_path / "LAW.json")["a"].warnings == res.warnings


def test_enough_mixtures_give_no_warning(helpers: Any, synth_table: Any) -> None:
    table = synth_table({"a": helpers.true_law("joint")}, n_mix=15, noise=1e-3, seed=3)
    for law in ("additive", "joint"):
        assert fit(table, law, "a", seed=0, settings=FAST).warnings == ()


def test_a_parameter_on_its_bound_is_named(helpers: Any, synth_table: Any) -> None:
    # D has (almost) no effect on the loss: the fit pushes beta onto its lower bound.
    from mixsampler.laws import FittedLaw

    params = dict(helpers.TRUE_PARAMS["chinchilla"], B=1e-9)
    table = synth_table({"a": FittedLaw("chinchilla", helpers.DOMAINS, "a", params)}, n_mix=4)
    res = fit(table, "chinchilla", "a", seed=0, settings=FAST)
    assert res.success  # converged, and still not identified
    (w,) = [w for w in res.warnings if w.startswith("beta")]
    assert "lower bound 0.001" in w and "more token counts" in w


def test_joint_fit_does_not_repeat_its_warm_starts_warnings(
    helpers: Any, synth_table: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # The joint law starts from a fitted additive law. With 6 mixtures of 3 domains both laws'
    # mixture terms are unidentified, but only the joint law's own warnings belong in the log:
    # the additive fit is a starting point, not a law the user asked for.
    table = synth_table({"a": helpers.true_law("additive")}, n_mix=6)
    caplog.set_level(logging.WARNING, logger="mixsampler.laws")
    res = fit(table, "joint", "a", seed=0, settings=FAST)
    messages = [r.getMessage() for r in caplog.records]
    assert res.warnings and all(m.startswith("fit joint/a:") for m in messages), messages
    assert not any(m.startswith("fit additive/") for m in messages)
