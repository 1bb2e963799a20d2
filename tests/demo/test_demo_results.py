"""The demo's typed results: a small hand-built DemoResults round-trips through results.json."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from demo_config import QUICK
from demo_data import DemoData, DomainData
from demo_results import (
    Claims,
    DecisionCheck,
    DecisionStatement,
    DemoFiles,
    DemoResults,
    DomainExtrapolation,
    ErrorByTokens,
    ErrorSummary,
    FitSummary,
    LawReport,
    MainEvaluation,
    MainRun,
    Mixture,
    MixtureCheck,
    MixtureEvaluation,
    ObjectiveStats,
    PairedTest,
    RunSummary,
    ScaleCheck,
    ScaleObjective,
    Timings,
)


def _law(mre: float) -> LawReport:
    fit = FitSummary(success=True, message="ok", fun=1e-4, n_rows=24, seconds=0.5)
    per = {"a": mre, "t": mre * 2}
    return LawReport(
        train_mre=per,
        heldout_train_mre=per,
        heldout_mre={"a": mre + 0.1, "t": mre + 0.2},
        heldout_d_mre=per,
        heldout_d_bias={"a": -mre, "t": 0.1 + 0.2},  # a float that prints long
        d_half=30_720.0,
        fit={"a": fit, "t": fit},
        heldout_fit={"a": dataclasses.replace(fit, success=False, message="max iter"), "t": fit},
        path="laws/x.json",
        heldout_path="laws/x.heldout.json",
        early_path="laws/x.early.json",
    )


def _stats(vals: tuple[float, ...]) -> ObjectiveStats:
    return ObjectiveStats(
        measured=vals,
        predicted_per_seed=tuple(v * 1.01 for v in vals),
        mean=sum(vals) / len(vals),
        spread=max(vals) - min(vals),
        predicted=sum(vals) / len(vals) * 1.01,
        rel_error_pct=1.0,
        max_rel_error_pct=1.0000000000000002,
    )


def _results() -> DemoResults:
    data = DemoData(
        {
            "a": DomainData("a", "src", "tr", "va", train_bytes=10, train_docs=["d1"]),
            "t": DomainData("t", "src", None, "vt", val_sha256="ff"),
        },
        origin="embedded",
        config=dataclasses.asdict(QUICK.data),
    )
    opt = Mixture(
        "optimized-avg", {"a": 1.0}, "w/o.json", "abc", {"a": 1.0}, False, "no", 1e-9, 2.5
    )
    run = MainRun(
        name="main-uniform-s0",
        mixture="uniform",
        seed=0,
        model_size=3000.0,
        n_tokens=61_440.0,
        loss={"a": 2.5, "t": 3.0},
        pred={"a": 2.6, "t": 3.1},
        objective={"avg": 2.5},
        pred_objective={"avg": 2.6},
    )
    statement = DecisionStatement(
        "avg", "uniform", 0.01, 0.4, 0.03, "held-out n error", "below", ("x",), False, "within"
    )
    test = PairedTest((0.1, 0.2, -0.05), 0.0833, 0.126, 0.19, 0.5, False, False, 9)
    check = MixtureCheck({"a": 1.0}, (0, 1, 2), {"avg": (2.5, 2.4, 2.6)}, {"avg": (2.5,) * 3})
    return DemoResults(
        config=QUICK,
        device="cpu",
        jobs=2,
        threads=1,
        data=data,
        domains=("a",),
        targets=("t",),
        proxy_sizes=(1000.0, 2000.0, 3000.0),
        main_model_size=5000,
        laws={"additive": _law(1.5), "joint": _law(0.75)},
        chosen_law="joint",
        objectives={"avg": {"a": 1.0}},
        mixtures={
            "optimized-avg": opt,
            "uniform": Mixture("uniform", {"a": 1.0}, "w/u.json", "def"),
        },
        runs=(RunSummary("p0", "proxy", "mix00", 0, 16, 1000, 60, 1.25, {"val/loss/a": 2.9}),),
        files=DemoFiles("runs/proxy/*.csv", "runs/main/*.csv", "runs/check/*.csv", "plan.csv"),
        proxy_tokens_max=61_440.0,
        main=MainEvaluation(
            runs={run.name: run},
            mixtures={"uniform": MixtureEvaluation((0, 1, 2), {"avg": _stats((2.5, 2.51, 2.49))})},
            by_tokens=ErrorByTokens(
                61_440.0, ErrorSummary(12, 1.5, -0.25), ErrorSummary(0, None, None)
            ),
        ),
        claims=Claims(
            plan="# Analysis plan",
            mixtures=ScaleCheck(
                3000.0,
                61_440.0,
                {"uniform": check},
                1.25,
                {"a": 1.25},
                {"avg": ScaleObjective(0.9, "uniform", 0.0, 0.0, True, True)},
                True,
            ),
            extrapolation={"a": DomainExtrapolation(2.0, 1.5, 1.0)},
            decision={"avg": {"uniform": DecisionCheck(statement, test, "not judged")}},
            decision_verdict="NOT JUDGED",
        ),
        timings=Timings(0.5, 10.0, 2.0, 0.25, 3.0, 5.0, 18.0, report=None, total=19.5),
    )


def test_results_json_round_trips_exactly(tmp_path: Path) -> None:
    results = _results()
    path = results.save(tmp_path / "results.json")
    loaded = DemoResults.load(path)
    assert loaded == results
    # tuples come back as tuples, records as records: equal field by field, not only as JSON
    assert isinstance(loaded.proxy_sizes, tuple) and isinstance(loaded.runs[0], RunSummary)
    assert isinstance(loaded.config.data, type(QUICK.data)) and loaded.config.seeds == (0, 1, 2)
    assert loaded.laws["joint"].heldout_fit["a"].message == "max iter"
    assert loaded.main.by_tokens.beyond.mre is None
    assert loaded.to_json() == results.to_json()


def test_to_json_is_plain_json_with_the_documented_keys() -> None:
    obj = _results().to_json()
    text = json.dumps(obj, allow_nan=False)  # no default= needed: nothing but plain data
    assert json.loads(text) == obj
    assert list(obj)[:4] == ["config", "device", "jobs", "threads"]
    assert obj["data"]["fingerprint"] == _results().data.fingerprint()
    assert obj["mixtures"]["uniform"]["objective"] is None  # a baseline optimized nothing
    assert obj["main"]["mixtures"]["uniform"]["objective"]["avg"]["measured"] == [2.5, 2.51, 2.49]
    assert obj["claims"]["decision"]["avg"]["uniform"]["test"]["gains"] == [0.1, 0.2, -0.05]
    assert obj["claims"]["mixtures"]["mixtures"]["uniform"]["measured"]["avg"] == [2.5, 2.4, 2.6]
    assert obj["timings"]["report"] is None


def test_from_json_rejects_an_unknown_key() -> None:
    obj = _results().to_json()
    obj["claims"]["all_passed"] = True
    with pytest.raises(ValueError, match=r"Claims: unknown keys \['all_passed'\]"):
        DemoResults.from_json(obj)
    with pytest.raises(TypeError, match="decision_verdict"):
        Claims.from_json({k: v for k, v in obj["claims"].items() if k in ("plan", "mixtures")})


def test_results_are_frozen() -> None:
    results = _results()
    with pytest.raises(dataclasses.FrozenInstanceError):
        results.chosen_law = "additive"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        results.claims.decision_verdict = "PASS"  # type: ignore[misc]


def test_run_summary_keeps_only_its_fields() -> None:
    summary = {
        "name": "p0",
        "stage": "proxy",
        "mixture": "mix00",
        "seed": 0,
        "width": 16,
        "model_size": 1000,
        "steps": 60,
        "seconds": 1.25,
        "metrics": {"val/loss/a": 2.9},
        "something_new": 1,
    }
    assert RunSummary.from_summary(summary) == _results().runs[0]
    with pytest.raises(KeyError, match="metrics"):
        RunSummary.from_summary({k: v for k, v in summary.items() if k != "metrics"})
