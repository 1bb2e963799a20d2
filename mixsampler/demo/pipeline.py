"""The demo's whole loop: plan -> proxy sweep -> fit -> optimize -> main runs -> report.

One module per stage: :mod:`~mixsampler.demo.data` (shards), :mod:`~mixsampler.demo.sweep`
(the plan), :mod:`~mixsampler.demo.runs` (training), :mod:`~mixsampler.demo.fit`,
:mod:`~mixsampler.demo.optimize`, :mod:`~mixsampler.demo.mainruns` (evaluation and verdict),
:mod:`~mixsampler.demo.report` (with ``tables`` and ``figures``); this module only drives them.

Every stage writes its files under one output folder, in the project's interchange formats,
so each step can be redone by hand with the command line (the report lists the commands):

- ``plan.csv``: the proxy sweep (``mixsampler.make_plan``),
- ``runs/proxy/*.csv`` and ``runs/main/*.csv``: run-table rows written by
  :class:`callbacks.DomainLossLogger` at every validation,
- ``laws/<law>.json`` (fit on all proxy rows), ``laws/<law>.heldout.json`` (fit on the
  smaller proxy sizes only, to measure extrapolation in N) and ``laws/<law>.early.json`` (fit
  on the first half of every curve, to measure extrapolation in D),
- ``weights/<mixture>.json``: WEIGHTS.json of each main-run mixture,
- ``results.json``, ``report.md`` and the PNG figures.

Example:
    >>> from mixsampler.demo.pipeline import QUICK, run_demo
    >>> results = run_demo(QUICK, out_dir="demo_out")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from mixsampler.demo.config import FULL, QUICK, DemoConfig, RunSpec, scaled
from mixsampler.demo.data import DemoData, build_default_data, load_user_data
from mixsampler.demo.fit import LAWS, fit_stage
from mixsampler.demo.mainruns import evaluate_main, verdict
from mixsampler.demo.optimize import optimize_stage
from mixsampler.demo.runs import make_model, run_many, train_run
from mixsampler.demo.sweep import make_proxy_plan

__all__ = [
    "FULL",
    "LAWS",
    "QUICK",
    "DemoConfig",
    "RunSpec",
    "run_demo",
    "scaled",
    "train_run",
    "verdict",
]


def resolve_data(cfg: DemoConfig, out: Path, data_dir: str | None) -> DemoData:
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
) -> dict[str, Any]:
    """Run the whole loop and write the report; returns the results dict (results.json).

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
    from tqdm.auto import tqdm

    from mixsampler.demo import report

    t_start = time.perf_counter()
    out = Path(out_dir)
    for sub in ("runs", "laws", "weights"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    # Rows are appended; a rerun into the same folder starts its tables afresh.
    for stage in ("proxy", "main"):
        (out / "runs" / stage).mkdir(parents=True, exist_ok=True)
        for stale in (out / "runs" / stage).glob("*.csv"):
            stale.unlink()
    proxy_rows = str(out / "runs" / "proxy" / "*.csv")
    main_rows = str(out / "runs" / "main" / "*.csv")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = max(1, cores or 1)
    if jobs is None:
        jobs = cores if device == "cpu" else 1
    jobs = max(1, int(jobs))
    if threads is None:
        threads = max(1, cores // jobs)
    torch.set_num_threads(max(1, threads))
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    data = resolve_data(cfg, out, data_dir)
    timings["data"] = time.perf_counter() - t0
    domains = list(data.train_domains)
    targets = list(data.targets)

    # ---- proxy sweep
    specs = make_proxy_plan(cfg, data, out)
    main_mixtures_n = 2 + 1 + (1 if targets else 0)
    total = sum(s.tokens for s in specs) + main_mixtures_n * len(cfg.seeds) * cfg.main_tokens
    bar = tqdm(
        total=total, unit="tok", unit_scale=True, desc="training", file=stream, dynamic_ncols=True
    )

    def done(summary: dict[str, Any]) -> None:
        bar.write(_run_line(summary, domains, targets), file=stream)

    t0 = time.perf_counter()
    runs = run_many(
        specs,
        cfg,
        data,
        out / "runs" / "proxy",
        device=device,
        jobs=jobs,
        threads=threads,
        bar=bar,
        on_done=done,
    )
    timings["proxy_sweep"] = time.perf_counter() - t0

    # ---- fit: held out by scale and by D, then on all rows
    t0 = time.perf_counter()
    fit = fit_stage(proxy_rows, out / "laws", seed=cfg.seed, jobs=jobs)
    fitted = fit.fitted
    timings["fit"] = time.perf_counter() - t0

    # ---- optimize at the main run's own (N, D)
    t0 = time.perf_counter()
    n_main = make_model(cfg, cfg.main_width).non_embedding_params()
    objectives, mixtures = optimize_stage(cfg, data, fit, n_main, out / "weights")
    timings["optimize"] = time.perf_counter() - t0

    # ---- main runs
    t0 = time.perf_counter()
    main_specs = [
        RunSpec(
            name=f"main-{mix_name}-s{seed}",
            stage="main",
            width=cfg.main_width,
            tokens=cfg.main_tokens,
            weights=mix["weights"],
            seed=seed,
            mixture=mix_name,
            # Every main run reads its mixture from WEIGHTS.json, as a user's main run would.
            weights_file=mix["file"],
        )
        for mix_name, mix in mixtures.items()
        for seed in cfg.seeds
    ]
    runs += run_many(
        main_specs,
        cfg,
        data,
        out / "runs" / "main",
        device=device,
        jobs=jobs,
        threads=threads,
        bar=bar,
        on_done=done,
    )
    bar.close()
    timings["main_runs"] = time.perf_counter() - t0

    results = {
        "config": _config_json(cfg),
        "device": device,
        "jobs": jobs,
        "threads": threads,
        "data": data.to_json(),
        "domains": domains,
        "targets": targets,
        "proxy_sizes": fit.sizes,
        "main_model_size": n_main,
        "laws": fit.report,
        "chosen_law": fit.chosen,
        "objectives": objectives,
        "mixtures": mixtures,
        "runs": runs,
        "files": {
            "proxy_rows": proxy_rows,
            "main_rows": main_rows,
            "plan": str(out / "plan.csv"),
        },
    }
    t0 = time.perf_counter()
    results["proxy_tokens_max"] = fit.proxy_tokens_max
    results["main"] = evaluate_main(results, main_rows, fitted)
    results["verdict"] = verdict(results)
    timings["total_before_report"] = time.perf_counter() - t_start
    results["timings"] = timings
    report.write_report(results, out)
    timings["report"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    (out / "results.json").write_text(json.dumps(results, indent=1, default=_json_default))
    return results


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def _config_json(cfg: DemoConfig) -> dict[str, Any]:
    return asdict(cfg)


def _run_line(summary: Mapping[str, Any], domains: Sequence[str], targets: Sequence[str]) -> str:
    m = summary["metrics"]
    losses = [m.get(f"val/loss/{d}", math.nan) for d in domains]
    avg = float(np.mean(losses)) if losses else math.nan
    parts = [f"{summary['name']:<28} N={summary['model_size']:>7,d}", f"avg={avg:.3f}"]
    parts += [f"{t}={m.get(f'val/loss/{t}', math.nan):.3f}" for t in targets]
    parts.append(f"({summary['seconds']:.0f}s)")
    return "  ".join(parts)
