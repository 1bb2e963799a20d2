"""``mixsampler train``: run one LightningCLI config (``fit`` implied), resumable.

Example:
    $ mixsampler train sweep/configs/proxy-1M-m03.yaml --trainer.max_steps=200
"""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` verb."""
    p = subparsers.add_parser(
        "train",
        help="train one run from its LightningCLI config (what mixsampler plan writes)",
        description=(
            "Fit the model of a LightningCLI config (model and data by class_path), checkpoint"
            " at every validation to <trainer.default_root_dir>/checkpoints/last.ckpt, resume"
            " from it when it exists, and write DONE.json there when training reached its end."
            " Arguments after CONFIG are LightningCLI overrides, e.g. --trainer.max_steps=100."
        ),
    )
    p.add_argument("config", help="LightningCLI YAML of the run")
    p.add_argument(
        "overrides",
        nargs=argparse.REMAINDER,
        metavar="--KEY=VALUE",
        help="LightningCLI overrides applied after CONFIG",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from mixsampler.sweep.train import train

    if args.overrides and not args.overrides[0].startswith("--"):
        raise ValueError(f"overrides must look like --key=value, got {args.overrides[0]!r}")
    result = train(args.config, args.overrides)
    print(f"{result.run_dir.name}: {result.message}", flush=True)
    return 0 if result.finished else 1
