"""Optimal weights: mirror descent against a brute-force grid, and the constraints."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mixsampler.laws import FittedLaw, feasible_bounds, optimize, project_capped_simplex

DOM = ("a", "b", "c")
STEP = 0.01
GRID = np.array(
    [
        (i * STEP, j * STEP, 1 - (i + j) * STEP)
        for i in range(int(1 / STEP) + 1)
        for j in range(int(1 / STEP) + 1 - i)
    ]
)
GRID[:, 2] = np.clip(GRID[:, 2], 0.0, 1.0)


def _law(kind: str, draw: Any) -> FittedLaw:
    pos = st.floats(0.05, 5.0)
    expo = st.floats(0.1, 1.5)
    p: dict[str, float] = {"E": 1.0}
    for d in DOM:
        p[f"C_{d}"] = draw(pos)
        p[f"gamma_{d}"] = draw(expo)
    if kind == "additive":
        p.update(A=draw(pos), alpha=draw(expo) / 3, B=draw(pos), beta=draw(expo) / 3)
    else:
        for d in DOM:
            p[f"CA_{d}"] = draw(pos)
            p[f"CB_{d}"] = draw(pos)
        p.update(gammaA=draw(expo), alpha=0.3, gammaB=draw(expo), beta=0.3)
    return FittedLaw(kind, DOM, "t", p)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), kind=st.sampled_from(["additive", "joint"]), lo=st.sampled_from([0, 0.05]))
def test_matches_brute_force_grid(data: Any, kind: str, lo: float) -> None:
    law = _law(kind, data.draw)
    n, d = 1e9, 2e10
    res = optimize({"t": law}, model_size=n, n_tokens=d, min_weight=lo)
    grid = GRID[(GRID >= lo - 1e-12).all(axis=1)]
    vals = law.predict(n, d, grid)
    # At least as good as the best grid point, and near it (the grid spacing is 0.01).
    assert res.fun <= vals.min() + 1e-9
    near = grid[vals <= vals.min() + 1e-4]
    assert np.abs(near - res.x).max(axis=1).min() < 0.05
    assert res.x.min() >= lo - 1e-12 and res.x.sum() == pytest.approx(1.0, abs=1e-12)
    assert res.fun == pytest.approx(res.predicted_loss["t"])


def _simple_law(target: str = "t") -> FittedLaw:
    # Loss falls with every weight; domain a helps most.
    return FittedLaw(
        "additive",
        DOM,
        target,
        {
            "E": 1.0,
            "C_a": 4.0,
            "C_b": 1.0,
            "C_c": 1.0,
            "gamma_a": 0.5,
            "gamma_b": 0.5,
            "gamma_c": 0.5,
            "A": 0.5,
            "alpha": 0.3,
            "B": 0.5,
            "beta": 0.3,
        },
    )


def test_constraints_are_respected() -> None:
    law = {"t": _simple_law()}
    free = optimize(law, model_size=1e9, n_tokens=1e10)
    assert free.weights["a"] > 0.6
    capped = optimize(law, model_size=1e9, n_tokens=1e10, max_weight={"a": 0.3}, min_weight=0.1)
    assert capped.weights["a"] == pytest.approx(0.3, abs=1e-9)
    assert min(capped.weights.values()) >= 0.1 - 1e-12
    # Availability: a has 2e9 tokens, 2 repetitions allowed, D = 1e10 -> h_a <= 0.4.
    avail = optimize(law, model_size=1e9, n_tokens=1e10, available={"a": 2e9}, max_repeat={"a": 2})
    assert avail.weights["a"] == pytest.approx(0.4, abs=1e-9)
    assert avail.upper["a"] == pytest.approx(0.4)
    assert capped.fun >= free.fun and avail.fun >= free.fun
    per_domain = optimize(law, model_size=1e9, n_tokens=1e10, min_weight={"b": 0.5})
    assert per_domain.weights["b"] >= 0.5 - 1e-12


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"min_weight": 0.4}, r"min_weight sums to 1\.2 > 1 over a=0\.4, b=0\.4, c=0\.4"),
        (
            {"max_weight": {"a": 0.2, "b": 0.2, "c": 0.2}},
            r"upper bounds sum to 0\.6 < 1.*a <= max_weight 0\.2",
        ),
        (
            {"min_weight": {"a": 0.5}, "max_weight": {"a": 0.3}},
            r"a: min_weight 0\.5 > upper bound 0\.3 \(max_weight 0\.3\)",
        ),
        (
            {"available": {"a": 1e9, "b": 1e9, "c": 1e9}},
            r"upper bounds sum to 0\.3 < 1.*a <= available 1e\+09 tokens x max_repeat 1 / n_tokens",
        ),
        ({"max_weight": {"zz": 0.1}}, r"max_weight names unknown domain\(s\) zz"),
        ({"min_weight": -0.1}, r"min_weight must be finite and >= 0"),
        ({"objective": {"nope": 1.0}}, r"objective names target\(s\) nope without a law"),
        ({"max_repeat": {"a": 2.0}}, r"max_repeat \{'a': 2\.0\} needs available"),
    ],
)
def test_infeasible_or_bad_constraints_raise_naming_them(kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        optimize({"t": _simple_law()}, model_size=1e9, n_tokens=1e10, **kw)


def test_several_targets_and_json() -> None:
    other = FittedLaw(
        "additive",
        ("c", "b", "a"),
        "u",  # another domain order on purpose
        {
            "E": 1.0,
            "C_a": 1.0,
            "C_b": 1.0,
            "C_c": 4.0,
            "gamma_a": 0.5,
            "gamma_b": 0.5,
            "gamma_c": 0.5,
            "A": 0.5,
            "alpha": 0.3,
            "B": 0.5,
            "beta": 0.3,
        },
    )
    laws_ = {"t": _simple_law(), "u": other}
    both = optimize(laws_, model_size=1e9, n_tokens=1e10)
    assert both.weights["a"] == pytest.approx(both.weights["c"], abs=1e-6)  # symmetric
    only_u = optimize(laws_, model_size=1e9, n_tokens=1e10, objective={"u": 1.0})
    assert only_u.weights["c"] > 0.6
    doc = json.loads(json.dumps(both.to_json()))
    assert set(doc["weights"]) == set(DOM) and set(doc["predicted_loss"]) == {"t", "u"}
    assert doc["model_size"] == 1e9 and doc["law"] == "additive" and doc["success"]


def test_projection_onto_capped_simplex() -> None:
    lo = np.array([0.1, 0.0, 0.0])
    hi = np.array([1.0, 0.2, 1.0])
    h = project_capped_simplex(np.array([[1.0, 5.0, 1.0], [0.01, 0.01, 10.0]]), lo, hi)
    assert np.allclose(h.sum(axis=1), 1.0, atol=1e-12)
    assert (h >= lo - 1e-12).all() and (h <= hi + 1e-12).all()
    assert h[0, 1] == pytest.approx(0.2)
    assert feasible_bounds(DOM, 1e9, available={"a": 5e8}, max_repeat=4.0)[1][0] == 1.0
