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
    import sys

    from mixsampler.sweep.train import CLASS_PATH_EXIT, ClassPathError, train

    if args.overrides and not args.overrides[0].startswith("--"):
        raise ValueError(f"overrides must look like --key=value, got {args.overrides[0]!r}")
    try:
        result = train(args.config, args.overrides)
    except ClassPathError as err:
        # Its own status: the sweep stops on it, since every other run would fail the same way.
        print(f"mixsampler train: error: {err}", file=sys.stderr, flush=True)
        return CLASS_PATH_EXIT
    except OSError as err:
        if isinstance(err, (FileNotFoundError, IsADirectoryError, NotADirectoryError)):
            raise  # a path the user gave: the usage error of the command line (status 2)
        # A full disk, a read-only folder, an I/O error: one line naming the path, status 1
        # (the sweep retries it: space may be freed), the traceback stays out of the way.
        where = f"{err.filename}: " if err.filename else ""
        text = " ".join(f"{where}{err.strerror or err}".split())
        print(f"mixsampler train: error: {text}", file=sys.stderr, flush=True)
        return 1
    print(f"{result.run_dir.name}: {result.message}", flush=True)
    return 0 if result.finished else 1
