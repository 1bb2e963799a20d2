"""`python examples/mixture_demo/run.py --quick` end to end, then every number in its report
checked against the run files it wrote (rows CSVs, LAW.json, WEIGHTS.json), recomputed
independently here."""

from __future__ import annotations

import csv
import glob
import json
import re
from pathlib import Path
from typing import Any

import demo_pipeline as pipeline
import numpy as np
import pytest
from demo_results import DemoResults
from run import main as demo_main

from mixsampler import laws

# The whole loop: 60 runs, 3 to 5 minutes on 2 loaded cores.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DemoResults]:
    """The output folder and the results ``run_demo`` returned to the CLI."""
    out = tmp_path_factory.mktemp("demo") / "out"
    returned: list[DemoResults] = []
    real = pipeline.run_demo

    def run_demo(*args: Any, **kwargs: Any) -> DemoResults:
        returned.append(real(*args, **kwargs))
        return returned[-1]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pipeline, "run_demo", run_demo)
        # The entry point, as `make demo-quick` runs it.
        assert demo_main(["--quick", "--out", str(out)]) == 0
    assert len(returned) == 1
    return out, returned[0]


@pytest.fixture(scope="module")
def demo_out(demo_run: tuple[Path, DemoResults]) -> Path:
    return demo_run[0]


def _table(md: str, header_start: str) -> list[list[str]]:
    """Rows of the markdown table whose header line starts with ``header_start``."""
    lines = md.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(header_start))
    rows = []
    for ln in lines[start + 2 :]:
        if not ln.startswith("|"):
            break
        rows.append([c.strip() for c in ln.strip().strip("|").split("|")])
    return rows


def _final_rows(pattern: str) -> dict[str, dict[str, str]]:
    last: dict[str, dict[str, str]] = {}
    for path in sorted(glob.glob(pattern)):
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                if row["run"] not in last or int(row["step"]) > int(last[row["run"]]["step"]):
                    last[row["run"]] = row
    return last


def test_outputs_exist(demo_out: Path) -> None:
    for name in (
        "report.md",
        "results.json",
        "parity.png",
        "curves.png",
        "weights.png",
        "main_runs.png",
        "check.png",
        "plan.csv",
        "analysis_plan.md",
        "decision.md",
        "data/manifest.json",
    ):
        path = demo_out / name
        assert path.is_file() and path.stat().st_size > 0, name
    assert glob.glob(str(demo_out / "runs" / "proxy" / "*.csv"))
    assert len(glob.glob(str(demo_out / "runs" / "main" / "*.csv"))) == 12  # 4 mixtures x 3 seeds
    # 6 unseen + uniform, natural and 2 optima at the proxies' scale, x 3 seeds
    assert len(glob.glob(str(demo_out / "runs" / "check" / "*.csv"))) == 30


def test_results_json_loads_as_what_run_demo_returned(demo_run: tuple[Path, DemoResults]) -> None:
    out, returned = demo_run
    assert isinstance(returned, DemoResults)
    loaded = DemoResults.load(out / "results.json")
    assert loaded == returned
    assert loaded.timings.total is not None and loaded.timings.report is not None
    # main.runs is in run-name order, runs in training order
    assert sorted(r.name for r in loaded.runs if r.stage == "main") == list(loaded.main.runs)


def test_heldout_mre_in_report_recomputed_from_rows_and_law_files(demo_out: Path) -> None:
    md = (demo_out / "report.md").read_text()
    rows = _table(md, "| law | target |")
    proxy = laws.load_runs(sorted(glob.glob(str(demo_out / "runs" / "proxy" / "*.csv"))))
    sizes = np.unique(proxy.model_size)
    assert len(sizes) >= 3
    largest = proxy.select(proxy.model_size == sizes[-1])
    checked = 0
    for law_name, target, train_mre, held_mre, *_ in rows:
        if target.startswith("**"):
            continue
        for fname, table, reported in (
            (f"{law_name}.heldout.json", largest, held_mre),
            (f"{law_name}.json", proxy, train_mre),
        ):
            law = laws.load_laws(demo_out / "laws" / fname)[target]
            idx = [list(table.domains).index(d) for d in law.domains]
            pred = law.predict(table.model_size, table.n_tokens, table.weights[:, idx])
            obs = table.losses[target]
            ok = np.isfinite(obs)
            mre = float(np.mean(np.abs(pred[ok] - obs[ok]) / obs[ok]) * 100)
            assert float(reported) == pytest.approx(mre, abs=6e-4), (law_name, target, fname)
            checked += 1
        # the held-out N error in LAW.json, where laws.decide reads it
        recorded = laws.load_laws(demo_out / "laws" / f"{law_name}.json")[target]
        assert recorded.fit["heldout"]["n"]["mre"] * 100 == pytest.approx(float(held_mre), abs=6e-4)
    assert checked == 2 * 2 * 5  # 2 laws x (held-out, all) x (4 domains + 1 target)


