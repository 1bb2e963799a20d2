"""The proxy sweep's plan: ``mixsampler.make_plan`` on the demo's domains and sizes.

Example:
    >>> from demo_sweep import make_proxy_plan  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from demo_config import DemoConfig, RunSpec
from demo_data import DemoData
from demo_runs import (
    VAL_BATCH,
    eval_every,
    init_std,
    lr_at,
    run_steps,
    train_settings,
)


def make_proxy_plan(cfg: DemoConfig, data: DemoData, out: Path) -> list[RunSpec]:
    """Proxy runs: the same evenly spaced mixtures at every proxy size (``make_plan``).

    The plan is also written the way ``mixsampler plan`` writes it (``plan.csv`` and one
    LightningCLI config per run under ``out``), so the sweep can be rerun outside the demo.
    """
    from mixsampler import make_plan

    domains = list(data.train_domains)
    # The init scales with width, so it is part of each size's overrides.
    sizes = {
        f"d{w}": {
            "model.init_args.cfg.d_model": w,
            "model.init_args.cfg.init_std": init_std(cfg, w),
            "model.init_args.train_cfg.lr": lr_at(cfg, w),
        }
        for w in cfg.proxy_widths
    }
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
        # The laws have no term for repetition: a proxy that reads a small domain many times
        # over measures a data-constrained regime (at --scale 16 the uncapped grid read the
        # prose 27 times).
        available=data.train_sizes(),
        max_repeat=cfg.max_repeat,
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
    """The LightningCLI config of the demo's proxy runs (written per run): ``mixsampler train``
    on it trains the same run as :func:`~demo_runs.train_run` (a test checks it)."""
    return {
        "seed_everything": cfg.seed,
        "model": {
            "class_path": "demo_model.TinyGPT",
            "init_args": {
                "cfg": {
                    "seq_len": cfg.data.seq_len,
                    "n_layer": cfg.n_layer,
                    "n_head": cfg.n_head,
                    "d_model": cfg.proxy_widths[0],
                },
                "train_cfg": train_settings(
                    cfg, run_steps(cfg, cfg.proxy_tokens), cfg.proxy_widths[0]
                ),
            },
        },
        "data": {
            "class_path": "mixsampler.MixtureDataModule",
            "init_args": {
                "train": {d: data.domains[d].train for d in data.train_domains},
                "val": {n: d.val for n, d in data.domains.items()},
                "batch_size": cfg.batch_size // cfg.data.seqs_per_sample,
                "val_batch_size": VAL_BATCH // cfg.data.seqs_per_sample,
                "num_workers": 0,
                "seed": cfg.seed,
                "collate_fn": "demo_model.collate_bytes",
            },
        },
        "trainer": {
            "val_check_interval": eval_every(cfg, cfg.proxy_tokens),
            "check_val_every_n_epoch": None,
            "num_sanity_val_steps": 0,
            "gradient_clip_val": cfg.grad_clip or None,
            "logger": False,
            "enable_checkpointing": False,
        },
    }
