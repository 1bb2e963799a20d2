"""Held-out checks (laws.heldout), --law auto, never-learned runs and the fit record."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from mixsampler import cli
from mixsampler.laws import FitSettings, fit, load_laws, load_runs
from mixsampler.laws.commands.fit import chance_loss
from mixsampler.laws.heldout import choose_law, fit_checked, plan_splits

SIZES = (1e8, 2e8, 4e8, 1e9)


def test_splits_hold_out_what_they_say(synth_table, helpers) -> None:
    table = synth_table({"a": helpers.true_law("additive")}, sizes=SIZES)
    splits = {(s.kind, s.fold): s for s in plan_splits(table, "a", folds=3)}
    n = splits[("n", 0)]
    assert set(table.model_size[n.held_rows]) == {1e9}
    assert 1e9 not in set(table.model_size[n.fit_rows])
    assert n.ratio == pytest.approx(1e9 / 4e8)
    d = splits[("d", 0)]
    # tokens 1, 2, 4, 8 e9: the first half of every curve is D <= 4e9.
    assert set(table.n_tokens[d.held_rows]) == {8e9} and d.ratio == pytest.approx(2.0)
    folds = [s for (k, _), s in splits.items() if k == "mixture"]
    assert len(folds) == 3
    held = np.sum([s.held_rows for s in folds], axis=0)
    assert np.all(held == 1)  # every row held out exactly once
    for s in folds:  # a mixture is never on both sides
        fit_mix = {tuple(np.round(w, 9)) for w in table.weights[s.fit_rows]}
        assert not fit_mix & {tuple(np.round(w, 9)) for w in table.weights[s.held_rows]}


def test_checks_the_rows_do_not_allow_are_skipped_with_a_reason(synth_table, helpers) -> None:
    table = synth_table({"a": helpers.true_law("additive")}, sizes=(1e8, 1e9), tokens=(1e9,))
    skipped: dict[str, str] = {}
    assert [s.kind for s in plan_splits(table, "a", skipped=skipped, folds=3)] == ["mixture"] * 3
    assert "4 model sizes" in skipped["n"] and "token counts" in skipped["d"]
    with pytest.raises(ValueError, match="held-out kinds can be n, d, mixture, got 'x'"):
        plan_splits(table, "a", ("x",))


def test_heldout_n_error_recomputed_independently(synth_table, helpers) -> None:
    table = synth_table({"a": helpers.true_law("additive")}, sizes=SIZES, noise=1e-3)
    checked = fit_checked(table, ["additive"], ["a"], kinds=("n",))["a"]
    rec = checked.result.law.fit["heldout"]["n"]
    small = table.select(table.model_size < 1e9)
    big = table.select(table.model_size == 1e9)
    ref = fit(small, "additive", "a", seed=0).law
    pred = ref.predict(big.model_size, big.n_tokens, big.weights)
    want = float(np.mean(np.abs(pred - big.losses["a"]) / big.losses["a"]))
    assert rec["mre"] == pytest.approx(want, rel=1e-9)
    assert rec["n_rows"] == len(big) and rec["n_fit"] == len(small) and rec["converged"]
    # The true law on 1 % noise: the held-out error is at the noise level, not a fit of noise.
    assert rec["mre"] < 0.01
    assert checked.result.law.trust_issues() == ()


def test_auto_picks_the_law_that_extrapolates(synth_table, helpers) -> None:
    # Rows from the joint law: its N term's scale depends on the mixture, which the additive
    # law cannot represent; the held-out error, not the training error, must show it.
    table = synth_table({"a": helpers.true_law("joint")}, sizes=SIZES, n_mix=12)
    got = choose_law(table, "a", ["additive", "joint"], folds=3)
    cands = got.candidates
    assert got.result.law.law == "joint"
    assert cands["joint"]["score"] < cands["additive"]["score"]
    auto = got.result.law.fit["auto"]
    assert auto["chosen"] == "joint" and set(auto["candidates"]) == {"additive", "joint"}
    assert auto["candidates"]["additive"]["heldout"]["n"] == cands["additive"]["checks"]["n"]["mre"]


def test_never_learned_runs_are_flagged_and_untrusted(synth_table, helpers) -> None:
    table = synth_table({"a": helpers.true_law("additive")}, noise=1e-3)
    dead = table.run_ids == table.run_ids[0]
    # Uniform guessing over a 50257-token vocabulary: every learning run is far below it.
    chance = math.log(50257)
    table.losses["a"][dead] = chance * (1 + 1e-4 * np.arange(dead.sum()))
    res = fit(table, "additive", "a", chance_loss=chance)
    rec = res.law.fit["never_learned"]
    assert [r["run"] for r in rec] == [str(table.run_ids[0])]
    assert any("never learned" in w for w in res.warnings)
    assert any("never learned" in i for i in res.law.trust_issues())
    # Without the chance level a flat curve is still caught.
    table.losses["a"][dead] = 2.0
    assert [r["run"] for r in fit(table, "additive", "a").law.fit["never_learned"]] == [
        str(table.run_ids[0])
    ]


def test_fit_record_is_the_contract_with_optimize(synth_table, helpers) -> None:
    table = synth_table({"a": helpers.true_law("additive")})
    res = fit(table, "additive", "a")
    f = res.law.fit
    assert f["converged"] is res.success and f["train_mre"] == pytest.approx(res.mre / 100)
    assert list(f["never_learned"]) == [] and f["nonfinite_rows"] == 0
    assert all(n in res.law.params for n in f["on_bounds"])
    ev = res.law.evidence
    assert list(ev["model_size"]) == [1e8, 1e9] and list(ev["n_tokens"]) == [1e9, 8e9]
    assert len(ev["mixtures"]) == 15
    assert ev["weights"]["a"][0] == pytest.approx(table.weights[:, 0].min())


def test_objectives(synth_table, helpers) -> None:
    table = synth_table({"a": helpers.true_law("additive")}, noise=2e-3)
    res = {
        o: fit(table, "additive", "a", settings=FitSettings(objective=o))
        for o in ("absolute", "relative", "huber")
    }
    assert "relative" in res["relative"].law.fit["objective"]
    assert "delta=0.02" in res["huber"].law.fit["objective"]
    # Each minimizes its own objective: near-L1 on relative error has the lowest MRE.
    assert res["relative"].mre <= res["huber"].mre + 1e-9
    with pytest.raises(ValueError, match="objective can be absolute, relative, huber, got 'l2'"):
        FitSettings(objective="l2")  # type: ignore[arg-type]


def test_chance_loss_argument() -> None:
    assert chance_loss("ln(10)") == pytest.approx(math.log(10))
    for bad, msg in (("ln(1)", "K > 1"), ("-2", "> 0"), ("x", "number")):
        with pytest.raises(ValueError, match=msg):
            chance_loss(bad)


def test_cli_auto_writes_the_choice_and_heldout(tmp_path: Path, helpers, capsys) -> None:
    rows = helpers.synth_rows({"a": helpers.true_law("joint")}, sizes=SIZES, n_mix=12)
    runs = helpers.write_csv(tmp_path / "runs.csv", rows)
    out = tmp_path / "LAW.json"
    args = ["fit", str(runs), "--law", "auto", "--candidates", "additive,joint", "--target", "a"]
    assert cli.main([*args, "--folds", "3", "--jobs", "2", "-o", str(out)]) == 0
    law = load_laws(out)["a"]
    assert law.law == law.fit["auto"]["chosen"]
    assert set(law.fit["heldout"]) == {"n", "d", "mixture"}
    text = capsys.readouterr().out
    assert "--law auto" in text and "chose" in text
    doc = json.loads(out.read_text())
    assert doc["laws"]["a"]["fit"]["heldout"]["n"]["ratio"] == pytest.approx(2.5)
    # auto without held-out checks cannot choose.
    assert cli.main([*args, "--no-heldout", "-o", str(out)]) == 2
    assert "--no-heldout" in capsys.readouterr().err


def test_cli_no_heldout_and_objective(tmp_path: Path, helpers) -> None:
    rows = helpers.synth_rows({"a": helpers.true_law("additive")})
    runs = helpers.write_csv(tmp_path / "runs.csv", rows)
    out = tmp_path / "LAW.json"
    argv = ["fit", str(runs), "--law", "additive", "--target", "a", "--no-heldout"]
    assert cli.main([*argv, "--objective", "relative", "-o", str(out)]) == 0
    law = load_laws(out)["a"]
    assert dict(law.fit["heldout"]) == {} and law.fit["settings"]["objective"] == "relative"
    assert load_runs(runs).targets == ("a",)
