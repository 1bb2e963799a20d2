"""The ``predict`` verb: the input rows plus ``pred_<target>_loss`` columns."""

from __future__ import annotations

import argparse
import csv
import sys


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``predict`` verb to the ``mixsampler`` parser."""
    p = subparsers.add_parser("predict", help="predict losses of run-table rows")
    p.add_argument("law_file", help="LAW.json")
    p.add_argument("runs", nargs="+", help="run tables (CSV or JSONL)")
    p.add_argument("--where", help="row filter")
    p.add_argument("-o", "--output", required=True, help="CSV to write ('-' for stdout)")
    p.set_defaults(func=_cmd_predict)


def _cmd_predict(args: argparse.Namespace) -> int:
    from laws.evaluate import predict_table
    from laws.io import load_laws
    from laws.runtable import load_runs

    fitted = load_laws(args.law_file)
    table = load_runs(args.runs, where=args.where)
    preds = predict_table(fitted, table)
    pred_cols = [f"pred_{t}_loss" for t in preds]
    columns = list(table.columns) + [c for c in pred_cols if c not in table.columns]
    out = sys.stdout if args.output == "-" else open(args.output, "w", newline="")  # noqa: SIM115
    try:
        writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for i, row in enumerate(table.rows):
            full = {c: row.get(c, "") for c in table.columns}
            for t, col in zip(preds, pred_cols, strict=True):
                full[col] = repr(float(preds[t][i]))
            writer.writerow(full)
    finally:
        if out is not sys.stdout:
            out.close()
    if args.output != "-":
        print(f"wrote {len(table)} rows with {', '.join(pred_cols)} to {args.output}")
    return 0
