"""The demo's whole loop: plan -> proxy sweep -> fit -> optimize -> main runs -> report.

One module per stage: :mod:`~demo_data` (shards), :mod:`~demo_sweep`
(the plan), :mod:`~demo_runs` (training), :mod:`~demo_fit`,
:mod:`~demo_optimize`, :mod:`~demo_mainruns` (evaluation and verdict),
:mod:`~demo_report` (with ``tables`` and ``figures``); this module only drives them.

Every stage writes its files under one output folder, in the project's interchange formats,
so each step can be redone by hand with the command line (the report lists the commands):

- ``plan.csv``: the proxy sweep (``mixsampler.make_plan``),
- ``runs/proxy/*.csv`` and ``runs/main/*.csv``: run-table rows written by
  :class:`mixsampler.callbacks.DomainLossLogger` at every validation,
- ``laws/<law>.json`` (fit on all proxy rows; its ``fit["heldout"]`` records the two checks
  below, where ``laws.decide`` reads them), ``laws/<law>.heldout.json`` (fit on the
  smaller proxy sizes only, to measure extrapolation in N) and ``laws/<law>.early.json`` (fit
  on the first half of every curve, to measure extrapolation in D),
- ``weights/<mixture>.json``: WEIGHTS.json of each main-run mixture (an optimum's with the
  ``decision`` ``mixsampler optimize`` would write),
- ``analysis_plan.md`` (before any run) and ``decision.md`` (before the main runs),
- ``results.json`` (:class:`~demo_results.DemoResults`), ``report.md`` and the
  PNG figures.

Example:
    >>> from demo_pipeline import QUICK, run_demo
    >>> results = run_demo(QUICK, out_dir="demo_out")  # doctest: +SKIP
    >>> results.verdict.all_pass, results.chosen_law  # doctest: +SKIP
    (False, 'additive')
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import demo_claims as claims
import numpy as np
from demo_config import FULL, QUICK, DemoConfig, RunSpec, scaled
from demo_data import DemoData, build_default_data, load_user_data
from demo_fit import LAWS, fit_stage
from demo_mainruns import evaluate_main
from demo_optimize import optimize_stage
from demo_results import (
    Claims,
    DecisionStatement,
    DemoFiles,
    DemoResults,
    Mixture,
    RunSummary,
    Timings,
)
from demo_runs import make_model, run_many, train_run
from demo_sweep import make_proxy_plan

from mixsampler.plan import repeat_caps

if TYPE_CHECKING:
    from mixsampler.laws import Decision

__all__ = [
    "FULL",
    "LAWS",
    "QUICK",
    "DemoConfig",
    "DemoResults",
    "RunSpec",
    "run_demo",
    "scaled",
    "train_run",
]


def resolve_data(cfg: DemoConfig, out: Path, data_dir: str | None) -> DemoData:
    """The user's shards from ``data_dir``, or the embedded data built under ``out/data``."""
    if data_dir:
        return load_user_data(data_dir)
    return build_default_data(out / "data", cfg.data)


