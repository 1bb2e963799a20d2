"""Issue 19: the optimum of the problem asked, inside the evidence, from a law that is checked,
with a statement of how sure it is. References are independent: scipy's SLSQP from 64 starts
and 20,000 random feasible mixtures scored by the same law."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

from mixsampler import cli
from mixsampler.laws import FittedLaw, optimize, project_capped_simplex, save_laws
from mixsampler.laws.decision import (
    UnconvergedOptimumError,
    UntrustedLawError,
    check_trusted,
    decide,
    default_objective,
    require_certified,
)
from mixsampler.laws.optimize import convex_in_weights, repair_feasible
from mixsampler.laws.weightsfile import read_weights

DOMAINS = ("a", "b", "c")

# A joint law whose optimum holds weights of 1e-6 under exponents of 0.003-0.03: the former
# solver stopped at the right point (gap 3.5e-8 > tol, at 3,000 and 20,000 iterations alike).
TINY = {
    "E": 1.5,
    "gammaA": 1.3,
    "alpha": 0.35,
    "gammaB": 0.8,
    "beta": 0.3,
    "C_a": 1.46474,
    "gamma_a": 0.0282829,
    "CA_a": 23.0199,
    "CB_a": 1.19956,
    "C_b": 1.1076,
    "gamma_b": 0.0127309,
    "CA_b": 39.6687,
    "CB_b": 55.5205,
    "C_c": 1.28205,
    "gamma_c": 0.877123,
    "CA_c": 15.7097,
    "CB_c": 30.9936,
    "C_d": 1.79471,
    "gamma_d": 0.0065421,
    "CA_d": 91.2082,
    "CB_d": 1.48334,
    "C_e": 1.01956,
    "gamma_e": 0.00347513,
    "CA_e": 29.1364,
    "CB_e": 1.02493,
    "C_f": 1.39422,
    "gamma_f": 0.00451925,
    "CA_f": 1.13263,
    "CB_f": 1.42146,
}


def _law(helpers: Any, name: str, **changes: float) -> FittedLaw:
    law = helpers.true_law(name)
    return FittedLaw(name, law.domains, law.target, {**law.params, **changes})


def _objective(law: FittedLaw, n: float, d: float):  # type: ignore[no-untyped-def]
    return lambda h: float(law.predict(n, d, np.asarray(h)))


def _references(
    law: FittedLaw, n: float, d: float, lo: np.ndarray, hi: np.ndarray
) -> tuple[float, float]:
    """(best of 64-start SLSQP, best of 20,000 random feasible mixtures)."""
    f = _objective(law, n, d)
    rng = np.random.default_rng(7)
    k = len(lo)
    best = np.inf
    for h0 in project_capped_simplex(rng.dirichlet(np.ones(k), 64), lo, hi):
        r = minimize(
            f,
            h0,
            method="SLSQP",
            bounds=list(zip(lo, hi, strict=True)),
            constraints=[{"type": "eq", "fun": lambda h: h.sum() - 1}],
            options={"maxiter": 500, "ftol": 1e-14},
        )
        x = repair_feasible(r.x, lo, hi)[0]
        best = min(best, f(x))
    pts = project_capped_simplex(
        np.concatenate([rng.dirichlet(np.ones(k), 10_000), rng.dirichlet(np.full(k, 0.2), 10_000)]),
        lo,
        hi,
    )
    rand = float(np.min(law.predict(n, d, pts)))
    return best, rand


CASES = [
    ("additive", {}, {}),
    ("additive", {"gamma_a": 1e-3, "gamma_b": 30.0}, {}),  # parameters on their bounds
    ("joint", {}, {}),
    ("joint", {"gammaA": 1e-2, "CA_a": 1e-3}, {"max_weight": {"a": 0.5}}),
    ("full", {}, {"min_weight": 0.05}),
    ("simple", {}, {}),
    ("ye_m1", {"g_a": 3.0, "g_b": 2.5}, {}),  # convex with two competing corners
    ("bimix", {}, {"max_weight": {"a": 0.6}}),
]


@pytest.mark.parametrize(("name", "changes", "cons"), CASES)
def test_matches_multistart_slsqp_and_random_search(
    helpers: Any, name: str, changes: dict[str, float], cons: dict[str, Any]
) -> None:
    law = _law(helpers, name, **changes)
    res = optimize({"a": law}, model_size=1e9, n_tokens=1e10, trust_region="none", **cons)
    lo, hi = np.array(list(res.lower.values())), np.array(list(res.upper.values()))
    slsqp, rand = _references(law, 1e9, 1e10, lo, hi)
    assert res.success, res.message
    assert abs(res.x.sum() - 1) < 1e-12 and (res.x >= lo).all() and (res.x <= hi).all()
    # Never worse than either reference (to round-off of the objective).
    assert res.fun <= slsqp + 1e-9, (res.fun, slsqp)
    assert res.fun <= rand + 1e-12, (res.fun, rand)
    assert res.search == "global" or res.search.startswith("best of ")
    assert res.search == ("global" if convex_in_weights(law) else res.search)


def test_convexity_label(helpers: Any) -> None:
    assert convex_in_weights(helpers.true_law("additive"))
    assert not convex_in_weights(_law(helpers, "additive", gamma_a=1.5))
    assert not convex_in_weights(helpers.true_law("joint"))
    res = optimize({"a": _law(helpers, "additive", gamma_a=1.5)}, model_size=1e9, n_tokens=1e10)
    assert res.search.startswith("best of ") and "basin" in res.search
    assert res.n_starts >= 64 and res.n_basins >= 1
    assert "local result" in res.message


def test_tiny_exponents_certify_without_false_refusal() -> None:
    law = FittedLaw("joint", tuple("abcdef"), "a", TINY)
    res = optimize({"a": law}, model_size=1e9, n_tokens=1e10, trust_region="none")
    assert res.success, res.message
    assert res.x.min() < 1e-5  # the case: weights of 1e-6 under exponents of 0.003-0.03
    slsqp, rand = _references(law, 1e9, 1e10, np.zeros(6), np.ones(6))
    assert res.fun <= min(slsqp, rand) + 1e-9


@settings(max_examples=60, deadline=None)
@given(
    y=st.lists(st.floats(0, 1e6), min_size=4, max_size=4),
    lo=st.lists(st.floats(0, 0.2), min_size=4, max_size=4),
    cap=st.lists(st.floats(0.25, 1.0), min_size=4, max_size=4),
)
def test_projection_output_is_always_feasible(
    y: list[float], lo: list[float], cap: list[float]
) -> None:
    lo_, hi_ = np.array(lo), np.array(cap)
    yy = np.array(y) + 1e-300 * (np.sum(y) == 0)
    h = project_capped_simplex(yy, lo_, hi_)[0]
    assert abs(h.sum() - 1) < 1e-12
    assert (h >= lo_ - 1e-15).all() and (h <= hi_ + 1e-15).all()
    r = repair_feasible(np.array(y), lo_, hi_)[0]
    assert abs(r.sum() - 1) < 1e-12 and (r >= lo_).all() and (r <= hi_).all()


def test_full_law_with_availability_limit_is_feasible(helpers: Any) -> None:
    law = helpers.true_law("full")
    res = optimize(
        {"a": law}, model_size=7e9, n_tokens=1.5e11, available={"a": 2e10, "b": 3e10}, max_repeat=2
    )
    assert abs(res.x.sum() - 1) < 1e-12
    assert res.x[0] <= 2 * 2e10 / 1.5e11 + 1e-15 and res.x[1] <= 2 * 3e10 / 1.5e11 + 1e-15


def _with_fit(law: FittedLaw, **fit: Any) -> FittedLaw:
    ev = {
        "model_size": [1e8, 5e8],
        "n_tokens": [1e9, 1e10],
        "weights": {"a": [0.2, 0.4], "b": [0.3, 0.5], "c": [0.2, 0.4]},
        "mixtures": [[0.2, 0.4, 0.4], [0.4, 0.3, 0.3], [0.3, 0.5, 0.2]],
    }
    base = {"converged": True, "train_mre": 0.004, "heldout": {"n": {"mre": 0.008}}}
    return law.with_fit_info(evidence=ev, **{**base, **fit})


def test_trust_region_keeps_weights_near_the_fitting_runs(helpers: Any) -> None:
    law = _with_fit(helpers.true_law("additive"))
    free = optimize({"a": law}, model_size=1e9, n_tokens=1e10, trust_region="none")
    # The unconstrained optimum leaves the fitting range, so the region matters here.
    assert free.weights["a"] > 0.45
    res = optimize({"a": law}, model_size=1e9, n_tokens=1e10)
    assert res.trust_region["kind"] == "range" and res.trust_region["margin"] == 0.05
    for d, (lo, hi) in law.evidence["weights"].items():
        assert lo - 0.05 - 1e-12 <= res.weights[d] <= hi + 0.05 + 1e-12
    assert res.fun >= free.fun
    wide = optimize({"a": law}, model_size=1e9, n_tokens=1e10, trust_margin=0.5)
    assert wide.fun <= res.fun
    with pytest.raises(ValueError, match="trust region.*--trust-region none"):
        optimize({"a": law}, model_size=1e9, n_tokens=1e10, min_weight={"a": 0.6})


def test_untrusted_laws_are_refused_with_the_reason(helpers: Any) -> None:
    good = _with_fit(helpers.true_law("additive"))
    assert check_trusted({"a": good}) == []
    cases = {
        "did not converge": _with_fit(good, converged=False),
        "held-out n error 12 %": _with_fit(good, heldout={"n": {"mre": 0.12}}),
        "never learned (r7)": _with_fit(good, never_learned=[{"run": "r7"}]),
    }
    for needle, law in cases.items():
        with pytest.raises(UntrustedLawError, match=r"--allow-untrusted-law") as e:
            decide({"a": law}, model_size=1e9, n_tokens=1e10)
        assert needle in str(e.value), str(e.value)
        dec = decide({"a": law}, model_size=1e9, n_tokens=1e10, allow_untrusted_law=True)
        assert any(needle in s for s in dec.issues)


def test_predictions_far_outside_the_fitted_range_are_refused(helpers: Any) -> None:
    # B = 1e4 with beta 0.3 at D = 1e6: a loss in the thousands where runs were near 3.
    law = _with_fit(_law(helpers, "additive", B=1e4, beta=2.0))
    with pytest.raises(UntrustedLawError, match="more than 3x outside"):
        decide({"a": law}, model_size=1e9, n_tokens=1e8)


def test_unconverged_optimum_is_refused(helpers: Any) -> None:
    res = optimize({"a": helpers.true_law("joint")}, model_size=1e9, n_tokens=1e10, max_iter=1)
    with pytest.raises(UnconvergedOptimumError, match="--allow-unconverged"):
        require_certified(res)
    require_certified(res, allow=True)


def test_gain_is_stated_against_the_heldout_error(helpers: Any) -> None:
    law = _with_fit(helpers.true_law("additive"))
    dec = decide({"a": law}, model_size=1e9, n_tokens=1e10, natural={"a": 1, "b": 1, "c": 8})
    assert set(dec.baselines) == {"uniform", "natural", "best fitting run"}
    assert dec.resolution == pytest.approx(0.008 * dec.result.fun)
    for name, b in dec.baselines.items():
        f = float(law.predict(1e9, 1e10, [b["weights"][d] for d in DOMAINS]))
        assert b["gain"] == pytest.approx(f - dec.result.fun, abs=1e-12)
        expect = "below" if abs(b["gain"]) <= dec.resolution else "resolvable"
        assert b["verdict"].startswith(expect), (name, b)
    # The natural mixture (80 % c) is far from the optimum; the best fitting run is not.
    assert dec.baselines["natural"]["verdict"].startswith("resolvable")
    assert dec.baselines["best fitting run"]["verdict"].startswith("below")
    text = "\n".join(dec.statement())
    assert "vs natural" in text and "held-out n error" in text


def test_default_objective_is_the_training_domains(helpers: Any) -> None:
    laws_ = {"a": helpers.true_law("additive", "a"), "ood": helpers.true_law("additive", "ood")}
    obj, why = default_objective(laws_)
    assert obj == {"a": 1.0} and "ood" in why and "left out" in why


def _save(tmp_path: Path, law: FittedLaw) -> Path:
    path = tmp_path / "LAW.json"
    save_laws(path, {"a": law})
    return path


def test_verb_refuses_untrusted_law_and_writes_the_decision(
    tmp_path: Path, helpers: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _save(tmp_path, _with_fit(helpers.true_law("additive"), converged=False))
    out = tmp_path / "W.json"
    base = ["optimize", str(bad), "--model-size", "1e9", "--tokens", "1e10", "-o", str(out)]
    assert cli.main(base) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "did not converge" in err[0] and "--allow-untrusted-law" in err[0]
    assert not out.exists()
    assert cli.main([*base, "--allow-untrusted-law"]) == 0
    doc = read_weights(out)
    assert any("did not converge" in s for s in doc.decision["issues"])
    good = _save(tmp_path, _with_fit(helpers.true_law("additive")))
    args = ["optimize", str(good), "--model-size", "1e9", "--tokens", "1e10", "-o", str(out)]
    assert cli.main([*args, "--natural", "a=1,b=1,c=8", "--min-weight", '{"b": 0.3}']) == 0
    printed = capsys.readouterr().out
    assert "vs uniform" in printed and "vs natural" in printed and "trust region" in printed
    doc = read_weights(out)
    assert doc.weights["b"] >= 0.3 - 1e-12
    assert doc.search["label"] == "global" and doc.trust_region["kind"] == "range"
    assert set(doc.decision["baselines"]) == {"uniform", "natural", "best fitting run"}
    json.loads(out.read_text())  # strict JSON


def test_verb_bootstrap_cap_is_checked_first(
    tmp_path: Path, helpers: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    law = _save(tmp_path, helpers.true_law("additive"))
    argv = ["optimize", str(law), "--model-size", "1e9", "--tokens", "1e10", "-o"]
    argv += [str(tmp_path / "W.json"), "--runs", str(tmp_path / "x.csv"), "--bootstrap", "10**9"]
    argv[-1] = "1000000000"
    assert cli.main(argv) == 2
    assert "100,000" in capsys.readouterr().err


def test_verb_bootstrap_gives_each_gain_an_interval(
    tmp_path: Path, helpers: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = helpers.synth_rows({"a": helpers.true_law("additive")}, n_mix=6)
    runs = helpers.write_csv(tmp_path / "runs.csv", rows)
    law = tmp_path / "LAW.json"
    assert cli.main(["fit", str(runs), "--law", "additive", "--target", "a", "-o", str(law)]) == 0
    out = tmp_path / "W.json"
    argv = ["optimize", str(law), "--model-size", "1e9", "--tokens", "8B", "-o", str(out)]
    assert cli.main([*argv, "--runs", str(runs), "--bootstrap", "6"]) == 0
    printed = capsys.readouterr().out
    doc = read_weights(out)
    gains = doc.intervals["gain"]
    assert set(gains) == set(doc.decision["baselines"]) and "uniform" in gains
    for name, (lo, hi) in gains.items():
        assert lo <= hi
        assert doc.decision["baselines"][name]["interval"] == [lo, hi]
        assert f"vs {name}: gain" in printed
    assert "bootstrap [" in printed
