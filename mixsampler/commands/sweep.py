"""``mixsampler sweep``: train every run of a plan folder, here or on SLURM, resumable.

Example:
    $ mixsampler sweep sweep/ --jobs 4
    $ mixsampler sweep sweep/ --launcher slurm --partition gpu --gpus 1 --cpus 8 --mem 64 \\
          --time 240 --jobs 32
"""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``sweep`` verb."""
    p = subparsers.add_parser(
        "sweep",
        help="train every run of a plan folder (locally or on SLURM), skipping finished runs",
        description=(
            "Run `mixsampler train` on each config of a plan folder: N at a time on this machine"
            " (one GPU each when there are GPUs), or as a SLURM job array through submitit."
            " Finished runs (DONE.json for the same config) are skipped and killed runs resume"
            " from their last checkpoint, so the same command can be run again after a crash."
            " Each run's output goes to <trainer.default_root_dir>/train.log."
        ),
    )
    p.add_argument("plan_dir", help="folder written by mixsampler plan (plan.csv, configs/)")
    p.add_argument(
        "--launcher",
        default="local",
        choices=["local", "slurm"],
        help="where the runs train: this machine (default) or SLURM through submitit",
    )
    p.add_argument(
        "--jobs",
        type=int,
        help="runs at a time (local: default one per GPU, or 1 on CPU; slurm: the array's"
        " %%N throttle, default none)",
    )
    p.add_argument(
        "--retries",
        type=int,
        default=1,
        help="further attempts for a failed run, each resuming from its checkpoint (default 1)",
    )
    p.add_argument("--gpus-per-run", type=int, default=1, help="local: GPUs per run (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--status",
        action="store_true",
        help="only list each run's state (done, partial, new, stale) and train nothing",
    )
    s = p.add_argument_group("slurm (with --launcher slurm; each task is one run)")
    s.add_argument("--partition", help="SLURM partition")
    s.add_argument("--time", type=int, metavar="MIN", help="time limit per run in minutes")
    s.add_argument("--gpus", type=int, help="GPUs per run")
    s.add_argument("--cpus", type=int, help="CPUs per run (data loader workers)")
    s.add_argument("--mem", type=float, metavar="GB", help="memory per run in GB")
    s.add_argument("--account", help="SLURM account")
    s.add_argument(
        "--sbatch",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="further sbatch option, e.g. qos=high (repeatable)",
    )
    s.add_argument(
        "--slurm-cluster",
        default="slurm",
        choices=["slurm", "local"],
        help="submitit executor: slurm, or local to run the same submission path on this"
        " machine (default slurm)",
    )
    p.set_defaults(func=_run)


def _slurm_options(args: argparse.Namespace):
    from mixsampler.sweep.slurm import SlurmOptions

    extra = {}
    for item in args.sbatch:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"--sbatch expects KEY=VALUE, got {item!r}")
        extra[key.strip().lstrip("-")] = value
    return SlurmOptions(
        partition=args.partition,
        time_min=args.time,
        gpus=args.gpus,
        cpus=args.cpus,
        mem_gb=args.mem,
        account=args.account,
        extra=extra,
        cluster=args.slurm_cluster,
    )


def _print_status(plan_dir: str) -> int:
    from collections import Counter

    from mixsampler.sweep.runs import read_plan_dir, run_status

    states = [(r, run_status(r)) for r in read_plan_dir(plan_dir)]
    for r, state in states:
        print(f"{state.value:<8} {r.name}  {r.run_dir}")
    counts = Counter(state.value for _, state in states)
    print(", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    return 0


def _run(args: argparse.Namespace) -> int:
    import sys

    try:
        return _sweep(args)
    except OSError as err:
        if isinstance(err, (FileNotFoundError, IsADirectoryError, NotADirectoryError)):
            raise  # a path given on the command line: a usage error (status 2)
        # A read-only folder, a full disk, an I/O error: one line naming the path, status 1.
        text = err.strerror or str(err)
        if err.filename and str(err.filename) not in text:
            text = f"{err.filename}: {text}"
        print(f"mixsampler sweep: error: {' '.join(text.split())}", file=sys.stderr, flush=True)
        return 1


def _sweep(args: argparse.Namespace) -> int:
    from mixsampler.sweep.runner import run_sweep

    if args.status:
        return _print_status(args.plan_dir)
    slurm_flags = [
        f"--{name}"
        for name in ("partition", "time", "gpus", "cpus", "mem", "account")
        if getattr(args, name) is not None
    ] + (["--sbatch"] if args.sbatch else [])
    slurm_flags += ["--slurm-cluster"] if args.slurm_cluster != "slurm" else []
    if args.launcher == "local" and slurm_flags:
        raise ValueError(
            f"{slurm_flags[0]} is a SLURM option; add --launcher slurm, or leave it out"
        )
    if args.launcher == "slurm" and args.gpus_per_run != 1:
        raise ValueError("--gpus-per-run is for --launcher local; on SLURM use --gpus")
    result = run_sweep(
        args.plan_dir,
        launcher=args.launcher,
        jobs=args.jobs,
        retries=args.retries,
        gpus_per_run=args.gpus_per_run,
        slurm=_slurm_options(args) if args.launcher == "slurm" else None,
        progress=not args.no_progress,
    )
    print(result.summary(), flush=True)
    return 0 if result.success else 1
