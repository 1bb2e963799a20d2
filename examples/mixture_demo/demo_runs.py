"""Training runs of the demo: one run (:func:`train_run`) or many side by side (:func:`run_many`).

Proxy and main runs are the same code: a :class:`~demo_model.TinyGPT` trained by a
Lightning Trainer on :class:`mixsampler.MixtureDataModule`, with
:class:`mixsampler.callbacks.DomainLossLogger` writing a run-table row at every validation; main
runs get
their mixture from :class:`mixsampler.callbacks.MixtureWeights` reading WEIGHTS.json.

Example:
    >>> from demo_runs import train_run  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from demo_config import DemoConfig, RunSpec
from demo_data import DemoData
from typing_extensions import override

from mixsampler.threads import blas_threads

#: validation sequences per batch (a batch of VAL_BATCH / seqs_per_sample samples)
VAL_BATCH = 64


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


def lr_at(cfg: DemoConfig, width: int) -> float:
    """The peak rate at ``width``: ``lr``, or ``lr * lr_ref_width / width`` when set."""
    return cfg.lr if cfg.lr_ref_width is None else cfg.lr * cfg.lr_ref_width / width


def train_settings(cfg: DemoConfig, steps: int, width: int) -> dict[str, Any]:
    """``TrainConfig`` fields of a run of ``steps`` optimizer steps (its decay ends there)."""
    return {
        "lr": lr_at(cfg, width),
        "warmup_steps": cfg.warmup_steps,
        "decay_steps": steps if cfg.lr_decay else 0,
        "min_lr_ratio": cfg.min_lr_ratio,
    }


def init_std(cfg: DemoConfig, width: int) -> float:
    """GPT-2's 0.02, or ``init_gain / sqrt(width)`` when the config sets a gain."""
    return 0.02 if cfg.init_gain is None else cfg.init_gain / width**0.5


def make_model(cfg: DemoConfig, width: int, steps: int | None = None) -> Any:
    """The demo's model at ``width``; ``steps`` (the run's length) is where the decay ends."""
    from demo_model import GPTConfig, TinyGPT, TrainConfig

    steps = steps if steps is not None else run_steps(cfg, cfg.proxy_tokens)
    return TinyGPT(
        GPTConfig(
            seq_len=cfg.data.seq_len,
            n_layer=cfg.n_layer,
            n_head=cfg.n_head,
            d_model=width,
            init_std=init_std(cfg, width),
        ),
        TrainConfig(**train_settings(cfg, steps, width)),
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
    :class:`mixsampler.callbacks.MixtureWeights` (from a WEIGHTS.json when the mixture was
    optimized), the
    way a user's main run would.
    """
    import torch
    from demo_model import collate_bytes

    from mixsampler import MixtureDataModule
    from mixsampler.callbacks import DomainLossLogger, MixtureWeights

    _quiet_lightning()
    pl.seed_everything(spec.seed, workers=True, verbose=False)
    steps = run_steps(cfg, spec.tokens)
    model = make_model(cfg, spec.width, steps)
    every = eval_every(cfg, spec.tokens)
    train = {d: data.domains[d].train for d in data.train_domains}
    val = {n: d.val for n, d in data.domains.items()}
    main = spec.stage == "main"
    dm = MixtureDataModule(
        train=train,
        # Main runs start from uniform and MixtureWeights sets the mixture before batch one.
        weights={d: 1.0 for d in train} if main else spec.weights,
        val=val,
        batch_size=cfg.batch_size // cfg.data.seqs_per_sample,
        val_batch_size=VAL_BATCH // cfg.data.seqs_per_sample,
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
            blas_threads(threads),
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


def run_steps(cfg: DemoConfig, tokens: int) -> int:
    """Optimizer steps of a run of ``tokens``: rounded up, as ``Plan.write`` sets max_steps."""
    return max(1, math.ceil(tokens / cfg.tokens_per_step))


def eval_every(cfg: DemoConfig, tokens: int) -> int:
    """Steps between validations: ``evals_per_run`` of them over the run."""
    return max(1, run_steps(cfg, tokens) // cfg.evals_per_run)
