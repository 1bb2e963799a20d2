"""The ``fit``, ``predict``, ``optimize`` and ``evaluate`` verbs of ``mixsampler``.

Outputs are files scripts can rely on: LAW.json (fit), a CSV of the input rows plus
``pred_<target>_loss`` columns (predict), WEIGHTS.json (optimize), and an MRE table (evaluate,
JSON with ``-o``). Summaries go to stdout.

Example:
    $ mixsampler fit runs.csv --law joint --target all -o LAW.json
    $ mixsampler optimize LAW.json --model-size 7e9 --tokens 1.5e11 --min-weight 0.01 \\
        -o WEIGHTS.json
    $ mixsampler optimize LAW.json --model-size 7e9 --tokens 1.5e11 --runs runs.csv \\
        --bootstrap 50 --confidence 0.9 -o WEIGHTS.json   # adds "intervals"
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from laws.fitted import FittedLaw
    from laws.optimize import OptimizeResult

log = logging.getLogger(__name__)

_SUFFIX = {"k": 1e3, "K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12}


def _number(text: str, what: str) -> float:
    """Parse ``1.4e9``, ``1.4B``, ``150B`` or ``7e9`` into a float."""
    t = text.strip().replace("_", "")
    mult = 1.0
    if t and t[-1] in _SUFFIX:
        mult, t = _SUFFIX[t[-1]], t[:-1]
    try:
        v = float(t) * mult
    except ValueError:
        raise ValueError(f"{what} must be a number such as 1.4e9 or 1.4B, got {text!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{what} must be finite, got {text!r}")
    return v


def _pairs(items: Sequence[str] | None, what: str) -> dict[str, float]:
    """Parse ``d=x`` items (repeatable, or comma-separated) into a dict."""
    out: dict[str, float] = {}
    for item in items or []:
        for part in item.split(","):
            if not part.strip():
                continue
            if "=" not in part:
                raise ValueError(f"{what} takes name=value, got {part!r}")
            k, v = part.split("=", 1)
            out[k.strip()] = _number(v, f"{what} {k.strip()}")
    return out


def _scalar_or_pairs(items: Sequence[str] | None, what: str) -> float | dict[str, float] | None:
    if not items:
        return None
    if len(items) == 1 and "=" not in items[0]:
        return _number(items[0], what)
    return _pairs(items, what)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the four verbs to the ``mixsampler`` parser."""
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

    p = subparsers.add_parser("predict", help="predict losses of run-table rows")
    p.add_argument("law_file", help="LAW.json")
    p.add_argument("runs", nargs="+", help="run tables (CSV or JSONL)")
    p.add_argument("--where", help="row filter")
    p.add_argument("-o", "--output", required=True, help="CSV to write ('-' for stdout)")
    p.set_defaults(func=_cmd_predict)

    p = subparsers.add_parser("optimize", help="optimal domain weights for a run of size N, D")
    p.add_argument("law_file", help="LAW.json")
    p.add_argument("--model-size", required=True, help="N, e.g. 7e9")
    p.add_argument("--tokens", required=True, help="D, e.g. 1.5e11")
    p.add_argument("--objective", help="target weights t1=w1,t2=w2 (default: all targets equally)")
    p.add_argument(
        "--min-weight", action="append", help="minimum weight: X for all domains, or d=x"
    )
    p.add_argument("--max-weight", action="append", help="maximum weight d=x (repeatable)")
    p.add_argument("--available", action="append", help="tokens a domain has, d=TOKENS")
    p.add_argument("--max-repeat", action="append", help="repetitions allowed: R for all, or d=R")
    p.add_argument("--seed", type=int, default=0, help="seed of the random starts")
    p.add_argument("--runs", nargs="+", help="run tables LAW.json was fitted on (with --bootstrap)")
    p.add_argument(
        "--bootstrap",
        type=int,
        metavar="B",
        help="refit on B resamples of whole runs and add intervals to WEIGHTS.json",
    )
    p.add_argument(
        "--confidence", type=float, default=0.9, help="coverage of the intervals (default 0.9)"
    )
    p.add_argument("-o", "--output", required=True, help="WEIGHTS.json to write")
    p.set_defaults(func=_cmd_optimize)

    p = subparsers.add_parser("evaluate", help="MRE of fitted laws on run tables")
    p.add_argument("law_file", help="LAW.json")
    p.add_argument("runs", nargs="+", help="run tables (CSV or JSONL)")
    p.add_argument("--where", help="row filter")
    p.add_argument("--plot", help="parity plot PNG to write")
    p.add_argument("-o", "--output", help="JSON report to write")
    p.set_defaults(func=_cmd_evaluate)


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
        res.law.fit["where"] = args.where
        fitted[t] = res.law
        rows.append(res)
    save_laws(args.output, fitted)
    print(f"{'target':<16} {'MRE %':>7} {'rows':>6} {'missing':>7} {'seconds':>8}  message")
    for t, r in zip(targets, rows, strict=True):
        print(f"{t:<16} {r.mre:7.3f} {r.n_rows:6d} {r.n_missing:7d} {r.seconds:8.2f}  {r.message}")
    print(f"wrote {args.output}")
    return 0


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