def run_demo(
    cfg: DemoConfig,
    out_dir: str | os.PathLike[str] = "demo_out",
    *,
    data_dir: str | None = None,
    device: str = "cpu",
    jobs: int | None = None,
    threads: int | None = None,
    stream: Any = None,
) -> DemoResults:
    """Run the whole loop and write the report; returns the results (also ``results.json``).

    Args:
        cfg: the sizes (:data:`FULL`, :data:`QUICK` or your own).
        out_dir: everything is written here.
        data_dir: your own shards instead of the embedded data (see ``load_user_data``).
        device: "cpu" or "cuda".
        jobs: runs trained side by side; default: one per core on CPU, 1 on a GPU.
        threads: torch threads per run; default: the cores divided among the jobs.
        stream: where the progress bar and the per-run lines go (default stderr).
    """
    import torch

    t_start = time.perf_counter()
    out = Path(out_dir)
    files = _prepare_out(out)
    jobs, threads = _workers(device, jobs, threads)
    torch.set_num_threads(max(1, threads))
    timings: dict[str, float] = {}

    with _timed(timings, "data"):
        data = resolve_data(cfg, out, data_dir)
    # Everything the claims are tested with is fixed here, before any run trains: the
    # analysis plan and the unseen mixtures of part (a).
    check_mixes = {
        f"rand{i + 1:02d}": w
        for i, w in enumerate(
            claims.random_mixtures(
                data.train_domains,
                cfg.check_mixtures,
                min_weight=cfg.min_weight,
                seed=cfg.seed + 1,
                caps=repeat_caps(
                    data.train_domains,
                    cfg.proxy_tokens,
                    data.train_sizes(),
                    dict.fromkeys(data.train_domains, cfg.max_repeat),
                ),
            )
        )
    }
    _write_plan(out, check_mixes)
    specs = make_proxy_plan(cfg, data, out)
    extra = len(cfg.seeds) * cfg.proxy_tokens * (len(check_mixes) + 4) if check_mixes else 0
    train, bar = _trainer(cfg, data, out, specs, device, jobs, threads, stream, extra)
    with _timed(timings, "proxy_sweep"):
        runs = train(specs, "proxy")
    # Held out by scale and by D, then on all rows.
    with _timed(timings, "fit"):
        fit = fit_stage(files.proxy_rows, out / "laws", seed=cfg.seed, jobs=jobs)
    heldout_n = fit.report[fit.chosen].heldout_mre
    # At the main run's own (N, D).
    with _timed(timings, "optimize"):
        n_main = make_model(cfg, cfg.main_width).non_embedding_params()
        objectives, mixtures, decisions = optimize_stage(cfg, data, fit, n_main, out / "weights")
        if check_mixes:
            _, at_proxy, _ = optimize_stage(
                cfg, data, fit, fit.sizes[-1], out / "weights" / "check", n_tokens=cfg.proxy_tokens
            )
            check_mixes.update({name: m.weights for name, m in at_proxy.items()})
    with _timed(timings, "check_runs"):
        check_runs = train(_check_specs(cfg, check_mixes), "check") if check_mixes else []
    statements = claims.decisions_before_main(
        decisions, {name: m.weights for name, m in mixtures.items()}
    )
    _announce(out, decisions, statements, bar, stream)
    with _timed(timings, "main_runs"):
        runs += train(_main_specs(cfg, mixtures), "main")
        bar.close()
    runs += check_runs

    t0 = time.perf_counter()
    main = evaluate_main(
        files.main_rows,
        fit.fitted,
        targets=[*data.train_domains, *data.targets],
        objectives=objectives,
        runs=runs,
        mixtures=mixtures,
        proxy_tokens_max=fit.proxy_tokens_max,
    )
    decision, decision_verdict = claims.judge_decisions(main, statements)
    scale = None
    if check_mixes:
        scale = claims.check_mixtures(
            files.check_rows,
            fit.fitted,
            objectives=objectives,
            runs=check_runs,
            weights=check_mixes,
        )
    found = Claims(
        plan=(out / "analysis_plan.md").read_text(),
        mixtures=scale,
        extrapolation=claims.extrapolation(files.main_rows, fit.fitted, heldout_n),
        decision=decision,
        decision_verdict=decision_verdict,
    )
    timings["total_before_report"] = time.perf_counter() - t_start
    results = DemoResults(
        config=cfg,
        device=device,
        jobs=jobs,
        threads=threads,
        data=data,
        domains=tuple(data.train_domains),
        targets=tuple(data.targets),
        proxy_sizes=fit.sizes,
        main_model_size=n_main,
        laws=fit.report,
        chosen_law=fit.chosen,
        objectives=objectives,
        mixtures=mixtures,
        runs=tuple(runs),
        files=files,
        proxy_tokens_max=fit.proxy_tokens_max,
        main=main,
        claims=found,
        timings=Timings(**timings),
    )
    return _report(results, out, t0, t_start)


@contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    """Record the block's wall time as ``timings[stage]`` (seconds)."""
    t0 = time.perf_counter()
    yield
    timings[stage] = time.perf_counter() - t0


def _trainer(
    cfg: DemoConfig,
    data: DemoData,
    out: Path,
    proxy_specs: Sequence[RunSpec],
    device: str,
    jobs: int,
    threads: int,
    stream: Any,
    extra_tokens: int = 0,
) -> tuple[Callable[[list[RunSpec], str], list[RunSummary]], Any]:
    """``(train, bar)``: ``train(specs, stage)`` trains runs into ``out/runs/<stage>`` with
    one line per finished run, and ``bar`` is the progress bar over every token of the demo
    (the proxies', ``extra_tokens`` of check runs, then the main runs' on 4 mixtures, 3
    without a held-out target)."""
    from tqdm.auto import tqdm

    domains, targets = data.train_domains, data.targets
    main_mixtures_n = 2 + 1 + (1 if targets else 0)
    total = sum(s.tokens for s in proxy_specs)
    total += main_mixtures_n * len(cfg.seeds) * cfg.main_tokens + extra_tokens
    bar = tqdm(
        total=total, unit="tok", unit_scale=True, desc="training", file=stream, dynamic_ncols=True
    )

    def done(summary: dict[str, Any]) -> None:
        bar.write(_run_line(summary, domains, targets), file=stream)

    def train(specs: list[RunSpec], stage: str) -> list[RunSummary]:
        summaries = run_many(
            specs,
            cfg,
            data,
            out / "runs" / stage,
            device=device,
            jobs=jobs,
            threads=threads,
            bar=bar,
            on_done=done,
        )
        return [RunSummary.from_summary(s) for s in summaries]

    return train, bar