def test_heldout_laws_never_saw_the_largest_size(demo_out: Path) -> None:
    proxy = laws.load_runs(sorted(glob.glob(str(demo_out / "runs" / "proxy" / "*.csv"))))
    n_small = int(np.sum(proxy.model_size < proxy.model_size.max()))
    for law in ("additive", "joint"):
        fitted = json.loads((demo_out / "laws" / f"{law}.heldout.json").read_text())
        text = json.dumps(fitted)
        n_rows = [int(m) for m in re.findall(r'"n_rows": (\d+)', text)]
        assert n_rows and all(n <= n_small for n in n_rows), (law, n_rows, n_small)


def test_main_run_table_equals_the_row_files(demo_out: Path) -> None:
    md = (demo_out / "report.md").read_text()
    results = json.loads((demo_out / "results.json").read_text())
    domains, targets = results["domains"], results["targets"]
    finals = _final_rows(str(demo_out / "runs" / "main" / "*.csv"))
    chosen = results["chosen_law"]
    fitted = laws.load_laws(demo_out / "laws" / f"{chosen}.json")
    rows = _table(md, "| objective | mixture |")
    assert {r[1] for r in rows} == {"optimized-avg", "optimized-target", "uniform", "natural"}
    for obj, mix, per_seed, mean, spread, predicted, err in rows:
        runs = sorted(
            (r for r in finals.values() if r["run"].startswith(f"main-{mix}-s")),
            key=lambda r: int(r["run"].rsplit("-s", 1)[1]),
        )
        assert len(runs) == 3
        cols = domains if obj == "avg" else targets
        measured = [np.mean([float(r[f"{c}_loss"]) for c in cols]) for r in runs]
        preds = []
        for r in runs:
            p = []
            for c in cols:
                law = fitted[c]
                w = np.array([float(r[f"weight_{d}"]) for d in law.domains])
                p.append(float(law.predict(float(r["model_size"]), float(r["n_tokens"]), w)))
            preds.append(np.mean(p))
        got = [float(x) for x in per_seed.split(",")]
        assert got == pytest.approx(measured, abs=6e-5)
        assert float(mean) == pytest.approx(np.mean(measured), abs=6e-5)
        assert float(spread) == pytest.approx(max(measured) - min(measured), abs=6e-5)
        assert float(predicted) == pytest.approx(np.mean(preds), abs=6e-5)
        # the worst seed: "every main run within 2 %"
        rel = max(abs(p - m) / m * 100 for p, m in zip(preds, measured, strict=True))
        assert float(err) == pytest.approx(rel, abs=6e-3)


def test_main_runs_trained_on_the_mixtures_of_the_weight_files(demo_out: Path) -> None:
    finals = _final_rows(str(demo_out / "runs" / "main" / "*.csv"))
    for path in glob.glob(str(demo_out / "weights" / "*.json")):
        mix = Path(path).stem
        weights = json.loads(Path(path).read_text())["weights"]
        assert sum(weights.values()) == pytest.approx(1.0)
        runs = [r for r in finals.values() if r["run"].startswith(f"main-{mix}-s")]
        assert runs, mix
        for r in runs:
            for d, w in weights.items():
                assert float(r[f"weight_{d}"]) == pytest.approx(w, abs=1e-6)
                # what the sampler delivered, not only what was asked
                assert float(r[f"realized_{d}"]) == pytest.approx(w, abs=0.05)


def _objective(row: dict[str, str], cols: list[str]) -> float:
    return float(np.mean([float(row[f"{c}_loss"]) for c in cols]))


def _decide_by_hand(
    out: Path, results: dict[str, Any], obj: str, base: str, cols: list[str]
) -> tuple[float, float]:
    """(predicted gain of optimized-``obj`` over ``base``, the smallest gain the law resolves)."""
    fitted = laws.load_laws(out / "laws" / f"{results['chosen_law']}.json")
    opt = json.loads((out / "weights" / f"optimized-{obj}.json").read_text())
    baseline = json.loads((out / "weights" / f"{base}.json").read_text())["weights"]

    def predicted(weights: dict[str, float]) -> float:
        return float(
            np.mean(
                [
                    fitted[c].predict(
                        opt["model_size"],
                        opt["n_tokens"],
                        np.array([weights[d] for d in fitted[c].domains]),
                    )
                    for c in cols
                ]
            )
        )

    err = max(r["mre"] for c in cols for r in fitted[c].fit["heldout"].values())
    at_opt = predicted(opt["weights"])
    return predicted(baseline) - at_opt, err * at_opt


