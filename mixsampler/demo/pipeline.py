"""The demo's whole loop: plan -> proxy sweep -> fit -> optimize -> main runs -> report.

Every stage writes its files under one output folder, in the project's interchange formats,
so each step can be redone by hand with the command line (the report lists the commands):

- ``plan.csv``: the proxy sweep (``mixsampler.make_plan``),
- ``runs/proxy.csv`` and ``runs/main.csv``: run-table rows written by
  :class:`callbacks.DomainLossLogger` at every validation,
- ``laws/<law>.json`` (fit on all proxy rows) and ``laws/<law>.heldout.json`` (fit on the
  smaller proxy sizes only, to measure extrapolation in N),
- ``weights/<mixture>.json``: WEIGHTS.json of each main-run mixture,
- ``results.json``, ``report.md`` and the PNG figures.

Example:
    >>> from mixsampler.demo.pipeline import QUICK, run_demo
    >>> results = run_demo(QUICK, out_dir="demo_out")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import csv
import glob
import json
import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
from typing_extensions import override

from mixsampler.demo.data import DataConfig, DemoData, build_default_data, load_user_data

log = logging.getLogger(__name__)

LAWS: tuple[str, ...] = ("additive", "joint")


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo; the two presets are :data:`FULL` and :data:`QUICK`.

    Attributes:
        data: what the embedded data takes from the installation.
        batch_size: sequences per step (a multiple of ``data.seqs_per_sample``); tokens per
            step = batch_size * seq_len.
        n_layer: depth of every model; the sweep varies width only, as the paper's models do.
        n_head: attention heads of every model.
        proxy_widths: ``d_model`` of the proxy sizes; at least 3, so the laws can be fitted on
            the smaller ones and checked on the largest (extrapolation in N).
        proxy_tokens: tokens each proxy run trains on. As long as a main run by default:
            at this size the curves are not power laws in D (measured in the report's
            held-out-D column and in the research note: fitted on the first half of each proxy
            curve, E + B/D^beta is 5 to 8 % too high at 2x D, for every batch size, learning
            rate, width and depth tried within the CPU budget), so the demo extrapolates only
            in N, where the law is checked on the largest proxy size.
        n_mixtures: distinct mixtures per proxy size; the paper finds about 10 enough for
            3 or 4 domains.
        min_weight: smallest weight of a domain in the plan's grid (the paper's public table
            uses 0.02); the optimum is kept above it too, so the law is never asked about a
            region no proxy run visited.
        evals_per_run: validations per run: each is one run-table row (one D point).
        main_width: ``d_model`` of the main runs (a larger N than every proxy).
        main_tokens: tokens of each main run (at least ``proxy_tokens``; a larger D than the
            proxies' is an extrapolation in D, which the report measures but this size does
            not support).
        seeds: seeds of the main runs; their spread is the noise floor of the verdict. Seed s
            sets both the initialisation and the data order (the sampler's seed), and is the
            same for every mixture, so mixtures are compared seed by seed.
        max_repeat: epochs of a domain's training text a main run may use (the optimizer's
            data-availability constraint).
        lr: constant learning rate after warm-up (so every validation is a usable D point).
            Measured at width 48, 1.5M tokens, two seeds: 3e-3 spread them by 0.06 nats/byte,
            2e-3 by 0.008 at a loss only 0.1 higher, 1e-3 by 0.009 but 0.2 higher.
        warmup_steps: linear warm-up steps.
        grad_clip: gradient norm clipping (nanoGPT's 1.0). The seed spread is the noise floor
            every mixture comparison must clear; at lr 3e-3 two seeds ended 0.08 nats/byte
            apart after 3M tokens unclipped and 0.06 apart after 1.5M clipped.
        seed: seed of the plan, the proxy runs and the fits.
    """

    data: DataConfig = field(default_factory=DataConfig)
    batch_size: int = 16
    n_layer: int = 2
    n_head: int = 2
    proxy_widths: tuple[int, ...] = (32, 48, 64)
    proxy_tokens: int = 900_000
    n_mixtures: int = 10
    min_weight: float = 0.02
    evals_per_run: int = 8
    main_width: int = 96
    main_tokens: int = 900_000
    seeds: tuple[int, ...] = (0, 1, 2)
    max_repeat: float = 4.0
    lr: float = 2e-3
    warmup_steps: int = 20
    grad_clip: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if len(self.proxy_widths) < 3 or len(set(self.proxy_widths)) != len(self.proxy_widths):
            raise ValueError(
                f"proxy_widths needs at least 3 distinct sizes (fit on the smaller, check on "
                f"the largest), got {self.proxy_widths}"
            )
        if self.main_width <= max(self.proxy_widths):
            raise ValueError(
                f"main_width must exceed every proxy width {self.proxy_widths}, "
                f"got {self.main_width}"
            )
        if self.main_tokens < self.proxy_tokens:
            raise ValueError(
                f"main_tokens must be at least proxy_tokens={self.proxy_tokens}, "
                f"got {self.main_tokens}"
            )
        if len(self.seeds) < 3 or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(
                f"seeds needs at least 3 distinct seeds (their spread is the noise floor of "
                f"every comparison; 2 seeds understate it), got {self.seeds}"
            )
        if not 0 <= self.min_weight < 0.25:
            raise ValueError(f"min_weight must be in [0, 0.25), got {self.min_weight}")
        if self.batch_size % self.data.seqs_per_sample:
            raise ValueError(
                f"batch_size must be a multiple of data.seqs_per_sample="
                f"{self.data.seqs_per_sample}, got {self.batch_size}"
            )
        for name in ("batch_size", "proxy_tokens", "n_mixtures", "evals_per_run", "main_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.data.seq_len


FULL = DemoConfig()

QUICK = DemoConfig(
    # train_cap above the two small domains (prose, licenses) so the natural mixture is not
    # uniform, as in the full demo.
    # large_cap keeps cpp at about half of the natural mixture, as in the full demo.
    data=DataConfig(
        seq_len=64, train_cap=1_000_000, val_cap=2_048, doc_cap=16_384, large_cap=2_100_000
    ),
    batch_size=16,
    n_layer=1,
    proxy_widths=(16, 24, 32),
    proxy_tokens=61_440,
    n_mixtures=6,
    evals_per_run=4,
    main_width=48,
    main_tokens=61_440,
    lr=3e-3,
    warmup_steps=5,
)


# ------------------------------------------------------------------------------ runs


@dataclass
class RunSpec:
    """One training run of the demo.

    Attributes:
        name: unique run name (the ``run`` column of its rows).
        stage: "proxy" or "main".
        width: ``d_model``.
        tokens: planned training tokens.
        weights: the training mixture.
        seed: model initialisation and data order.
        mixture: the mixture's label (e.g. "uniform", "optimized-avg", "mix03").
        weights_file: WEIGHTS.json that MixtureWeights reads (main runs), or None.
    """

    name: str
    stage: str
    width: int
    tokens: int
    weights: dict[str, float]
    seed: int
    mixture: str
    weights_file: str | None = None


def _quiet_lightning() -> None:
    # One progress bar over the whole sweep: Lightning's own chatter (GPU/TPU banners, the
    # few-workers hint, per-run summaries) would bury it.
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"lightning(\..*)?")
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*(IterableDataset|__len__).*")
    # torchdata's StatefulDataLoader calls a torch API that torch 2.13 deprecates.
    warnings.filterwarnings("ignore", message=r".*set_vital.*")


