"""FittedLaw is immutable: what predicts is what is saved, and warnings travel with it."""

from __future__ import annotations

import dataclasses
import json
import pickle
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mixsampler.laws import FittedLaw


def test_params_cannot_change_behind_predict(helpers: Any) -> None:
    law = helpers.true_law("additive")
    with pytest.raises(TypeError):
        law.params["E"] = 5.0  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        law.law = "joint"  # type: ignore[misc]
    with pytest.raises(TypeError):
        law.fit["seed"] = 3  # type: ignore[index]
    x = law.x
    x[0] = 99.0  # a copy
    assert law.params["E"] == helpers.TRUE_PARAMS["additive"]["E"]
    # A changed law is a new law, and it predicts with its own parameters.
    other = dataclasses.replace(law, params={**law.params, "E": 5.0})
    h = [0.2, 0.3, 0.5]
    assert float(other.predict(1e9, 1e10, h)) == pytest.approx(
        float(law.predict(1e9, 1e10, h)) + 5.0 - law.params["E"]
    )


@settings(max_examples=30, deadline=None)
@given(
    e=st.floats(0.1, 5.0),
    c=st.lists(st.floats(0.01, 100.0), min_size=3, max_size=3),
    warnings=st.lists(st.text(max_size=30), max_size=3),
)
def test_to_dict_round_trip_predicts_the_same(e: float, c: list[float], warnings: list) -> None:
    params = {"E": e, "A": 0.4, "alpha": 0.35, "B": 0.9, "beta": 0.3}
    params.update({f"C_{d}": v for d, v in zip("abc", c, strict=True)})
    params.update({f"gamma_{d}": 0.5 for d in "abc"})
    law = FittedLaw(
        "additive",
        ("a", "b", "c"),
        "a",
        params,
        warnings=tuple(warnings),
        fit={"settings": {"n_random": 3}, "fixed": ["N"]},
    )
    back = FittedLaw.from_dict(json.loads(json.dumps(law.to_dict())))
    assert back.warnings == tuple(warnings)
    assert dict(back.params) == dict(law.params)
    assert back.to_dict() == law.to_dict()
    h = np.array([[0.2, 0.3, 0.5], [0.6, 0.2, 0.2]])
    np.testing.assert_array_equal(back.predict(3e8, 5e9, h), law.predict(3e8, 5e9, h))
    # Worker processes get the same law.
    assert pickle.loads(pickle.dumps(law)).to_dict() == law.to_dict()


def test_with_fit_info_adds_without_touching_the_original(helpers: Any) -> None:
    law = helpers.true_law("chinchilla")
    tagged = law.with_fit_info(where="model_size < 2e9")
    assert tagged.fit["where"] == "model_size < 2e9" and "where" not in law.fit
    assert tagged.to_dict()["fit"]["where"] == "model_size < 2e9"


def test_bad_warnings_are_refused(helpers: Any) -> None:
    with pytest.raises(ValueError, match="warnings must be a sequence of strings"):
        FittedLaw(
            "chinchilla",
            ("a",),
            "a",
            dict(helpers.TRUE_PARAMS["chinchilla"]),
            warnings="on its bound",
        )  # type: ignore[arg-type]