def test_decision_recomputed_from_the_main_run_rows(demo_out: Path) -> None:
    """Part (c): paired gains from the rows, scipy's paired t-test, the outcome rule."""
    from scipy import stats

    results = json.loads((demo_out / "results.json").read_text())
    claims = results["claims"]
    finals = _final_rows(str(demo_out / "runs" / "main" / "*.csv"))
    cols = {"avg": results["domains"], "target": results["targets"]}
    decision_md = (demo_out / "decision.md").read_text()
    outcomes = []
    for obj in ("avg", "target"):
        for base in ("uniform", "natural"):
            gains = []
            for seed in results["config"]["seeds"]:
                b = finals[f"main-{base}-s{seed}"]
                o = finals[f"main-optimized-{obj}-s{seed}"]
                gains.append(_objective(b, cols[obj]) - _objective(o, cols[obj]))
            check = claims["decision"][obj][base]
            assert check["test"]["gains"] == pytest.approx(gains, abs=1e-9)
            p = stats.ttest_1samp(gains, 0.0, alternative="greater").pvalue
            assert check["test"]["t_p"] == pytest.approx(p, rel=1e-6)
            st = check["statement"]
            assert st["text"] in decision_md  # stated before the main runs, in the file
            # laws.decide's rule, recomputed from LAW.json and WEIGHTS.json: the gain against
            # the largest held-out error of the objective's targets times the optimum's loss
            gain, resolution = _decide_by_hand(demo_out, results, obj, base, cols[obj])
            assert st["predicted_gain"] == pytest.approx(gain, abs=1e-9)
            assert st["resolution"] == pytest.approx(resolution, abs=1e-9)
            assert st["distinguishable"] == (gain > resolution and not st["refused"])
            if not st["distinguishable"]:
                want = "not judged"
            elif min(gains) > 0 and p < 0.05:
                want = "PASS"
            else:
                want = "FAIL"
            assert check["outcome"] == want
            outcomes.append(want)
    judged = [x for x in outcomes if x != "not judged"]
    want = "NOT JUDGED" if not judged else ("PASS" if set(judged) == {"PASS"} else "FAIL")
    assert claims["decision_verdict"] == want
    summary = (demo_out / "report.md").read_text().split("## Summary", 1)[1].split("\n## ", 1)[0]
    line = next(ln for ln in summary.splitlines() if ln.startswith("| (c)"))
    assert line.endswith(f"**{want}** |")


def test_mixture_check_recomputed_from_the_check_rows(demo_out: Path) -> None:
    """Part (a): MRE, Spearman and regret from the check runs' rows and LAW.json."""
    from scipy import stats

    results = json.loads((demo_out / "results.json").read_text())
    a = results["claims"]["mixtures"]
    fitted = laws.load_laws(demo_out / "laws" / f"{results['chosen_law']}.json")
    finals = _final_rows(str(demo_out / "runs" / "check" / "*.csv"))
    cols = {"avg": results["domains"], "target": results["targets"]}
    errs: dict[str, list[float]] = {}
    meas: dict[str, dict[str, list[float]]] = {o: {} for o in cols}
    pred: dict[str, dict[str, list[float]]] = {o: {} for o in cols}
    for run, r in finals.items():
        mix = run.split("-", 1)[1].rsplit("-s", 1)[0]
        p = {}
        for t, law in fitted.items():
            w = np.array([float(r[f"weight_{d}"]) for d in law.domains])
            p[t] = float(law.predict(float(r["model_size"]), float(r["n_tokens"]), w))
            obs = float(r[f"{t}_loss"])
            errs.setdefault(t, []).append(abs(p[t] - obs) / obs * 100)
        for o, cs in cols.items():
            meas[o].setdefault(mix, []).append(_objective(r, cs))
            pred[o].setdefault(mix, []).append(float(np.mean([p[c] for c in cs])))
    # the plan named the unseen mixtures before any run; they are the ones trained
    plan = (demo_out / "analysis_plan.md").read_text()
    rand = sorted(m for m in meas["avg"] if m.startswith("rand"))
    assert len(rand) == 6 and all(f"- {m}: " in plan for m in rand)
    mre = float(np.mean([np.mean(e) for e in errs.values()]))
    assert a["mre"] == pytest.approx(mre, abs=1e-6)
    passes = mre <= 2.0
    for o in cols:
        mixes = list(meas[o])
        mm = [np.mean(meas[o][m]) for m in mixes]
        pm = [np.mean(pred[o][m]) for m in mixes]
        rho = stats.spearmanr(pm, mm).statistic
        got = a["objectives"][o]
        assert got["spearman"] == pytest.approx(rho, abs=1e-9)
        best = mixes[int(np.argmin(mm))]
        assert got["best"] == best
        regret = np.mean(meas[o][f"optimized-{o}"]) - np.mean(meas[o][best])
        assert got["regret"] == pytest.approx(regret, abs=1e-9)
        passes &= bool(rho >= 0.9 and got["regret_within_noise"])
    assert a["passes"] == passes