def _make_model(cfg: DemoConfig, width: int) -> Any:
    from mixsampler.demo.model import GPTConfig, TinyGPT, TrainConfig

    return TinyGPT(
        GPTConfig(seq_len=cfg.data.seq_len, n_layer=cfg.n_layer, n_head=cfg.n_head, d_model=width),
        TrainConfig(lr=cfg.lr, warmup_steps=cfg.warmup_steps),
    )


def train_run(
    spec: RunSpec,
    cfg: DemoConfig,
    data: DemoData,
    rows_path: Path,
    *,
    device: str = "cpu",
    threads: int = 1,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Train one run, its rows going to ``rows_path`` (one CSV per run); returns a summary.

    ``progress`` is called with the tokens of every training batch.

    Proxy runs get their mixture through the datamodule; main runs through
    :class:`callbacks.MixtureWeights` (from a WEIGHTS.json when the mixture was optimized), the
    way a user's main run would.
    """
    import torch

    from callbacks import DomainLossLogger, MixtureWeights
    from mixsampler import MixtureDataModule
    from mixsampler.demo.model import collate_bytes

    _quiet_lightning()
    pl.seed_everything(spec.seed, workers=True, verbose=False)
    model = _make_model(cfg, spec.width)
    steps = max(1, spec.tokens // cfg.tokens_per_step)
    every = _eval_every(cfg, spec.tokens)
    train = {d: data.domains[d].train for d in data.train_domains}
    val = {n: d.val for n, d in data.domains.items()}
    main = spec.stage == "main"
    dm = MixtureDataModule(
        train=train,
        # Main runs start from uniform and MixtureWeights sets the mixture before batch one.
        weights={d: 1.0 for d in train} if main else spec.weights,
        val=val,
        batch_size=cfg.batch_size // cfg.data.seqs_per_sample,
        val_batch_size=64 // cfg.data.seqs_per_sample,
        num_workers=0,
        seed=spec.seed,
        collate_fn=collate_bytes,
    )
    callbacks: list[Any] = [DomainLossLogger(str(rows_path), run=spec.name)]
    if main:
        if spec.weights_file:
            callbacks.append(MixtureWeights(weights_file=spec.weights_file))
        else:
            callbacks.append(MixtureWeights(weights=spec.weights))
    if progress is not None:
        callbacks.append(_ProgressCallback(progress, cfg.tokens_per_step))
    if device == "cpu":
        torch.set_num_threads(max(1, threads))
    trainer = pl.Trainer(
        # MixtureWeights writes the mixture it applied here, next to nothing else.
        default_root_dir=str(rows_path.parent.parent.parent / "logs" / spec.name),
        accelerator=device,
        devices=1,
        max_steps=steps,
        val_check_interval=every,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        gradient_clip_val=cfg.grad_clip or None,
        callbacks=callbacks,
    )
    t0 = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    seconds = time.perf_counter() - t0
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if torch.is_tensor(v)}
    return {
        "name": spec.name,
        "stage": spec.stage,
        "mixture": spec.mixture,
        "seed": spec.seed,
        "width": spec.width,
        "model_size": model.non_embedding_params(),
        "steps": steps,
        "seconds": seconds,
        "metrics": metrics,
    }


class _ProgressCallback(pl.Callback):
    """Advances the sweep's single tqdm bar by the tokens of each training batch."""

    def __init__(self, report: Callable[[int], None], tokens_per_step: int) -> None:
        self.report = report
        self.tokens_per_step = tokens_per_step

    @override
    def on_train_batch_end(self, trainer: Any, *args: Any, **kwargs: Any) -> None:
        self.report(self.tokens_per_step)


# Set in each worker process of a parallel sweep by _init_worker.
_WORKER_QUEUE: Any = None


def _init_worker(queue: Any) -> None:
    global _WORKER_QUEUE
    _WORKER_QUEUE = queue
    # A worker whose parent was killed (not interrupted: Ctrl-C reaches the whole process
    # group) would train on for nobody; it exits instead.
    import threading

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(2.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()
    logging.basicConfig(level=logging.WARNING)
    _quiet_lightning()


def _worker_train(
    spec: RunSpec, cfg: DemoConfig, data: DemoData, rows_path: Path, device: str, threads: int
) -> dict[str, Any]:
    queue = _WORKER_QUEUE
    return train_run(spec, cfg, data, rows_path, device=device, threads=threads, progress=queue.put)


def run_many(
    specs: Sequence[RunSpec],
    cfg: DemoConfig,
    data: DemoData,
    rows_dir: Path,
    *,
    device: str,
    jobs: int,
    threads: int,
    bar: Any,
    on_done: Callable[[dict[str, Any]], None],
) -> list[dict[str, Any]]:
    """Train ``specs``, ``jobs`` at a time, each with ``threads`` torch threads.

    Tiny models use a second core better as a second run than as a second thread of one run,
    so on CPU the demo trains runs side by side in spawned processes (fork is unsafe once
    torch has started its thread pools). Every run seeds itself and writes its own CSV, so
    results do not depend on the order runs finish in. Summaries come back in ``specs`` order.
    """
    if jobs <= 1 or len(specs) <= 1:
        out = []
        for spec in specs:
            summary = train_run(
                spec,
                cfg,
                data,
                rows_dir / f"{spec.name}.csv",
                device=device,
                threads=threads,
                progress=bar.update,
            )
            on_done(summary)
            out.append(summary)
        return out
    import multiprocessing as mp
    import threading
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ctx = mp.get_context("spawn")
    manager = ctx.Manager()
    queue = manager.Queue()

    def drain() -> None:
        while True:
            item = queue.get()
            if item is None:
                return
            bar.update(item)

    pump = threading.Thread(target=drain, daemon=True)
    pump.start()
    results: dict[str, dict[str, Any]] = {}
    try:
        with (
            _blas_threads(threads),
            ProcessPoolExecutor(
                max_workers=jobs, mp_context=ctx, initializer=_init_worker, initargs=(queue,)
            ) as pool,
        ):
            futures = {
                pool.submit(
                    _worker_train,
                    spec,
                    cfg,
                    data,
                    rows_dir / f"{spec.name}.csv",
                    device,
                    threads,
                ): spec.name
                for spec in specs
            }
            for fut in as_completed(futures):
                summary = fut.result()
                results[futures[fut]] = summary
                on_done(summary)
    finally:
        queue.put(None)
        pump.join(timeout=5)
        manager.shutdown()
    return [results[s.name] for s in specs]


# ---------------------------------------------------------------------------- plan


def make_proxy_plan(cfg: DemoConfig, data: DemoData, out: Path) -> list[RunSpec]:
    """Proxy runs: the same evenly spaced mixtures at every proxy size (``make_plan``).

    The plan is also written the way ``mixsampler plan`` writes it (``plan.csv`` and one
    LightningCLI config per run under ``out``), so the sweep can be rerun outside the demo.
    """
    from mixsampler import make_plan

    domains = list(data.train_domains)
    sizes = {f"d{w}": {"model.init_args.cfg.d_model": w} for w in cfg.proxy_widths}
    plan = make_plan(
        domains,
        token_budgets=[cfg.proxy_tokens],
        model_sizes=sizes,
        design="grid",
        # The mixture count is set by hand from the paper's finding (about 10 mixtures for
        # 3 or 4 domains), not from the joint law's total parameter count: its N and D terms
        # are identified by the sizes and the validations, not by more mixtures.
        law=None,
        n_mixtures=cfg.n_mixtures,
        min_weight=cfg.min_weight,
        seed=cfg.seed,
    )
    plan.write(
        out,
        base_config=_base_config(cfg, data),
        tokens_per_step=cfg.tokens_per_step,
        runs_dir="runs/proxy",
    )
    specs = []
    for run in plan.runs:
        specs.append(
            RunSpec(
                name=str(run["run"]),
                stage="proxy",
                width=int(sizes[run["model"]]["model.init_args.cfg.d_model"]),
                tokens=int(run["n_tokens"]),
                weights={d: float(run[f"weight_{d}"]) for d in domains},
                seed=cfg.seed,
                mixture=f"m{run['mixture']}",
            )
        )
    return specs


def _base_config(cfg: DemoConfig, data: DemoData) -> dict[str, Any]:
    """The LightningCLI config the demo's proxy runs correspond to (written per run)."""
    return {
        "model": {
            "class_path": "mixsampler.demo.model.TinyGPT",
            "init_args": {
                "cfg": {
                    "seq_len": cfg.data.seq_len,
                    "n_layer": cfg.n_layer,
                    "n_head": cfg.n_head,
                    "d_model": cfg.proxy_widths[0],
                },
                "train_cfg": {"lr": cfg.lr, "warmup_steps": cfg.warmup_steps},
            },
        },
        "data": {
            "class_path": "mixsampler.MixtureDataModule",
            "init_args": {
                "train": {d: data.domains[d].train for d in data.train_domains},
                "val": {n: d.val for n, d in data.domains.items()},
                "batch_size": cfg.batch_size // cfg.data.seqs_per_sample,
                "num_workers": 0,
                "seed": cfg.seed,
                "collate_fn": "mixsampler.demo.model.collate_bytes",
            },
        },
        "trainer": {
            "val_check_interval": _eval_every(cfg, cfg.proxy_tokens),
            "check_val_every_n_epoch": None,
            "num_sanity_val_steps": 0,
            "logger": False,
            "enable_checkpointing": False,
        },
    }


def _eval_every(cfg: DemoConfig, tokens: int) -> int:
    steps = max(1, tokens // cfg.tokens_per_step)
    return max(1, steps // cfg.evals_per_run)


# ------------------------------------------------------------------------------ fit


def load_rows(pattern: str, where: str | None = None) -> Any:
    """The run table of every CSV matching ``pattern`` (as the shell expands it for
    ``mixsampler fit runs/proxy/*.csv``)."""
    import laws

    paths = sorted(glob.glob(pattern))
    if not paths:
        raise FileNotFoundError(f"no run-table files match {pattern}")
    return laws.load_runs(paths, where=where)


@contextlib.contextmanager
def _blas_threads(n: int) -> Iterator[None]:
    """Threads of the numeric libraries in child processes started inside the block."""
    keys = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: str(n) for k in keys})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _fit_target(paths: list[str], where: str | None, target: str, seed: int) -> dict[str, Any]:
    """Additive, then joint warm-started from it: what ``laws.fit`` does inside a joint fit
    (it embeds an additive fit of the same rows), done once instead of twice."""
    import laws

    table = laws.load_runs(paths, where=where)
    out: dict[str, Any] = {}
    init = None
    for law in LAWS:
        res = laws.fit(table, law, target, seed=seed, init=init if law == "joint" else None)
        if law == "additive":
            init = res.law
        out[law] = {
            "law": res.law,
            "fit": {
                "success": bool(res.success),
                "message": str(res.message),
                "fun": float(res.fun),
                "n_rows": int(res.n_rows),
                "seconds": float(res.seconds),
            },
        }
    return out


def fit_laws(
    rows: str,
    out: Path,
    *,
    seed: int,
    jobs: int = 1,
    subsets: Mapping[str, str | None] | None = None,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Fit each law on every target of every row subset, as ``mixsampler fit`` does (same
    ``laws.load_runs`` and ``laws.fit``, default settings); save one LAW.json per law and subset.

    Args:
        rows: glob of the run-table CSVs.
        out: folder of the LAW.json files: ``<law><suffix>.json``.
        seed: the fits' seed.
        jobs: fits run side by side (one process per target and subset).
        subsets: suffix -> ``--where`` filter; default ``{"": None}`` (all rows).

    Returns:
        suffix -> law -> ``{"path", "laws": {target: FittedLaw}, "fit": {target: summary}}``.
    """
    import laws

    subsets = dict(subsets or {"": None})
    paths = sorted(glob.glob(rows))
    targets = load_rows(rows).targets
    tasks = [(suffix, t) for suffix in subsets for t in targets]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    # Always in fresh processes with one BLAS thread: L-BFGS-B's small BLAS calls made
    # OpenBLAS spin its threads, and on a busy 2-core machine a fit took 3x longer with them.
    with (
        _blas_threads(1),
        ProcessPoolExecutor(
            max_workers=max(1, min(jobs, len(tasks))), mp_context=mp.get_context("spawn")
        ) as pool,
    ):
        futures = [pool.submit(_fit_target, paths, subsets[s], t, seed) for s, t in tasks]
        done = [f.result() for f in futures]
    result: dict[str, dict[str, dict[str, Any]]] = {}
    for suffix in subsets:
        result[suffix] = {}
        for law in LAWS:
            per_target = {
                t: r[law] for (sfx, t), r in zip(tasks, done, strict=True) if sfx == suffix
            }
            path = out / f"{law}{suffix}.json"
            fitted = {t: v["law"] for t, v in per_target.items()}
            laws.save_laws(str(path), fitted)
            result[suffix][law] = {
                "path": str(path),
                "laws": fitted,
                "fit": {t: v["fit"] for t, v in per_target.items()},
            }
    return result


def mre(fitted: Mapping[str, Any], table: Any) -> dict[str, float]:
    """MRE in % of each target's law on ``table``'s rows (``laws.evaluate``)."""
    import laws

    return {t: float(e["mre"]) for t, e in laws.evaluate(fitted, table).items()}


def bias(fitted: Mapping[str, Any], table: Any) -> dict[str, float]:
    """Mean signed error in % (predicted - measured) of each target's law on ``table``: the
    direction of a law's error, which MRE hides (positive: too high)."""
    import laws

    out = {}
    for t, pred in laws.predict_table(fitted, table).items():
        obs = table.losses[t]
        ok = np.isfinite(obs)
        out[t] = float(np.mean((pred[ok] - obs[ok]) / obs[ok]) * 100)
    return out


# --------------------------------------------------------------------------- driver


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

    import laws
    from laws.weightsfile import WeightsFile, write_weights
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

    # ---- fit: held out by scale (fit on the smaller sizes, check on the largest), then all
    t0 = time.perf_counter()
    table_all = load_rows(proxy_rows)
    sizes = sorted(set(np.asarray(table_all.model_size).tolist()))
    n_max = sizes[-1]
    where_small = f"model_size < {n_max}"
    # The evidence for the D question: fitted on the first half of every proxy curve, how
    # far off is the law on the second half (extrapolation in D by up to 2x)?
    d_half = float(np.max(table_all.n_tokens)) / 2
    where_early = f"n_tokens <= {d_half}"
    fits = fit_laws(
        proxy_rows,
        out / "laws",
        seed=cfg.seed,
        jobs=jobs,
        subsets={".heldout": where_small, ".early": where_early, "": None},
    )
    heldout, early, full = fits[".heldout"], fits[".early"], fits[""]
    table_large = load_rows(proxy_rows, where=f"model_size >= {n_max}")
    table_late = load_rows(proxy_rows, where=f"n_tokens > {d_half}")
    fit_report = {
        law: {
            "train_mre": mre(full[law]["laws"], table_all),
            "heldout_train_mre": mre(
                heldout[law]["laws"], load_rows(proxy_rows, where=where_small)
            ),
            "heldout_mre": mre(heldout[law]["laws"], table_large),
            "heldout_d_mre": mre(early[law]["laws"], table_late),
            "heldout_d_bias": bias(early[law]["laws"], table_late),
            "d_half": d_half,
            "fit": full[law]["fit"],
            "heldout_fit": heldout[law]["fit"],
            "path": full[law]["path"],
            "heldout_path": heldout[law]["path"],
            "early_path": early[law]["path"],
        }
        for law in LAWS
    }
    # Model selection on evidence: the law that extrapolated better in N drives the optimum.
    chosen = min(LAWS, key=lambda lw: np.mean(list(fit_report[lw]["heldout_mre"].values())))
    fitted = full[chosen]["laws"]
    timings["fit"] = time.perf_counter() - t0

    # ---- optimize at the main run's own (N, D)
    t0 = time.perf_counter()
    n_main = _make_model(cfg, cfg.main_width).non_embedding_params()
    available = {d: float(data.domains[d].train_bytes) for d in domains}
    objectives: dict[str, dict[str, float]] = {"avg": {d: 1.0 / len(domains) for d in domains}}
    if targets:
        objectives["target"] = {t: 1.0 / len(targets) for t in targets}
    mixtures: dict[str, dict[str, Any]] = {}
    for obj_name, objective in objectives.items():
        res = laws.optimize(
            fitted,
            model_size=float(n_main),
            n_tokens=float(cfg.main_tokens),
            objective=objective,
            min_weight=cfg.min_weight,
            available=available,
            max_repeat=cfg.max_repeat,
            seed=cfg.seed,
        )
        path = out / "weights" / f"optimized-{obj_name}.json"
        write_weights(
            path,
            WeightsFile.from_result(
                res, law_file=str(full[chosen]["path"]), source=f"optimized-{obj_name}"
            ),
        )
        mixtures[f"optimized-{obj_name}"] = {
            "weights": dict(res.weights),
            "file": str(path),
            "objective": objective,
            "success": bool(res.success),
            "message": str(res.message),
            "fingerprint": weights_fingerprint(res.weights),
        }
    for name, w in (
        ("uniform", {d: 1.0 / len(domains) for d in domains}),
        ("natural", data.natural_weights()),
    ):
        path = out / "weights" / f"{name}.json"
        write_weights(path, WeightsFile(weights=w, source=name))
        mixtures[name] = {"weights": w, "file": str(path), "fingerprint": weights_fingerprint(w)}
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
        "proxy_sizes": sizes,
        "main_model_size": n_main,
        "laws": fit_report,
        "chosen_law": chosen,
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
    results["proxy_tokens_max"] = float(np.max(table_all.n_tokens))
    results["main"] = evaluate_main(results, main_rows, fitted)
    results["verdict"] = verdict(results)
    timings["total_before_report"] = time.perf_counter() - t_start
    results["timings"] = timings
    report.write_report(results, out)
    timings["report"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    (out / "results.json").write_text(json.dumps(results, indent=1, default=_json_default))
    return results


def weights_fingerprint(weights: Mapping[str, float]) -> str:
    """SHA-256 (12 hex digits) of a mixture as exact JSON: equal fingerprints, equal weights
    to the last bit, so equal sample order for a given seed.

    Example:
        >>> weights_fingerprint({"a": 0.5, "b": 0.5}) == weights_fingerprint({"b": 0.5, "a": 0.5})
        True
    """
    import hashlib

    text = json.dumps({k: float(v) for k, v in sorted(weights.items())}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


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


# --------------------------------------------------------------------- main runs


def final_rows(pattern: str) -> dict[str, dict[str, str]]:
    """The last row (most tokens) of every run in the run-table CSVs matching ``pattern``."""
    last: dict[str, dict[str, str]] = {}
    for path in sorted(glob.glob(pattern)):
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                run = row["run"]
                if run not in last or float(row["n_tokens"]) >= float(last[run]["n_tokens"]):
                    last[run] = row
    return last


def evaluate_main(
    results: Mapping[str, Any], rows: str, fitted: Mapping[str, Any]
) -> dict[str, Any]:
    """Measured final losses of the main runs next to the law's prediction for each.

    Predictions use each run's own recorded N, D and weights (the row), not the planned ones.
    """
    domains: list[str] = list(results["domains"])
    targets: list[str] = list(results["targets"])
    objectives: Mapping[str, Mapping[str, float]] = results["objectives"]
    per_run: dict[str, dict[str, Any]] = {}
    for run, row in sorted(final_rows(rows).items()):
        mix = next(r["mixture"] for r in results["runs"] if r["name"] == run)
        seed = next(r["seed"] for r in results["runs"] if r["name"] == run)
        n, d = float(row["model_size"]), float(row["n_tokens"])
        losses = {t: float(row[f"{t}_loss"]) for t in [*domains, *targets]}
        pred = {
            t: float(law.predict(n, d, np.array([float(row[f"weight_{x}"]) for x in law.domains])))
            for t, law in fitted.items()
        }
        per_run[run] = {
            "mixture": mix,
            "seed": seed,
            "model_size": n,
            "n_tokens": d,
            "loss": losses,
            "pred": pred,
            "objective": {
                o: sum(w * losses[t] for t, w in obj.items()) for o, obj in objectives.items()
            },
            "pred_objective": {
                o: sum(w * pred[t] for t, w in obj.items()) for o, obj in objectives.items()
            },
        }
    by_mix: dict[str, dict[str, Any]] = {}
    for mix in results["mixtures"]:
        # In seed order, so seed s of one mixture pairs with seed s of another.
        rs = sorted((r for r in per_run.values() if r["mixture"] == mix), key=lambda r: r["seed"])
        entry: dict[str, Any] = {"seeds": [r["seed"] for r in rs], "objective": {}}
        for o in objectives:
            vals = np.array([r["objective"][o] for r in rs])
            preds = np.array([r["pred_objective"][o] for r in rs])
            entry["objective"][o] = {
                "measured": vals.tolist(),
                "predicted_per_seed": preds.tolist(),
                "mean": float(vals.mean()),
                "spread": float(vals.max() - vals.min()),
                "predicted": float(preds.mean()),
                "rel_error_pct": float(abs(preds.mean() - vals.mean()) / vals.mean() * 100),
                # "every main run within 2 %": the worst seed, not the mean of the seeds.
                "max_rel_error_pct": float(np.max(np.abs(preds - vals) / vals) * 100),
            }
        by_mix[mix] = entry
    return {
        "runs": per_run,
        "mixtures": by_mix,
        "by_tokens": _error_by_tokens(rows, fitted, float(results["proxy_tokens_max"])),
    }


def _error_by_tokens(rows: str, fitted: Mapping[str, Any], d_proxy: float) -> dict[str, Any]:
    """The law's MRE on every main-run validation, split at the proxies' largest D: where it
    only extrapolates in N, and where it extrapolates in N and D."""
    import laws

    table = load_rows(rows)
    errs = []
    for target, pred in laws.predict_table(fitted, table).items():
        obs = table.losses[target]
        errs.append((pred - obs) / obs * 100)
    err = np.stack(errs)  # (targets, rows), signed %
    out: dict[str, Any] = {"proxy_tokens_max": d_proxy}
    for name, sel in (
        ("within", table.n_tokens <= d_proxy * 1.05),
        ("beyond", table.n_tokens > d_proxy * 1.05),
    ):
        e = err[:, sel]
        out[name] = {
            "rows": int(sel.sum()),
            "mre": float(np.nanmean(np.abs(e))) if e.size else math.nan,
            "bias": float(np.nanmean(e)) if e.size else math.nan,
        }
    return out


def verdict(results: Mapping[str, Any]) -> dict[str, Any]:
    """Did each optimized mixture beat uniform and natural on every seed by more than the seed
    spread, and did the law predict every main run within 2 %? Computed from the numbers.

    Seeds are compared pairwise: seed s of every mixture shares its initialisation and its
    data-order seed, so ``base[s] - optimized[s]`` cancels the noise the two runs share. A win
    needs that paired gap above the larger of the two mixtures' seed spreads on every seed.
    """
    by_mix = results["main"]["mixtures"]
    out: dict[str, Any] = {"objectives": {}, "prediction": {}}
    for obj in results["objectives"]:
        opt = by_mix[f"optimized-{obj}"]["objective"][obj]
        comps = {}
        for base in ("uniform", "natural"):
            b = by_mix[base]["objective"][obj]
            paired = [bb - oo for bb, oo in zip(b["measured"], opt["measured"], strict=True)]
            spread = max(b["spread"], opt["spread"])
            comps[base] = {
                "gap": b["mean"] - opt["mean"],
                "paired": paired,
                "min_paired": min(paired),
                "spread": spread,
                "wins": bool(min(paired) > spread),
                "lower_on_every_seed": bool(min(paired) > 0),
                "better_on_average": bool(b["mean"] > opt["mean"]),
            }
        out["objectives"][obj] = {
            "optimized": opt["mean"],
            "vs": comps,
            "wins": all(c["wins"] for c in comps.values()),
        }
    worst = 0.0
    for mix, entry in by_mix.items():
        for obj, e in entry["objective"].items():
            out["prediction"][f"{mix}/{obj}"] = e["max_rel_error_pct"]
            worst = max(worst, e["max_rel_error_pct"])
    out["prediction_worst_pct"] = worst
    out["prediction_within_2pct"] = bool(worst <= 2.0)
    out["all_pass"] = bool(
        all(o["wins"] for o in out["objectives"].values()) and out["prediction_within_2pct"]
    )
    return out


def scaled(cfg: DemoConfig, **changes: Any) -> DemoConfig:
    """A copy of ``cfg`` with some fields changed (validated again)."""
    return replace(cfg, **changes)
