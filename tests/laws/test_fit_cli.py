"""`mixsampler fit`: parallel targets, the N column, and identifiability warnings printed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mixsampler import cli


def test_fit_jobs_n_column_and_warnings(
    tmp_path: Path, helpers: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = helpers.synth_rows(
        {"a": helpers.true_law("additive"), "b": helpers.true_law("additive", "b")}, n_mix=6
    )
    for r in rows:  # a total count: the non-embedding one plus a fixed embedding
        r["model_size_total"] = float(r["model_size"]) + 5e7
    runs = helpers.write_csv(tmp_path / "runs.csv", rows)
    outs = {}
    for jobs in ("1", "2"):
        law = tmp_path / f"LAW{jobs}.json"
        argv = [
            "fit",
            str(runs),
            "--law",
            "additive",
            "--target",
            "all",
            "--jobs",
            jobs,
            "--n-column",
            "model_size_total",
            "-o",
            str(law),
        ]
        assert cli.main(argv) == 0
        outs[jobs] = json.loads(law.read_text())
    printed = capsys.readouterr().out
    # 6 mixtures, 7 mixture parameters: every target warns, on stdout and in LAW.json.
    assert "identifiability warnings" in printed and "a: E, C_a" in printed
    assert "N read from column model_size_total" in printed
    for t in ("a", "b"):
        one, two = outs["1"]["laws"][t], outs["2"]["laws"][t]
        assert one["parameters"] == two["parameters"]
        assert one["warnings"] and one["warnings"] == two["warnings"]
        assert one["fit"]["n_column"] == "model_size_total"
    # The N column changes what the law sees.
    plain = tmp_path / "LAW_plain.json"
    assert cli.main(["fit", str(runs), "--law", "additive", "--target", "a", "-o", str(plain)]) == 0
    assert (
        json.loads(plain.read_text())["laws"]["a"]["fingerprint"]
        != outs["1"]["laws"]["a"]["fingerprint"]
    )


def test_fit_jobs_must_be_positive(tmp_path: Path, helpers: Any) -> None:
    runs = helpers.write_csv(
        tmp_path / "r.csv", helpers.synth_rows({"a": helpers.true_law("chinchilla")}, n_mix=3)
    )
    argv = [
        "fit",
        str(runs),
        "--law",
        "chinchilla",
        "--target",
        "a",
        "--jobs",
        "0",
        "-o",
        str(tmp_path / "L.json"),
    ]
    assert cli.main(argv) == 2


def test_fit_size_power_and_shrink_reach_law_json(
    tmp_path: Path, helpers: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = helpers.write_csv(
        tmp_path / "r.csv", helpers.synth_rows({"a": helpers.true_law("chinchilla")}, n_mix=3)
    )
    law = tmp_path / "L.json"
    base = ["fit", str(runs), "--law", "chinchilla", "--target", "a", "--no-heldout"]
    argv = [*base, "--size-power", "2", "--size-weights", "size", "--shrink", "0.5"]
    assert cli.main([*argv, "-o", str(law)]) == 0
    fit_info = json.loads(law.read_text())["laws"]["a"]["fit"]
    assert fit_info["settings"]["size_power"] == 2.0
    assert fit_info["settings"]["size_weights"] == "size"
    assert fit_info["settings"]["shrink"] == 0.5
    assert "(N / max N)^2" in fit_info["objective"]
    capsys.readouterr()
    assert cli.main([*base, "--shrink", "-1", "-o", str(law)]) == 2
    assert "--shrink must be a finite number >= 0, got -1.0" in capsys.readouterr().err


def test_fit_size_power_auto_records_its_evidence(
    tmp_path: Path, helpers: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = helpers.synth_rows(
        {"a": helpers.true_law("chinchilla")}, n_mix=3, sizes=(1e8, 2e8, 4e8, 8e8)
    )
    runs = helpers.write_csv(tmp_path / "r.csv", rows)
    law = tmp_path / "L.json"
    base = ["fit", str(runs), "--law", "chinchilla", "--target", "a", "--size-power", "auto"]
    assert cli.main([*base, "-o", str(law)]) == 0
    assert "--size-power auto: G = " in capsys.readouterr().out
    fit_info = json.loads(law.read_text())["laws"]["a"]["fit"]
    auto = fit_info["size_power_auto"]
    assert set(auto["mean_mre"]) == {"0", "1", "2", "3", "4"}
    assert fit_info["settings"]["size_power"] == auto["chosen"]
    best = min(auto["mean_mre"], key=lambda g: auto["mean_mre"][g])
    assert auto["mean_mre"][f"{auto['chosen']:g}"] == auto["mean_mre"][best]
    # Three sizes cannot run the check it chooses by: one line, exit 2.
    three = helpers.write_csv(tmp_path / "r3.csv", [r for r in rows if r["model_size"] < 8e8])
    assert cli.main(["fit", str(three), *base[2:], "-o", str(tmp_path / "L3.json")]) == 2
    assert "needs 4 model sizes" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        cli.main([*base[:-1], "fast", "-o", str(law)])
    assert exit_.value.code == 2
    assert "--size-power: expected a number or auto, got 'fast'" in capsys.readouterr().err
