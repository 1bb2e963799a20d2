"""The ``fit`` verb: fit a law per target to run tables and write LAW.json."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``fit`` verb to the ``mixsampler`` parser."""
    from mixsampler.laws.forms import LAWS
    from mixsampler.laws.schema import MODEL_SIZE

    p = subparsers.add_parser("fit", help="fit a mixture scaling law to run tables")
    p.add_argument("runs", nargs="+", help="run tables (CSV or JSONL)")
    p.add_argument("--law", required=True, choices=LAWS, help="the law to fit")
    p.add_argument(
        "--target",
        action="append",
        required=True,
        help="target to fit (repeatable; 'all' fits every *_loss column)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the global search")
    p.add_argument("--where", help='row filter, e.g. "model_size < 2e9"')
    p.add_argument(
        "--n-column",
        default=MODEL_SIZE,
        help="the run-table column read as N (default model_size; DomainLossLogger also "
        "writes model_size_total and model_size_non_embedding)",
    )
    p.add_argument(
        "--jobs", type=int, default=1, help="targets fitted in parallel processes (default 1)"
    )
    p.add_argument("-o", "--output", required=True, help="LAW.json to write")
    p.set_defaults(func=_cmd_fit)


def _fit_one(job: tuple[Any, str, str, int]) -> Any:
    from mixsampler.laws.fit import fit

    table, law, target, seed = job
    return fit(table, law, target, seed=seed)


def _targets(args: argparse.Namespace, table: Any) -> list[str]:
    targets: list[str] = []
    for t in args.target:
        if t == "all":
            # BiMix needs the target's own weight: only training domains qualify.
            targets += [x for x in table.targets if args.law != "bimix" or x in table.domains]
        else:
            targets.append(t[:-5] if t.endswith("_loss") else t)
    targets = list(dict.fromkeys(targets))
    if not targets:
        raise ValueError(f"no *_loss columns in {', '.join(args.runs)}")
    return targets


def _cmd_fit(args: argparse.Namespace) -> int:
    from mixsampler.laws.bootstrap import run_parallel
    from mixsampler.laws.io import save_laws
    from mixsampler.laws.runtable import load_runs

    if args.jobs < 1:
        raise ValueError(f"--jobs must be a positive integer, got {args.jobs}")
    table = load_runs(args.runs, where=args.where, n_column=args.n_column)
    if len(table) == 0:
        raise ValueError(f"no rows left in {', '.join(args.runs)} after --where {args.where!r}")
    targets = _targets(args, table)
    jobs = [(table, args.law, t, args.seed) for t in targets]
    if args.jobs > 1:
        rows = run_parallel(_fit_one, jobs, args.jobs)
    else:
        from tqdm.auto import tqdm

        rows = [
            _fit_one(j)
            for j in tqdm(jobs, desc=f"fit {args.law}", unit="target", disable=len(jobs) < 2)
        ]
    # Recorded so that `optimize --runs ... --bootstrap` refits on the same rows and N.
    fitted = {
        t: r.law.with_fit_info(where=args.where, n_column=args.n_column)
        for t, r in zip(targets, rows, strict=True)
    }
    save_laws(args.output, fitted)
    print(f"{'target':<16} {'MRE %':>7} {'rows':>6} {'missing':>7} {'seconds':>8}  message")
    for t, r in zip(targets, rows, strict=True):
        print(f"{t:<16} {r.mre:7.3f} {r.n_rows:6d} {r.n_missing:7d} {r.seconds:8.2f}  {r.message}")
    n_warn = sum(len(r.warnings) for r in rows)
    if n_warn:
        print(f"\nidentifiability warnings ({n_warn}; also in {args.output}):")
        for t, r in zip(targets, rows, strict=True):
            for w in r.warnings:
                print(f"  {t}: {w}")
    print(f"wrote {args.output} (N read from column {args.n_column})")
    return 0
