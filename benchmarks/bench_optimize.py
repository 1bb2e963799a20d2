"""Benchmark laws.optimize on laws fitted to the paper's public table, against scipy SLSQP.

Data: ``dmsl_slimpajama.csv``, the table released with "Scaling Laws for Optimal Data Mixtures"
(Shukor et al., 2025, arXiv 2507.09404; Apple's ``ml-scalefit``), never copied into the repo.

Fits (seed 0, cached as LAW.json in ``--cache``) the paper's fit set (310M with D > 3B, 680M
and 937M with D > 7B, 1235M with D > 13B; repeated last checkpoints dropped) for each law,
then for every objective (each domain, and the average) at 11 (N, D) points log-spaced from
(1e8, 1e9) to (1e10, 1e12) solves with ``optimize`` and with the reference (SLSQP with the
analytic gradient from 8 starts, same bounds), interleaved, and prints success, both
objectives and their difference. Also: the additive law's h* for the average training loss
beside the paper's Table 15, the joint law's h* at the paper's 7B / 150B-token main run, and
time per solve (ours / reference, measured side by side on this machine).

Example:
    $ .venv/bin/python benchmarks/bench_optimize.py --data ../shared/data/dmsl_slimpajama.csv
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from scipy.optimize import minimize  # noqa: E402

from mixsampler.laws import FittedLaw, fit, load_laws, load_runs, optimize, save_laws  # noqa: E402
from mixsampler.laws.runtable import drop_repeated_checkpoints  # noqa: E402

FIT_SET = (
    "(model_size == 310e6 and n_tokens > 3e9) or (model_size == 680e6 and n_tokens > 7e9)"
    " or (model_size == 937e6 and n_tokens > 7e9) or (model_size == 1235e6 and n_tokens > 13e9)"
)
POINTS = list(zip(np.logspace(8, 10, 11), np.logspace(9, 12, 11), strict=True))
# Paper Table 15: the additive law's optimal mixture for the average training loss, in %.
TABLE15 = {
    "arxiv": 9.6,
    "book": 9.5,
    "c4": 25.1,
    "github": 8.8,
    "commoncrawl": 12.1,
    "stackexchange": 17.9,
    "wikipedia": 17.0,
}
# The paper's main run: 7B parameters (the total count; the table's N is non-embedding),
# 150B tokens.
MAIN_RUN = (7e9, 150e9)


def fitted_laws(data: Path, law: str, cache: Path) -> dict[str, FittedLaw]:
    """The law fitted to every training target of the fit set, from the cache if there."""
    path = cache / f"{law}.LAW.json"
    if path.exists():
        return load_laws(path)
    table, _ = drop_repeated_checkpoints(load_runs(data, where=FIT_SET))
    targets = [t for t in table.targets if t in table.domains]
    out = {t: fit(table, law, t, seed=0).law for t in targets}
    cache.mkdir(parents=True, exist_ok=True)
    save_laws(path, out)
    return out


def reference(laws_: dict[str, FittedLaw], obj: dict[str, float], n: float, d: float) -> float:
    """Best SLSQP optimum over 8 starts on the plain simplex."""
    domains = next(iter(laws_.values())).domains
    k = len(domains)

    def f(h: np.ndarray) -> tuple[float, np.ndarray]:
        v, g = 0.0, np.zeros(k)
        with np.errstate(over="ignore", invalid="ignore"):
            for t, w in obj.items():
                a, b = laws_[t].value_and_grad_h(n, d, h[None])
                v, g = v + w * a[0], g + w * b[0]
        return (v, g) if np.isfinite(v) and np.isfinite(g).all() else (1e300, np.zeros(k))

    rng = np.random.default_rng(0)
    best = np.inf
    for s in [np.full(k, 1 / k), *rng.dirichlet(np.ones(k), 7)]:
        r = minimize(
            f,
            s,
            jac=True,
            method="SLSQP",
            bounds=[(0.0, 1.0)] * k,
            constraints=[{"type": "eq", "fun": lambda h: h.sum() - 1.0}],
            options={"ftol": 1e-15, "maxiter": 1000},
        )
        x = np.clip(r.x, 0.0, 1.0)
        x /= x.sum()
        best = min(best, f(x)[0])
    return best


def table(name: str, laws_: dict[str, FittedLaw]) -> tuple[list[str], float, float, int, int]:
    lines = [
        f"### {name}",
        "",
        "| objective | N | D | success | ours | reference | ours - ref |",
        "|---|---|---|---|---|---|---|",
    ]
    t_us = t_ref = 0.0
    n_ok = n = 0
    for target in [*laws_, "average"]:
        obj = {t: 1 / len(laws_) for t in laws_} if target == "average" else {target: 1.0}
        for n_, d_ in POINTS:
            t0 = time.perf_counter()
            res = optimize(laws_, model_size=n_, n_tokens=d_, objective=obj)
            t1 = time.perf_counter()
            ref = reference(laws_, obj, n_, d_)
            t_us, t_ref = t_us + t1 - t0, t_ref + time.perf_counter() - t1
            n += 1
            n_ok += res.success
            lines.append(
                f"| {target} | {n_:.3g} | {d_:.3g} | {res.success} | {res.fun:.8f} | "
                f"{ref:.8f} | {res.fun - ref:+.1e} |"
            )
    return lines, t_us / n, t_ref / n, n_ok, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, type=Path, help="dmsl_slimpajama.csv")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/opt"), help="LAW.json cache")
    ap.add_argument("--laws", nargs="+", default=["additive", "joint", "simple", "full"])
    args = ap.parse_args()
    summary, details = [], []
    for name in args.laws:
        laws_ = fitted_laws(args.data, name, args.cache)
        lines, t_us, t_ref, n_ok, n = table(name, laws_)
        details += [*lines, ""]
        summary.append(
            f"| {name} | {n_ok}/{n} | {t_us * 1e3:.1f} | {t_ref * 1e3:.1f} | {t_ref / t_us:.1f}x |"
        )
    print("## Summary: certified optima, time per solve (ms)\n")
    print("| law | success | ours ms | reference ms | speed-up |\n|---|---|---|---|---|")
    print("\n".join(summary))
    if "additive" in args.laws:
        add = fitted_laws(args.data, "additive", args.cache)
        res = optimize(add, model_size=POINTS[5][0], n_tokens=POINTS[5][1])
        print("\n## Additive law, average training loss, vs the paper's Table 15 (%)\n")
        print(f"(N, D) = ({POINTS[5][0]:.3g}, {POINTS[5][1]:.3g}); {res.message}\n")
        print("| domain | ours | paper |\n|---|---|---|")
        for d, w in res.weights.items():
            print(f"| {d} | {w * 100:.1f} | {TABLE15.get(d, float('nan')):.1f} |")
    if "joint" in args.laws:
        joint = fitted_laws(args.data, "joint", args.cache)
        res = optimize(joint, model_size=MAIN_RUN[0], n_tokens=MAIN_RUN[1])
        print("\n## Joint law, average training loss, at the paper's 7B / 150B main run\n")
        print(
            f"N = 7e9 used as given (the fit's N is the table's non-embedding count); "
            f"{res.message}\n"
        )
        print("| domain | h* % |\n|---|---|")
        for d, w in res.weights.items():
            print(f"| {d} | {w * 100:.1f} |")
    print("\n## Every cell\n")
    print("\n".join(details))


if __name__ == "__main__":
    main()
