"""The ``evaluate`` verb: MRE of fitted laws on run tables, with a parity plot."""

from __future__ import annotations

import argparse
import logging
import math
from typing import Any

from mixsampler.laws.commands.args import check_table_domains, load_table, output_file

log = logging.getLogger(__name__)


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
    from pathlib import Path

    from mixsampler.laws.evaluate import evaluate, parity_plot
    from mixsampler.laws.io import load_laws, write_json

    output = output_file(args.output, "-o") if args.output else None
    plot = output_file(args.plot, "--plot") if args.plot else None
    fitted = load_laws(args.law_file)
    table = load_table(args.runs, args.where)
    check_table_domains(fitted, table, args.law_file)
    report = evaluate(fitted, table)
    unscored = [t for t, r in report.items() if r["n"] == 0]
    if len(unscored) == len(report):
        raise ValueError(
            f"no observed loss for any target of {args.law_file} ({', '.join(report)}) in "
            f"{', '.join(args.runs)}" + (f" after --where {args.where!r}" if args.where else "")
        )
    print(f"{'target':<16} {'law':<10} {'MRE %':>7} {'max %':>7} {'rows':>6} {'missing':>7}")
    for t, r in report.items():
        mre = "-" if r["n"] == 0 else f"{r['mre']:7.3f}"
        worst = "-" if r["n"] == 0 else f"{r['max_re']:7.3f}"
        print(f"{t:<16} {r['law']:<10} {mre:>7} {worst:>7} {r['n']:6d} {r['n_missing']:7d}")
    for t in unscored:
        log.warning("evaluate: %s has no observed loss in these rows; its MRE is not defined", t)
    if output is not None:
        # Strict JSON: an undefined MRE is null, never a bare NaN.
        write_json(output, _nulls(report), "report")
        print(f"wrote {args.output}")
    if plot is not None:
        scored = {t: law for t, law in fitted.items() if t not in unscored}
        parity_plot(scored, table, plot, title=Path(args.law_file).name)
        print(f"wrote {args.plot}")
    return 0


def _nulls(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _nulls(v) for k, v in obj.items()}
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