def _cmd_optimize(args: argparse.Namespace) -> int:
    from laws.io import load_laws
    from laws.optimize import optimize

    if (args.bootstrap is None) != (not args.runs):
        given, missing = (
            ("--bootstrap", "--runs") if args.runs is None else ("--runs", "--bootstrap")
        )
        raise ValueError(f"--bootstrap and --runs go together: got {given} without {missing}")
    if args.bootstrap is not None and args.bootstrap < 2:
        raise ValueError(f"--bootstrap must be >= 2 resamples, got {args.bootstrap}")
    if not 0 < args.confidence < 1:
        raise ValueError(f"--confidence must be in (0, 1), got {args.confidence}")
    fitted = load_laws(args.law_file)
    objective = _pairs([args.objective], "--objective") if args.objective else None
    min_w = _scalar_or_pairs(args.min_weight, "--min-weight")
    max_repeat = _scalar_or_pairs(args.max_repeat, "--max-repeat")
    opt_kwargs: dict[str, Any] = {
        "model_size": _number(args.model_size, "--model-size"),
        "n_tokens": _number(args.tokens, "--tokens"),
        "objective": objective,
        "min_weight": 0.0 if min_w is None else min_w,
        "max_weight": _pairs(args.max_weight, "--max-weight") or None,
        "available": _pairs(args.available, "--available") or None,
        "max_repeat": 1.0 if max_repeat is None else max_repeat,
        "seed": args.seed,
    }
    res = optimize(fitted, **opt_kwargs)
    doc: dict[str, Any] = res.to_json()
    doc["law_file"] = str(args.law_file)
    if args.bootstrap is not None:
        doc["intervals"] = _intervals(args, fitted, res, opt_kwargs)
    Path(args.output).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    width = max(len(d) for d in res.weights)
    iv = doc.get("intervals")
    for d, w in res.weights.items():
        band = ""
        if iv:
            lo, hi = iv["weights"][d]
            band = f"  [{lo * 100:6.2f}, {hi * 100:6.2f}]"
        print(f"{d:<{width}} {w * 100:7.2f} %{band}")
    for t, v in res.predicted_loss.items():
        band = ""
        if iv:
            lo, hi = iv["predicted_loss"][t]
            band = f"  [{lo:.4f}, {hi:.4f}]"
        print(f"predicted {t}_loss = {v:.4f}{band}")
    if iv:
        print(
            f"{iv['confidence']:.0%} intervals over {iv['n_boot']} resamples of runs "
            f"({iv['n_converged']} converged)"
        )
    print(f"{res.message}; wrote {args.output}")
    return 0


def _intervals(
    args: argparse.Namespace,
    fitted: dict[str, FittedLaw],
    res: OptimizeResult,
    opt_kwargs: dict[str, Any],
) -> dict[str, Any]:
    """Bootstrap the laws of LAW.json over the runs of ``--runs``: the ``intervals`` entry.

    Each resample refits the same law with the settings and seed LAW.json records, then
    re-optimizes under the same constraints. The weight interval is over the resamples'
    optimal weights; the loss interval is over the resamples' predictions at the weights
    written to WEIGHTS.json (the mixture a user would train with).
    """
    import dataclasses

    import numpy as np

    from laws.bootstrap import bootstrap
    from laws.fit import FitSettings
    from laws.runtable import load_runs

    names = {t: law.law for t, law in fitted.items()}
    if len(set(names.values())) != 1:
        raise ValueError(
            f"--bootstrap refits one law for every target, but {args.law_file} holds "
            + ", ".join(f"{t}: {n}" for t, n in names.items())
        )
    recorded = {t: law.fit for t, law in fitted.items()}
    first = next(iter(recorded.values()))
    for t, rec in recorded.items():
        if (rec.get("settings"), rec.get("seed")) != (first.get("settings"), first.get("seed")):
            raise ValueError(
                f"--bootstrap refits every target with one set of fit settings, but in "
                f"{args.law_file} target {t!r} was fitted with other settings or seed than "
                f"{next(iter(recorded))!r}"
            )
    fields = {f.name for f in dataclasses.fields(FitSettings)}
    settings = FitSettings(
        **{k: v for k, v in (first.get("settings") or {}).items() if k in fields}
    )
    # The rows the laws were fitted on: the same filter as `mixsampler fit --where`.
    table = load_runs(args.runs, where=first.get("where"))
    domains = next(iter(fitted.values())).domains
    if set(table.domains) != set(domains):
        raise ValueError(
            f"--runs {', '.join(args.runs)} have domains {', '.join(table.domains)}, but the "
            f"laws in {args.law_file} are over {', '.join(domains)}"
        )
    h = np.array([res.weights[d] for d in table.domains])
    boot = bootstrap(
        table,
        next(iter(names.values())),
        list(fitted),
        n_boot=args.bootstrap,
        seed=int(first.get("seed", 0)),
        predict_at=(res.model_size, res.n_tokens, h),
        optimize_at=opt_kwargs,
        level=args.confidence,
        settings=settings,
        progress=True,
    )
    for t, r in boot.full.items():
        if fitted[t].fingerprint and r.law.fingerprint != fitted[t].fingerprint:
            log.warning(
                "%s: the rows of --runs differ from those %s was fitted on; the intervals "
                "are around a refit on --runs",
                t,
                args.law_file,
            )
    pred = boot.prediction_interval()
    return {
        "confidence": args.confidence,
        "n_boot": args.bootstrap,
        "n_converged": int(boot.converged.sum()),
        "weights": {d: [lo, hi] for d, (lo, hi) in boot.weight_interval().items()},
        "predicted_loss": {t: [float(lo[0]), float(hi[0])] for t, (lo, hi) in pred.items()},
        "predicted_loss_at": "weights",
        "runs": [str(p) for p in args.runs],
    }


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
