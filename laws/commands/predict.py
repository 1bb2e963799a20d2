"""The ``predict`` verb: the input rows plus ``pred_<target>_loss`` columns."""

from __future__ import annotations

import argparse
import csv
import io
import sys

from mixsampler.atomic import atomic_write
from mixsampler.laws.commands.args import check_table_domains, load_table, output_file
from mixsampler.laws.schema import pred_column


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``predict`` verb to the ``mixsampler`` parser."""
    p = subparsers.add_parser("predict", help="predict losses of run-table rows")
    p.add_argument("law_file", help="LAW.json")
    p.add_argument("runs", nargs="+", help="run tables (CSV or JSONL)")
    p.add_argument("--where", help="row filter")
    p.add_argument("-o", "--output", required=True, help="CSV to write ('-' for stdout)")
    p.set_defaults(func=_cmd_predict)


def _cmd_predict(args: argparse.Namespace) -> int:
    from mixsampler.laws.evaluate import predict_table
    from mixsampler.laws.io import load_laws

    out_path = output_file(args.output, "-o", stdout=True)
    fitted = load_laws(args.law_file)
    table = load_table(args.runs, args.where)
    check_table_domains(fitted, table, args.law_file)
    preds = predict_table(fitted, table)
    pred_cols = [pred_column(t) for t in preds]
    columns = list(table.columns) + [c for c in pred_cols if c not in table.columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for i, row in enumerate(table.rows):
        full = {c: row.get(c, "") for c in table.columns}
        for t, col in zip(preds, pred_cols, strict=True):
            full[col] = repr(float(preds[t][i]))
        writer.writerow(full)
    if out_path is None:
        sys.stdout.write(buf.getvalue())
        return 0
    # Written whole and then renamed: a crash never leaves half a table behind.
    atomic_write(out_path, buf.getvalue())
    print(f"wrote {len(table)} rows with {', '.join(pred_cols)} to {args.output}")
    return 0
