"""The ``optimize`` verb: the weights minimising predicted loss at (N, D), as WEIGHTS.json."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING, Any

from mixsampler.laws.commands.args import number, output_file, pairs, scalar_or_pairs
from mixsampler.laws.weightsfile import WeightsFile, write_weights

if TYPE_CHECKING:
    from mixsampler.laws.fitted import FittedLaw
    from mixsampler.laws.optimize import OptimizeResult

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``optimize`` verb to the ``mixsampler`` parser."""
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
    p.add_argument("--max-iter", type=int, default=3000, help="iterations per start (default 3000)")
    p.add_argument(
        "--allow-unconverged",
        action="store_true",
        help="write the weights even when the optimum is not certified (WEIGHTS.json says so)",
    )
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


def _cmd_optimize(args: argparse.Namespace) -> int:
    from mixsampler.laws.io import load_laws
    from mixsampler.laws.optimize import optimize

    if (args.bootstrap is None) != (not args.runs):
        given, missing = (
            ("--bootstrap", "--runs") if args.runs is None else ("--runs", "--bootstrap")
        )
        raise ValueError(f"--bootstrap and --runs go together: got {given} without {missing}")
    if args.bootstrap is not None and args.bootstrap < 2:
        raise ValueError(f"--bootstrap must be >= 2 resamples, got {args.bootstrap}")
    if not 0 < args.confidence < 1:
        raise ValueError(f"--confidence must be in (0, 1), got {args.confidence}")
    output_file(args.output, "-o")  # a bad -o fails before the work, not after it
    fitted = load_laws(args.law_file)
    domains = next(iter(fitted.values())).domains
    objective = pairs([args.objective], "--objective", names=fitted) if args.objective else None
    min_w = scalar_or_pairs(args.min_weight, "--min-weight")
    max_repeat = scalar_or_pairs(args.max_repeat, "--max-repeat")
    opt_kwargs: dict[str, Any] = {
        "model_size": number(args.model_size, "--model-size"),
        "n_tokens": number(args.tokens, "--tokens"),
        "objective": objective,
        "min_weight": 0.0 if min_w is None else min_w,
        "max_weight": pairs(args.max_weight, "--max-weight", names=domains) or None,
        "available": pairs(args.available, "--available", names=domains) or None,
        "max_repeat": 1.0 if max_repeat is None else max_repeat,
        "seed": args.seed,
        "max_iter": args.max_iter,
    }
    res = optimize(fitted, **opt_kwargs)
    for w in res.warnings:
        log.warning("law warning: %s", w)
    if not res.success:
        if not args.allow_unconverged:
            # One line, no file: a user must not train on weights nobody certified.
            sys.stderr.write(
                f"mixsampler optimize: weights not written, the optimum is not certified "
                f"({res.message}); rerun with a larger --max-iter (now {args.max_iter}), or "
                "pass --allow-unconverged to write them marked success: false\n"
            )
            return 1
        log.warning("writing unconverged weights (--allow-unconverged): %s", res.message)
    iv = _intervals(args, fitted, res, opt_kwargs) if args.bootstrap is not None else None
    wf = WeightsFile.from_result(res, law_file=str(args.law_file), intervals=iv)
    write_weights(args.output, wf)
    width = max(len(d) for d in res.weights)
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

    from mixsampler.laws.bootstrap import bootstrap
    from mixsampler.laws.fit import FitSettings
    from mixsampler.laws.runtable import load_runs

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
    ok = np.asarray(boot.converged, dtype=bool)
    n_ok = int(ok.sum())
    if n_ok < 2:
        raise ValueError(
            f"--bootstrap {args.bootstrap}: only {n_ok} replicates converged (fit and "
            "optimize), too few for an interval; raise --max-iter, check the fit (mixsampler "
            "fit), or give more --runs"
        )
    if n_ok < 0.9 * args.bootstrap:
        log.warning(
            "only %d of %d bootstrap replicates converged; the intervals use those alone and "
            "may be too narrow (the failures are not random)",
            n_ok,
            args.bootstrap,
        )
    # Unconverged replicates (fit or optimum) are left out of the intervals.
    q = (50 * (1 - args.confidence), 100 - 50 * (1 - args.confidence))
    w_ok = np.asarray(boot.optimal_weights)[ok]
    pred = {t: np.asarray(p)[ok][:, 0] for t, p in boot.predictions.items()}
    return {
        "confidence": args.confidence,
        "n_boot": args.bootstrap,
        "n_converged": n_ok,
        "weights": {
            d: [float(v) for v in np.percentile(w_ok[:, i], q)] for i, d in enumerate(boot.domains)
        },
        "predicted_loss": {t: [float(v) for v in np.percentile(p, q)] for t, p in pred.items()},
        "predicted_loss_at": "weights",
        "runs": [str(p) for p in args.runs],
    }
