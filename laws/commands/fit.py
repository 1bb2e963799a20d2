"""The ``fit`` verb: fit a law per target to run tables and write LAW.json."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``fit`` verb to the ``mixsampler`` parser."""
    from laws.forms import LAWS

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
    p.add_argument("-o", "--output", required=True, help="LAW.json to write")
    p.set_defaults(func=_cmd_fit)


def _cmd_fit(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from laws.fit import fit
    from laws.io import save_laws
    from laws.runtable import load_runs

    table = load_runs(args.runs, where=args.where)
    if len(table) == 0:
        raise ValueError(f"no rows left in {', '.join(args.runs)} after --where {args.where!r}")
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
    fitted = {}
    rows = []
    bar = tqdm(targets, desc=f"fit {args.law}", unit="target", disable=len(targets) < 2)
    for t in bar:
        bar.set_postfix_str(t)
        res = fit(table, args.law, t, seed=args.seed)
        # Recorded so that `optimize --runs ... --bootstrap` refits on the same rows.
        fitted[t] = res.law.with_fit_info(where=args.where)
        rows.append(res)
    save_laws(args.output, fitted)
    print(f"{'target':<16} {'MRE %':>7} {'rows':>6} {'missing':>7} {'seconds':>8}  message")
    for t, r in zip(targets, rows, strict=True):
        print(f"{t:<16} {r.mre:7.3f} {r.n_rows:6d} {r.n_missing:7d} {r.seconds:8.2f}  {r.message}")
    print(f"wrote {args.output}")
    return 0
