"""WEIGHTS.json: versioned strict JSON, checked on read, unconverged weights refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mixsampler.laws import FittedLaw, optimize
from mixsampler.laws.weightsfile import (
    UnconvergedWeightsError,
    WeightsFile,
    read_weights,
    write_weights,
)


def _law() -> FittedLaw:
    params = {"E": 1.5, "C_a": 2.0, "C_b": 1.0, "gamma_a": 0.5, "gamma_b": 0.3}
    params |= {"A": 0.4, "alpha": 0.35, "B": 0.9, "beta": 0.3}
    return FittedLaw("additive", ("a", "b"), "a", params)


def test_from_result_round_trips_and_is_strict_json(tmp_path: Path) -> None:
    res = optimize({"a": _law()}, model_size=1e9, n_tokens=2e10)
    wf = WeightsFile.from_result(res, law_file="LAW.json", seed=3)
    assert wf.success == res.success and wf.gap == res.gap and wf.extra["seed"] == 3
    p = write_weights(tmp_path / "WEIGHTS.json", wf)
    doc = json.loads(p.read_text())
    assert doc["format"] == "mixsampler-weights" and doc["version"] == 1
    assert doc["law_file"] == "LAW.json" and doc["weights"] == dict(res.weights)
    back = read_weights(p)
    assert back == wf
    write_weights(tmp_path / "again.json", back)
    assert (tmp_path / "again.json").read_bytes() == p.read_bytes()
    with pytest.raises(TypeError):
        wf.weights["a"] = 1.0  # type: ignore[index]


def test_unconverged_is_refused_unless_allowed(tmp_path: Path) -> None:
    p = write_weights(
        tmp_path / "W.json", WeightsFile({"a": 0.5, "b": 0.5}, success=False, gap=0.2)
    )
    with pytest.raises(UnconvergedWeightsError, match=r"W\.json: .*success: false.*allow_unconv"):
        read_weights(p)
    assert isinstance(UnconvergedWeightsError("x"), ValueError)
    assert read_weights(p, allow_unconverged=True).weights == {"a": 0.5, "b": 0.5}


def test_hand_written_file_without_format_reads(tmp_path: Path) -> None:
    p = tmp_path / "W.json"
    p.write_text(json.dumps({"weights": {"a": 0.25, "b": 0.75}, "note": "by hand"}))
    wf = read_weights(p)
    assert wf.weights == {"a": 0.25, "b": 0.75} and wf.success and wf.extra["note"] == "by hand"


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        ({"weights": {"a": 0.5, "b": 0.5}, "success": "false"}, r"field success: must be true"),
        ({"weights": {"a": 0.5, "b": 0.6}}, r"field weights: must sum to 1"),
        ({"weights": {"a": -0.5, "b": 1.5}}, r"field weights\.a: must be a number >= 0"),
        ({"weights": {"a": "0.5", "b": 0.5}}, r"field weights\.a: must be a number, got '0\.5'"),
        ({"weights": [0.5, 0.5]}, r"field weights: must be an object, not a list"),
        ({"weights": {}}, r"field weights: must name at least one domain"),
        ({"weights": {"a": 1.0}, "gap": -1}, r"field gap: must be a number >= 0"),
        ({"weights": {"a": 1.0}, "model_size": 0}, r"field model_size: must be a number > 0"),
        ({"weights": {"a": 1.0}, "format": "mixsampler-laws"}, r"not a weights file"),
        ({"weights": {"a": 1.0}, "format": "mixsampler-weights", "version": 2}, r"newer"),
        ({"weights": {"a": 1.0}, "format": "mixsampler-weights", "version": "1"}, r"version"),
        ({"success": True}, r"must hold \{\"weights\": \{domain: weight\}.*\['success'\]"),
        ([1, 2], r"not a weights file: expected a JSON object"),
    ],
)
def test_bad_files_name_file_field_and_value(tmp_path: Path, doc: Any, match: str) -> None:
    p = tmp_path / "W.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"W\.json.*" + match):
        read_weights(p)


@pytest.mark.parametrize(
    "text",
    ['{"weights": {"a": NaN}}', '{"weights": {"a": 1.0}, "gap": Infinity}', '{"weights": {"a": 1'],
)
def test_non_strict_json_is_refused(tmp_path: Path, text: str) -> None:
    p = tmp_path / "W.json"
    p.write_text(text)
    with pytest.raises(ValueError, match=r"W\.json: not valid JSON"):
        read_weights(p)


def test_duplicate_keys_missing_file_and_directory(tmp_path: Path) -> None:
    p = tmp_path / "W.json"
    p.write_text('{"weights": {"a": 0.5, "a": 0.5}}')
    with pytest.raises(ValueError, match=r"duplicated key\(s\) \['a'\]"):
        read_weights(p)
    with pytest.raises(FileNotFoundError, match="weights file .*nope.json does not exist"):
        read_weights(tmp_path / "nope.json")
    with pytest.raises(ValueError, match="is a directory"):
        read_weights(tmp_path)


def test_writing_non_finite_values_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"field gap: must be a finite number, got nan"):
        WeightsFile({"a": 1.0}, gap=float("nan"))
    with pytest.raises(ValueError, match=r"field intervals\.w\[1\]: must be a finite"):
        WeightsFile({"a": 1.0}, intervals={"w": [0.1, float("inf")]})
    assert not list(tmp_path.iterdir())


def test_a_misspelt_field_is_not_taken_for_a_note(tmp_path: Path) -> None:
    p = tmp_path / "W.json"
    p.write_text(json.dumps({"weights": {"a": 1.0}, "sucess": False}))
    with pytest.raises(ValueError, match=r"field sucess: unknown key \(did you mean 'success'"):
        read_weights(p)
