"""The ``optimize`` verb: the weights minimising predicted loss at (N, D), as WEIGHTS.json."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING, Any

from mixsampler.laws.commands.args import number, output_file, pairs, scalar_or_pairs
from mixsampler.laws.weightsfile import WeightsFile, write_weights

if TYPE_CHECKING:
    from mixsampler.laws.decision import Decision
    from mixsampler.laws.fitted import FittedLaw

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``optimize`` verb to the ``mixsampler`` parser."""
    p = subparsers.add_parser(
        "optimize",
        help="optimal domain weights for a run of size N, D, and how sure the law is",
        description=(
            "Checks the law (refuses an unconverged or untrusted one), finds the weights "
            "minimizing the predicted loss inside the trust region, and states the gain over "
            "uniform, the natural mixture and the best fitting run against the law's held-out "
            "error. Default objective: the mean loss over the TRAINING domains (held-out "
            "targets only when named in --objective)."
        ),
    )
    p.add_argument("law_file", help="LAW.json")
    p.add_argument("--model-size", required=True, help="N, e.g. 7e9")
    p.add_argument(
        "--tokens", required=True, help="D, e.g. 1.5e11 (samples if the runs count samples)"
    )
    p.add_argument(
        "--objective",
        help='target weights t1=w1,t2=w2, or JSON {"t=1": 1} for names with = or , '
        "(default: the training domains equally)",
    )
    p.add_argument(
        "--min-weight",
        action="append",
        help='minimum weight: X for all domains, d=x, or JSON {"d": x}',
    )
    p.add_argument("--max-weight", action="append", help="maximum weight d=x (repeatable)")
    p.add_argument("--available", action="append", help="tokens a domain has, d=TOKENS")
    p.add_argument("--max-repeat", action="append", help="repetitions allowed: R for all, or d=R")
    p.add_argument(
        "--natural",
        action="append",
        help="the natural mixture as d=size,... (tokens per domain), compared with the optimum",
    )
    p.add_argument(
        "--trust-region",
        choices=("range", "none"),
        default="range",
        help="range (default): each weight within the fitting runs' range +- --trust-margin; "
        "none: the whole simplex (extrapolated mixtures)",
    )
    p.add_argument(
        "--trust-margin",
        type=float,
        default=0.05,
        help="how far past the fitting range a weight may go (default 0.05)",
    )
    p.add_argument("--n-starts", type=int, default=64, help="random starts (default 64)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random starts")
    p.add_argument("--max-iter", type=int, default=3000, help="iterations per start (default 3000)")
    p.add_argument(
        "--allow-unconverged",
        action="store_true",
        help="write the weights even when the optimum is not certified (WEIGHTS.json says so)",
    )
    p.add_argument(
        "--allow-untrusted-law",
        action="store_true",
        help="decide with a law that did not converge, was fitted on runs that never learned, "
        "or fails its held-out checks (the reasons are written to WEIGHTS.json)",
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


def _json_or(
    items: list[str] | None, what: str, names: Any, *, scalar: bool = False
) -> float | dict[str, float] | None:
    """``d=x`` pairs (see :func:`pairs`), one number when ``scalar``, or a JSON object
    ``{"name": x}`` for names holding ``=`` or ``,``."""
    import json
    import math

    if not items:
        return None
    if len(items) == 1 and items[0].lstrip().startswith("{"):
        try:
            obj = json.loads(items[0])
        except json.JSONDecodeError as e:
            raise ValueError(f"{what}: not a JSON object ({e.msg}): {items[0]!r}") from None
        if not isinstance(obj, dict):
            raise ValueError(f"{what} must be a JSON object of name: number, got {items[0]!r}")
        out = {}
        for k, v in obj.items():
            if k not in names:
                raise ValueError(f"{what} names {k!r}, which is not one of {', '.join(names)}")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"{what}: the value of {k!r} must be a finite number, got {v!r}")
            out[str(k)] = float(v)
        return out
    if scalar:
        return scalar_or_pairs(items, what, names=names)
    return pairs(items, what, names=names)


def _unit(fitted: dict[str, FittedLaw]) -> str:
    """What D counts: ``samples`` when the run table said so (its ``n_tokens_unit``)."""
    for law in fitted.values():
        ev = law.evidence or {}
        unit = law.fit.get("n_tokens_unit") or ev.get("n_tokens_unit")
        if isinstance(unit, str) and unit:
            return unit
    return "tokens"