def test_fingerprints_in_report_recomputed_from_the_files(demo_out: Path) -> None:
    import hashlib

    md = (demo_out / "report.md").read_text()
    line = next(ln for ln in md.splitlines() if ln.startswith("Fingerprints:"))
    text = demo_out / "data" / "text"
    h = hashlib.sha256()
    for name in sorted(p.stem for p in (text / "val").glob("*.txt")):
        train = text / "train" / f"{name}.txt"
        tr = hashlib.sha256(train.read_bytes()).hexdigest() if train.is_file() else None
        va = hashlib.sha256((text / "val" / f"{name}.txt").read_bytes()).hexdigest()
        h.update(f"{name}:{tr}:{va};".encode())
    assert f"data `{h.hexdigest()[:12]}`" in line
    for path in glob.glob(str(demo_out / "weights" / "*.json")):
        weights = json.loads(Path(path).read_text())["weights"]
        exact = json.dumps({k: float(v) for k, v in sorted(weights.items())}, sort_keys=True)
        assert f"{Path(path).stem} `{hashlib.sha256(exact.encode()).hexdigest()[:12]}`" in line


def test_heldout_d_error_in_report_recomputed_from_the_early_laws(demo_out: Path) -> None:
    md = (demo_out / "report.md").read_text()
    rows = _table(md, "| law | target |")
    proxy = laws.load_runs(sorted(glob.glob(str(demo_out / "runs" / "proxy" / "*.csv"))))
    late = proxy.select(proxy.n_tokens > proxy.n_tokens.max() / 2)
    early = proxy.select(proxy.n_tokens <= proxy.n_tokens.max() / 2)
    assert len(late) and len(early)
    for law_name, target, _, _, held_d, *_ in rows:
        if target.startswith("**"):
            continue
        fitted = json.loads((demo_out / "laws" / f"{law_name}.early.json").read_text())
        assert int(re.findall(r'"n_rows": (\d+)', json.dumps(fitted))[0]) <= len(early)
        law = laws.load_laws(demo_out / "laws" / f"{law_name}.early.json")[target]
        idx = [list(late.domains).index(d) for d in law.domains]
        pred = law.predict(late.model_size, late.n_tokens, late.weights[:, idx])
        obs = late.losses[target]
        mre = float(np.mean(np.abs(pred - obs) / obs) * 100)
        signed = float(np.mean((pred - obs) / obs) * 100)
        got_mre, got_signed = re.match(r"([\d.]+) \(([+-][\d.]+)\)", held_d).groups()
        assert float(got_mre) == pytest.approx(mre, abs=6e-4)
        assert float(got_signed) == pytest.approx(signed, abs=6e-3)


def test_mixsampler_train_on_a_written_config_retrains_the_demos_proxy_run(
    demo_out: Path, tmp_path: Path
) -> None:
    """The plan folder the demo writes is a sweep a user can run: ``mixsampler train`` on one
    of its configs trains the same run the demo trained in-process, to the same losses."""
    import yaml

    from mixsampler.sweep import train

    plan = list(csv.DictReader((demo_out / "plan.csv").open()))
    run = plan[-1]  # the largest proxy size
    config = yaml.safe_load(Path(run["config"]).read_text())
    rows = tmp_path / "rerun.csv"
    (logger,) = config["trainer"]["callbacks"]
    logger["init_args"]["path"] = str(rows)
    config["trainer"]["default_root_dir"] = str(tmp_path / "logs")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    result = train(path)
    assert result.finished
    mine = list(csv.DictReader(rows.open()))
    demo = list(csv.DictReader((demo_out / "runs" / "proxy" / f"{run['run']}.csv").open()))
    assert len(mine) == len(demo) > 1
    losses = [c for c in demo[0] if c.endswith("_loss")]
    for a, b in zip(mine, demo, strict=True):
        assert (a["n_tokens"], a["model_size"]) == (b["n_tokens"], b["model_size"])
        for c in losses:
            assert float(a[c]) == pytest.approx(float(b[c]), rel=1e-5), (c, a["n_tokens"])
