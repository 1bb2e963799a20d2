"""LAW.json round-trips bit-identically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mixsampler.laws import FitSettings, FittedLaw, fit, load_laws, save_laws


def test_round_trip_is_bit_identical(tmp_path: Path, helpers: Any, synth_table: Any) -> None:
    table = synth_table({"a": helpers.true_law("additive"), "b": helpers.true_law("linear")})
    fast = FitSettings(n_random=100, n_starts=1, niter=0, maxiter=200)
    fitted = {
        t: fit(table, law, t, settings=fast).law for t, law in (("a", "additive"), ("b", "linear"))
    }
    p1 = save_laws(tmp_path / "LAW.json", fitted)
    loaded = load_laws(p1)
    assert list(loaded) == ["a", "b"]
    for t in fitted:
        assert loaded[t].params == fitted[t].params  # exact float equality
        assert loaded[t].domains == fitted[t].domains and loaded[t].law == fitted[t].law
        assert loaded[t].fingerprint == fitted[t].fingerprint != ""
        h = np.array([[0.2, 0.3, 0.5]])
        assert np.array_equal(loaded[t].predict(5e8, 3e9, h), fitted[t].predict(5e8, 3e9, h))
    p2 = save_laws(tmp_path / "again.json", loaded)
    assert p1.read_bytes() == p2.read_bytes()
    doc = json.loads(p1.read_text())
    law = doc["laws"]["a"]
    assert {"law", "domains", "target", "parameters", "fit", "fingerprint"} <= set(law)
    assert law["fit"]["settings"]["delta"] == 1e-3 and law["fit"]["n_rows"] == len(table)


def test_bad_law_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="law file .*missing.json does not exist"):
        load_laws(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=r"bad\.json: not valid JSON"):
        load_laws(bad)
    bad.write_text(json.dumps({"weights": {}}))
    with pytest.raises(ValueError, match="not a law file"):
        load_laws(bad)
    bad.write_text(
        json.dumps(
            {
                "format": "mixsampler-laws",
                "laws": {
                    "x": {
                        "law": "chinchilla",
                        "target": "x",
                        "domains": ["a"],
                        "parameters": {"E": 1.0},
                    }
                },
            }
        )
    )
    with pytest.raises(ValueError, match=r"field laws\.x: params of a chinchilla law .* missing"):
        load_laws(bad)


def _law_doc(**over: Any) -> dict[str, Any]:
    law = {
        "law": "chinchilla",
        "target": "x",
        "domains": ["a"],
        "parameters": {"E": 1.0, "A": 0.2, "alpha": 0.3, "B": 0.5, "beta": 0.3},
    }
    law.update(over)
    return {"format": "mixsampler-laws", "version": 1, "laws": {"x": law}}


@pytest.mark.parametrize(
    ("over", "match"),
    [
        ({"use_n": "false"}, r"field laws\.x\.use_n: must be true or false, got 'false'"),
        ({"n_scale": 0}, r"field laws\.x\.n_scale: must be a number > 0, got 0"),
        ({"n_scale": "1e9"}, r"field laws\.x\.n_scale: must be a number, got '1e9'"),
        ({"parameters": [1, 2]}, r"field laws\.x\.parameters: must be an object, not a list"),
        ({"domains": "a"}, r"field laws\.x\.domains: must be a list of strings, not a string"),
        ({"domains": ["a", "a"]}, r"field laws\.x\.domains: must not repeat names"),
        ({"law": "nope"}, r"field laws\.x\.law: unknown law"),
        (
            {"parameters": {"E": 1.0, "A": -0.2, "alpha": 0.3, "B": 0.5, "beta": 0.3}},
            r"field laws\.x\.parameters\.A: must be a number > 0, got -0\.2",
        ),
        (
            {"parameters": {"E": "1", "A": 0.2, "alpha": 0.3, "B": 0.5, "beta": 0.3}},
            r"field laws\.x\.parameters\.E: must be a number, got '1'",
        ),
        ({"fingerprint": 3}, r"field laws\.x\.fingerprint: must be a non-empty string, got 3"),
        ({"fit": "x"}, r"field laws\.x\.fit: must be an object"),
    ],
)
def test_law_fields_are_checked(tmp_path: Path, over: dict[str, Any], match: str) -> None:
    p = tmp_path / "LAW.json"
    p.write_text(json.dumps(_law_doc(**over)))
    with pytest.raises(ValueError, match=r"LAW\.json, " + match):
        load_laws(p)


def test_nan_is_refused_on_read_and_write(tmp_path: Path) -> None:
    p = tmp_path / "LAW.json"
    p.write_text(json.dumps(_law_doc()).replace('"E": 1.0', '"E": NaN'))
    with pytest.raises(ValueError, match=r"LAW\.json: not valid JSON.*NaN"):
        load_laws(p)
    law = load_laws(_write_doc(tmp_path / "ok.json", _law_doc()))["x"]
    bad = FittedLaw(law.law, law.domains, law.target, {**law.params, "E": float("nan")})
    with pytest.raises(ValueError, match=r"out\.json, field laws\.x\.parameters\.E: must be a fin"):
        save_laws(tmp_path / "out.json", {"x": bad})
    assert not (tmp_path / "out.json").exists()


def test_old_file_without_version_still_reads(tmp_path: Path) -> None:
    doc = _law_doc()
    del doc["version"]
    assert load_laws(_write_doc(tmp_path / "old.json", doc))["x"].params["E"] == 1.0


def _write_doc(p: Path, doc: dict[str, Any]) -> Path:
    p.write_text(json.dumps(doc))
    return p


def test_unknown_keys_are_refused_with_a_hint(tmp_path: Path) -> None:
    doc = _law_doc()
    doc["laws"]["x"]["use_N"] = False
    with pytest.raises(ValueError, match=r"field laws\.x: unknown key\(s\) \(did you mean 'use_n'"):
        load_laws(_write_doc(tmp_path / "LAW.json", doc))
    doc = _law_doc()
    doc["law"] = {}
    with pytest.raises(ValueError, match=r"unknown top-level key\(s\).*got \['law'\]"):
        load_laws(_write_doc(tmp_path / "LAW.json", doc))