def _cmd_optimize(args: argparse.Namespace) -> int:
    from mixsampler.laws.decision import UnconvergedOptimumError, UntrustedLawError, decide
    from mixsampler.laws.io import load_laws

    if (args.bootstrap is None) != (not args.runs):
        given, missing = (
            ("--bootstrap", "--runs") if args.runs is None else ("--runs", "--bootstrap")
        )
        raise ValueError(f"--bootstrap and --runs go together: got {given} without {missing}")
    from mixsampler.laws.bootstrap import MAX_BOOT

    if args.bootstrap is not None and args.bootstrap < 2:
        raise ValueError(f"--bootstrap must be >= 2 resamples, got {args.bootstrap}")
    if args.bootstrap is not None and args.bootstrap > MAX_BOOT:
        raise ValueError(
            f"--bootstrap must be at most {MAX_BOOT:,} resamples (each is a refit), got "
            f"{args.bootstrap}"
        )
    if not 0 < args.confidence < 1:
        raise ValueError(f"--confidence must be in (0, 1), got {args.confidence}")
    if args.n_starts < 1:
        raise ValueError(f"--n-starts must be >= 1, got {args.n_starts}")
    output_file(args.output, "-o")  # a bad -o fails before the work, not after it
    fitted = load_laws(args.law_file)
    domains = next(iter(fitted.values())).domains
    objective = _json_or([args.objective] if args.objective else None, "--objective", fitted)
    min_w = _json_or(args.min_weight, "--min-weight", domains, scalar=True)
    max_repeat = scalar_or_pairs(args.max_repeat, "--max-repeat")
    natural = pairs(args.natural, "--natural", names=domains) or None
    opt_kwargs: dict[str, Any] = {
        "model_size": number(args.model_size, "--model-size"),
        "n_tokens": number(args.tokens, "--tokens"),
        "min_weight": 0.0 if min_w is None else min_w,
        "max_weight": pairs(args.max_weight, "--max-weight", names=domains) or None,
        "available": pairs(args.available, "--available", names=domains) or None,
        "max_repeat": 1.0 if max_repeat is None else max_repeat,
        "trust_region": args.trust_region,
        "trust_margin": args.trust_margin,
        "seed": args.seed,
        "n_starts": args.n_starts,
        "max_iter": args.max_iter,
    }
    try:
        dec = decide(
            fitted,
            objective=objective,
            natural=natural,
            allow_untrusted_law=args.allow_untrusted_law,
            allow_unconverged=args.allow_unconverged,
            where=str(args.law_file),
            **opt_kwargs,
        )
    except (UntrustedLawError, UnconvergedOptimumError) as e:
        # One line, no file: a user must not train on weights nobody certified.
        sys.stderr.write(f"mixsampler optimize: weights not written: {e}\n")
        return 1
    res = dec.result
    for w in res.warnings:
        log.warning("law warning: %s", w)
    if not res.success:
        log.warning("writing unconverged weights (--allow-unconverged): %s", res.message)
    opt_kwargs["objective"] = dict(res.objective)
    iv = _intervals(args, fitted, dec, opt_kwargs) if args.bootstrap is not None else None
    wf = WeightsFile.from_result(
        res,
        law_file=str(args.law_file),
        intervals=iv,
        search=res.search_record(),
        trust_region=dict(res.trust_region),
        decision=dec.to_json(),
        n_tokens_unit=_unit(fitted),
    )
    write_weights(args.output, wf)
    width = max(len(d) for d in res.weights)
    for d, w in res.weights.items():
        band = ""
        if iv:
            lo, hi = iv["weights"][d]
            band = f"  [{lo * 100:6.2f}, {hi * 100:6.2f}]"
        print(f"{d:<{width}} {w * 100:7.2f} %{band}")
    print(f"for N = {res.model_size:.4g} parameters, D = {res.n_tokens:.4g} {_unit(fitted)}")
    for t, v in res.predicted_loss.items():
        band = ""
        if iv:
            lo, hi = iv["predicted_loss"][t]
            band = f"  [{lo:.4f}, {hi:.4f}]"
        print(f"predicted {t}_loss = {v:.4f}{band}")
    for line in dec.statement():
        print(line)
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
    dec: Decision,
    opt_kwargs: dict[str, Any],
) -> dict[str, Any]:
    """Bootstrap the laws of LAW.json over the runs of ``--runs``: the ``intervals`` entry.

    Each resample refits the same law with the settings and seed LAW.json records, then
    re-optimizes under the same constraints. The weight interval is over the resamples'
    optimal weights; the loss interval is over the resamples' predictions at the weights
    written to WEIGHTS.json (the mixture a user would train with); the gain interval per
    baseline is over the resamples' predicted gain of those weights over it. Percentiles are
    :class:`BootstrapResult`'s, over the converged replicates.
    """
    import dataclasses

    import numpy as np

    from mixsampler.laws.bootstrap import bootstrap
    from mixsampler.laws.fit import FitSettings
    from mixsampler.laws.runtable import load_runs

    res = dec.result
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
    # Row 0: the chosen weights; then one row per baseline, for the gain intervals.
    rows = [[res.weights[d] for d in table.domains]]
    rows += [[b["weights"][d] for d in table.domains] for b in dec.baselines.values()]
    boot = bootstrap(
        table,
        next(iter(names.values())),
        list(fitted),
        n_boot=args.bootstrap,
        seed=int(first.get("seed", 0)),
        predict_at=(res.model_size, res.n_tokens, np.array(rows)),
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
    n_ok = int(np.asarray(boot.converged, dtype=bool).sum())
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
    pred = boot.prediction_interval()
    obj = {t: w for t, w in res.objective.items() if w}
    total = sum(obj.values())
    # Objective value of each replicate at each row: (B, rows).
    value = sum((w / total) * boot.predictions[t] for t, w in obj.items())
    gains = {}
    for i, name in enumerate(dec.baselines, start=1):
        lo, hi = boot.percentiles(value[:, i] - value[:, 0])
        gains[name] = [float(lo), float(hi)]
        dec.baselines[name]["interval"] = gains[name]
    return {
        "confidence": args.confidence,
        "n_boot": args.bootstrap,
        "n_converged": n_ok,
        "weights": {d: list(v) for d, v in boot.weight_interval().items()},
        "predicted_loss": {t: [float(lo[0]), float(hi[0])] for t, (lo, hi) in pred.items()},
        "predicted_loss_at": "weights",
        "gain": gains,
        "runs": [str(p) for p in args.runs],
    }
