"""The ``evaluate`` verb: MRE of fitted laws on run tables, with a parity plot."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``evaluate`` verb to the ``mixsampler`` parser."""
    p = subparsers.add_parser("evaluate", help="MRE of fitted laws on run tables")
    p.add_argument("law_file", help="LAW.json")
    p.add_argument("runs", nargs="+", help="run tables (CSV or JSONL)")
    p.add_argument("--where", help="row filter")
    p.add_argument("--plot", help="parity plot PNG to write")
    p.add_argument("-o", "--output", help="JSON report to write")
    p.set_defaults(func=_cmd_evaluate)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from laws.evaluate import evaluate, parity_plot
    from laws.io import load_laws
    from laws.runtable import load_runs

    fitted = load_laws(args.law_file)
    table = load_runs(args.runs, where=args.where)
    report = evaluate(fitted, table)
    print(f"{'target':<16} {'law':<10} {'MRE %':>7} {'max %':>7} {'rows':>6} {'missing':>7}")
    for t, r in report.items():
        print(
            f"{t:<16} {r['law']:<10} {r['mre']:7.3f} {r['max_re']:7.3f} {r['n']:6d} "
            f"{r['n_missing']:7d}"
        )
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.output}")
    if args.plot:
        parity_plot(fitted, table, args.plot, title=Path(args.law_file).name)
        print(f"wrote {args.plot}")
    return 0
