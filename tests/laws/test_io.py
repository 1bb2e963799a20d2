"""LAW.json round-trips bit-identically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from laws import FitSettings, fit, load_laws, save_laws


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
    with pytest.raises(ValueError, match=r"law 'x': params of a chinchilla law .* missing"):
        load_laws(bad)
