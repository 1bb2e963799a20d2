"""Bootstrap over runs: intervals that contain the truth in a synthetic case."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from mixsampler.laws import FitSettings, bootstrap
from mixsampler.laws.bootstrap import resample_runs


def test_resample_keeps_whole_runs(helpers: Any, synth_table: Any) -> None:
    table = synth_table({"a": helpers.true_law("chinchilla")}, n_mix=6)
    sample = resample_runs(table, np.random.default_rng(0))
    runs, counts = np.unique(sample.run_ids.astype(str), return_counts=True)
    rows_per_run = 4  # each run has 4 checkpoints
    assert len(sample) == len(table)
    assert (counts % rows_per_run == 0).all()


def test_intervals_contain_the_truth(helpers: Any, synth_table: Any) -> None:
    true = helpers.true_law("additive")
    table = synth_table({"a": true}, n_mix=12, noise=3e-3, seed=11)
    h = np.array([[0.6, 0.2, 0.2], [0.2, 0.2, 0.6]])
    res = bootstrap(
        table,
        "additive",
        ["a"],
        n_boot=20,
        seed=0,
        predict_at=(2e9, 2e10, h),  # beyond the fitted N and D
        # The truth below has no fitting runs, so no trust region: compare like with like.
        # (With the default region the fitted replicates stop at the fitting range + 0.05.)
        optimize_at={
            "model_size": 1e9,
            "n_tokens": 8e9,
            "min_weight": 0.05,
            "trust_region": "none",
        },
        settings=FitSettings(n_random=200, n_starts=2, niter=0, maxiter=300),
    )
    assert res.predictions["a"].shape == (20, 2)
    lo, hi = res.prediction_interval(0.95)["a"]
    truth = true.predict(2e9, 2e10, h)
    assert np.all(lo <= truth) and np.all(truth <= hi)
    assert np.all(hi - lo > 0)
    from mixsampler.laws import optimize

    best = optimize({"a": true}, model_size=1e9, n_tokens=8e9, min_weight=0.05).weights
    wi = res.weight_interval(0.95)
    for d, (a, b) in wi.items():
        assert a - 0.02 <= best[d] <= b + 0.02, (d, a, b, best[d])


def test_bad_arguments(helpers: Any, synth_table: Any) -> None:
    table = synth_table({"a": helpers.true_law("chinchilla")}, n_mix=3)
    with pytest.raises(ValueError, match="n_boot must be an integer from 2 to 100,000.*got 1"):
        bootstrap(table, "chinchilla", ["a"], n_boot=1)
    # A billion replicates is refused before anything is fitted or drawn (issue 21 point 6).
    with pytest.raises(ValueError, match="got 1000000000"):
        bootstrap(table, "chinchilla", ["a"], n_boot=10**9)
    with pytest.raises(ValueError, match="level must be in"):
        bootstrap(table, "chinchilla", ["a"], level=1.5)


def test_parallel_targets_match_serial_and_warnings_are_repeated(
    helpers: Any, synth_table: Any, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    # 6 mixtures of 3 domains: the additive law's mixture term is not identified.
    table = synth_table(
        {"a": helpers.true_law("additive"), "b": helpers.true_law("additive", "b")},
        n_mix=6,
        noise=1e-3,
    )
    kw: dict[str, Any] = dict(
        n_boot=3, seed=0, settings=FitSettings(n_random=100, n_starts=2, niter=0, maxiter=200)
    )
    serial = bootstrap(table, "additive", ["a", "b"], **kw)
    with caplog.at_level(logging.WARNING, logger="mixsampler.laws"):
        parallel = bootstrap(table, "additive", ["a", "b"], jobs=2, **kw)
    for t in ("a", "b"):
        np.testing.assert_array_equal(serial.params[t], parallel.params[t])
    assert any("a: " in w and "6 distinct mixtures" in w for w in parallel.warnings)
    assert any("replicates have identifiability warnings" in w for w in parallel.warnings)
    assert "bootstrap: a:" in caplog.text


def test_refit_modes(helpers: Any, synth_table: Any) -> None:
    table = synth_table({"a": helpers.true_law("chinchilla")}, n_mix=3)
    fast = FitSettings(n_random=50, n_starts=1, niter=0, maxiter=100)
    res = bootstrap(table, "chinchilla", ["a"], n_boot=2, refit="full", settings=fast)
    assert res.params["a"].shape == (2, 5) and res.converged.shape == (2,)
    with pytest.raises(ValueError, match="refit can be local, full, got 'fast'"):
        bootstrap(table, "chinchilla", ["a"], refit="fast")
    with pytest.raises(ValueError, match="jobs must be an integer >= 1, got 0"):
        bootstrap(table, "chinchilla", ["a"], jobs=0)


def test_intervals_leave_out_unconverged_replicates() -> None:
    from mixsampler.laws.bootstrap import BootstrapResult

    # Four replicates near 2.0 and one unconverged far away: the interval must not reach it.
    preds = np.array([[2.00], [2.01], [1.99], [2.02], [9.0]])
    weights = np.array([[0.5, 0.5], [0.4, 0.6], [0.6, 0.4], [0.5, 0.5], [1.0, 0.0]])
    ok = np.array([True, True, True, True, False])
    res = BootstrapResult(
        law="additive", targets=["t"], domains=("a", "b"), level=0.9, full={},
        predictions={"t": preds}, optimal_weights=weights, converged=ok,
    )  # fmt: skip
    lo, hi = res.prediction_interval()["t"]
    assert hi[0] < 2.1 and lo[0] > 1.9
    assert res.weight_interval()["a"][1] <= 0.6
    assert res.prediction_interval(converged_only=False)["t"][1][0] > 5
    res_bad = BootstrapResult(
        law="additive", targets=["t"], domains=("a", "b"), level=0.9, full={},
        predictions={"t": preds}, converged=np.array([True, False, False, False, False]),
    )  # fmt: skip
    with pytest.raises(ValueError, match="only 1 of 5 bootstrap replicates converged"):
        res_bad.prediction_interval()
