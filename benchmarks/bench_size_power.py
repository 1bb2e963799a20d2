"""``fit --size-power auto`` on the paper's table: the G it chooses, and how far that fit
extrapolates in N, beside the unweighted fit, in one run.

Rows: the paper's fit set plus its 122M runs (``bench_laws.paper_fit_set(with_122m=True)``;
``auto``'s held-out N check needs 4 sizes: fit 122M-680M, score 937M). The chosen G then
fits 122M-937M and is scored on the 1235M rows, which never enter the choice. Data:
``dmsl_slimpajama.csv``, the table released with Shukor et al. (2025, arXiv 2507.09404).

Example:
    $ .venv/bin/python benchmarks/bench_size_power.py ../shared/data/dmsl_slimpajama.csv \\
        --law additive --objective relative --jobs 2
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_laws import paper_fit_set  # noqa: E402

from mixsampler.laws import FitSettings  # noqa: E402
from mixsampler.laws.heldout import choose_size_power, fit_checked  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("slimpajama", help="path of dmsl_slimpajama.csv")
    p.add_argument("--law", default="additive")
    p.add_argument("--objective", default="relative")
    p.add_argument("--jobs", type=int, default=2)
    args = p.parse_args(argv)
    _, table, _ = paper_fit_set(Path(args.slimpajama), with_122m=True)
    largest = table.model_size.max()
    fit_rows, held = (
        table.select(table.model_size < largest),
        table.select(table.model_size == largest),
    )
    targets = list(table.targets)
    base = FitSettings(objective=args.objective)
    g, why = choose_size_power(fit_rows, [args.law], targets, settings=base, jobs=args.jobs)
    print(f"{args.law}, {args.objective}: inner held-out N MRE % by G (fit 122M-680M, score 937M)")
    for key, m in why["mean_mre"].items():
        print(f"  G={key}: {'-' if m is None else f'{100 * m:.3f}'}")
    print(f"chosen G = {g:g}")
    rows = []
    for label, settings in (
        ("G=0", base),
        (f"auto (G={g:g})", dataclasses.replace(base, size_power=g)),
    ):
        fits = fit_checked(
            fit_rows, [args.law], targets, kinds=(), settings=settings, jobs=args.jobs
        )
        per = {}
        for t in targets:
            law = fits[t].result.law
            pred = law.predict(held.model_size, held.n_tokens, held.weights)
            per[t] = float(np.mean(np.abs(pred - held.losses[t]) / held.losses[t]) * 100)
        rows.append((label, per))
    print(f"\nN extrapolation, fit 122M-937M, MRE % on {largest / 1e6:.0f}M:")
    print("| fit | mean | " + " | ".join(targets) + " |")
    print("|---|---|" + "---|" * len(targets))
    for label, per in rows:
        vals = " | ".join(f"{per[t]:.3f}" for t in targets)
        print(f"| {label} | {np.mean(list(per.values())):.3f} | {vals} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