def _report(results: DemoResults, out: Path, t0: float, t_start: float) -> DemoResults:
    """Write the report and ``results.json``; returns ``results`` with the report's and the
    whole demo's time (``t0``: when the evaluation began; ``t_start``: when the demo did)."""
    import demo_report as report

    report.write_report(results, out)
    report_s = time.perf_counter() - t0
    timings = replace(results.timings, report=report_s, total=time.perf_counter() - t_start)
    results = replace(results, timings=timings)
    results.save(out / "results.json")
    return results


def _prepare_out(out: Path) -> DemoFiles:
    """Make the output folders and empty the run tables (rows are appended; a rerun into the
    same folder starts its tables afresh); returns where the run tables go."""
    for sub in ("runs", "laws", "weights"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for stage in ("proxy", "check", "main"):
        (out / "runs" / stage).mkdir(parents=True, exist_ok=True)
        for stale in (out / "runs" / stage).glob("*.csv"):
            stale.unlink()
    return DemoFiles(
        proxy_rows=str(out / "runs" / "proxy" / "*.csv"),
        main_rows=str(out / "runs" / "main" / "*.csv"),
        check_rows=str(out / "runs" / "check" / "*.csv"),
        plan=str(out / "plan.csv"),
    )


def _workers(device: str, jobs: int | None, threads: int | None) -> tuple[int, int]:
    """``(jobs, threads)``: by default one run per core on CPU (1 on a GPU), and the cores
    divided among the runs."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = max(1, cores or 1)
    if jobs is None:
        jobs = cores if device == "cpu" else 1
    jobs = max(1, int(jobs))
    if threads is None:
        threads = max(1, cores // jobs)
    return jobs, threads


def _write_plan(out: Path, check_mixes: Mapping[str, Mapping[str, float]]) -> None:
    """``analysis_plan.md``: the tests and goals, and the unseen mixtures, before any run."""
    lines = [claims.ANALYSIS_PLAN, "Unseen mixtures of part (a), drawn before any run:", ""]
    for name, w in check_mixes.items():
        lines.append(f"- {name}: " + ", ".join(f"{d} {x:.4f}" for d, x in w.items()))
    (out / "analysis_plan.md").write_text("\n".join(lines) + "\n")


def _announce(
    out: Path,
    decisions: Mapping[str, Decision],
    statements: Mapping[str, Mapping[str, DecisionStatement]],
    bar: Any,
    stream: Any,
) -> None:
    """Print and write (``decision.md``) the tool's statements before the main runs train:
    the claims part (c) tests, then each decision as ``mixsampler optimize`` prints it."""
    claims_ = [f"- {st.text}" for per in statements.values() for st in per.values()]
    lines = [
        "# The tool's decision, stated before the main runs",
        "",
        "From mixsampler.laws.decide (what `mixsampler optimize` decides): a gain is "
        "distinguishable when it exceeds what the law can resolve and the tool needed no "
        "override to decide.",
        "",
        *claims_,
    ]
    for o, dec in decisions.items():
        lines += ["", f"## optimized-{o}, as laws.decide states it", ""]
        lines += [f"    {ln}" for ln in dec.statement()]
    (out / "decision.md").write_text("\n".join(lines) + "\n")
    for ln in claims_:
        bar.write(ln, file=stream)


def _check_specs(cfg: DemoConfig, mixtures: Mapping[str, Mapping[str, float]]) -> list[RunSpec]:
    """Part (a): every check mixture at the largest proxy size and D, on the main seeds."""
    return [
        RunSpec(
            name=f"check-{name}-s{seed}",
            stage="check",
            width=max(cfg.proxy_widths),
            tokens=cfg.proxy_tokens,
            weights=dict(w),
            seed=seed,
            mixture=name,
        )
        for name, w in mixtures.items()
        for seed in cfg.seeds
    ]


def _main_specs(cfg: DemoConfig, mixtures: Mapping[str, Mixture]) -> list[RunSpec]:
    """One main run per mixture and seed; each reads its mixture from WEIGHTS.json, as a
    user's main run would."""
    return [
        RunSpec(
            name=f"main-{name}-s{seed}",
            stage="main",
            width=cfg.main_width,
            tokens=cfg.main_tokens,
            weights=mix.weights,
            seed=seed,
            mixture=name,
            weights_file=mix.file,
        )
        for name, mix in mixtures.items()
        for seed in cfg.seeds
    ]


def _run_line(summary: Mapping[str, Any], domains: Sequence[str], targets: Sequence[str]) -> str:
    m = summary["metrics"]
    losses = [m.get(f"val/loss/{d}", math.nan) for d in domains]
    avg = float(np.mean(losses)) if losses else math.nan
    parts = [f"{summary['name']:<28} N={summary['model_size']:>7,d}", f"avg={avg:.3f}"]
    parts += [f"{t}={m.get(f'val/loss/{t}', math.nan):.3f}" for t in targets]
    parts.append(f"({summary['seconds']:.0f}s)")
    return "  ".join(parts)
