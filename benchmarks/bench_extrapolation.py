"""How well the laws extrapolate on the public run tables, side by side with today's fits.

Data (not in this repository; pass their paths): ``dmsl_slimpajama.csv``, the table released
with "Scaling Laws for Optimal Data Mixtures" (Shukor et al., 2025, arXiv 2507.09404; Apple's
``ml-scalefit``), and ``regmix_1m.csv``, RegMix's 1M-parameter proxies (Liu et al., 2024;
``sail-sg/regmix``, MIT).

Every extrapolation the tables allow, every law form, every objective, in one run:

- SlimPajama, rows of the paper's fit set (``bench_laws.FIT_SET``, repeated last checkpoints
  dropped), the same rows as ``bench_laws`` section 2 so "today" is comparable:
  ``n``: fit 310M-937M, MRE on 1235M; ``d``: fit the first half of every run's curve, MRE on
  the rest; ``mixture``: 5-fold over mixtures. Laws additive, joint, simple, full.
- RegMix (one N, one D): ``mixture``: fit the ``train-*`` runs, MRE on the ``test-*`` runs
  (RegMix's own split). Laws additive, simple, ye_m1, linear (joint and full reduce to
  additive at one N and D).

"Today" is the paper's objective (``absolute``: Huber(1e-3) on the loss) with the default
search. Each variant (``relative``, ``huber``) is the same search on another objective.
``auto`` chooses the law per target by a held-out check inside the fitting rows only (for
``n``: fit 310M-680M, score 937M) and is then scored on 1235M: an honest estimate of
``fit --law auto``. ``ensemble`` averages the laws' predictions (a cheap stand-in for
averaging near-optimal minima: the forms are such minima of nested models). ``oracle``
takes each target's best law on the test rows: a ceiling no method can claim.

Numbers are MRE in %; ratios are variant / today for the same law (below 1 is better). The
machine may be shared and loaded: only errors are compared here, never times.

Example:
    $ .venv/bin/python benchmarks/bench_extrapolation.py \\
        --slimpajama ../shared/data/dmsl_slimpajama.csv --regmix ../shared/data/regmix_1m.csv \\
        --jobs 2 --out bench_out/extrapolation.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_laws import paper_fit_set  # noqa: E402

from mixsampler.laws import FitSettings, RunTable, load_runs  # noqa: E402
from mixsampler.laws.fit import OBJECTIVES  # noqa: E402
from mixsampler.laws.heldout import FitJob, Split, plan_splits, run_fit_job  # noqa: E402
from mixsampler.laws.parallel import run_jobs  # noqa: E402

SLIM_LAWS = ("additive", "joint", "simple", "full")
REGMIX_LAWS = ("additive", "simple", "ye_m1", "linear")


class Bench:
    """Collects fit jobs (table, split, law, objective, target), runs them in one pool."""

    def __init__(self, seed: int, variants: dict[str, FitSettings]) -> None:
        self.seed = seed
        self.variants = variants
        self.jobs: list[FitJob] = []
        self.keys: list[tuple[str, str, str, str, str, int]] = []
        self.tests: dict[tuple[str, str, str, int], RunTable] = {}
        self.max_n: dict[str, float] = {}

    def add(
        self,
        table_name: str,
        kind: str,
        target: str,
        fit_rows: RunTable,
        test_rows: RunTable,
        laws: tuple[str, ...],
        fold: int = 0,
    ) -> None:
        self.tests[(table_name, kind, target, fold)] = test_rows
        top = float(max(fit_rows.model_size.max(), test_rows.model_size.max()))
        self.max_n[table_name] = max(self.max_n.get(table_name, 0.0), top)
        for law in laws:
            for name, settings in self.variants.items():
                self.jobs.append(FitJob(fit_rows, law, target, self.seed, settings, quiet=True))
                self.keys.append((table_name, kind, target, law, name, fold))

    def run(self, jobs: int) -> dict[tuple[str, str, str, str, str], float]:
        """MRE % per (table, kind, target, law, variant), pooled over folds by row.

        Law ``ensemble``: the mean of the laws' predictions on each test row.
        """
        results = run_jobs(run_fit_job, self.jobs, jobs, desc="extrapolation fits", progress=True)
        preds: dict[tuple[str, str, str, str, str], list[np.ndarray]] = {}
        obs: dict[tuple[str, str, str, str, str], list[np.ndarray]] = {}
        for key, res in zip(self.keys, results, strict=True):
            table_name, kind, target, law, obj, fold = key
            test = self.tests[(table_name, kind, target, fold)]
            y = test.losses[target]
            pred = (
                np.full(len(y), np.nan)
                if isinstance(res, str)
                else res.law.predict(test.model_size, test.n_tokens, test.weights)
            )
            for k in ((table_name, kind, target, law, obj), (table_name, kind, target, "+", obj)):
                preds.setdefault(k, []).append(pred)
                obs.setdefault(k, []).append(y)
            if kind in ("d", "mixture"):
                # The same held-out rows at the table's largest N only: a fit weighted toward
                # large N trades accuracy at small N, where no decision is made.
                top = test.model_size == self.max_n[table_name]
                k = (table_name, f"{kind}@maxN", target, law, obj)
                preds.setdefault(k, []).append(pred[top])
                obs.setdefault(k, []).append(y[top])
        out: dict[tuple[str, str, str, str, str], float] = {}
        for k, ps in preds.items():
            if k[3] == "+":
                continue
            out[k] = _mre_pct(np.concatenate(ps), np.concatenate(obs[k]))
        # Ensemble: the same fold order for every law, so predictions stack row by row.
        for k in {k[:3] + (k[4],) for k in preds}:
            laws = sorted({kk[3] for kk in preds if kk[:3] + (kk[4],) == k and kk[3] != "+"})
            stack = np.stack([np.concatenate(preds[(*k[:3], law, k[3])]) for law in laws])
            y = np.concatenate(obs[(*k[:3], laws[0], k[3])])
            out[(*k[:3], "ensemble", k[3])] = _mre_pct(stack.mean(0), y)
        return out


def _mre_pct(pred: np.ndarray, y: np.ndarray) -> float:
    ok = np.isfinite(y)
    return float(np.mean(np.abs(pred[ok] - y[ok]) / y[ok]) * 100.0)


def _split_rows(table: RunTable, target: str, s: Split) -> tuple[RunTable, RunTable]:
    sub = table.select(np.isfinite(table.losses[target]))
    return sub.select(s.fit_rows), sub.select(s.held_rows)


def plan(args: argparse.Namespace, bench: Bench) -> dict[str, Any]:
    """Queue every fit; returns what the report needs to know about the tables."""
    info: dict[str, Any] = {}
    laws = tuple(args.laws)
    if args.slimpajama:
        _, slim, _ = paper_fit_set(Path(args.slimpajama))
        targets = [t for t in slim.targets if not args.targets or t in args.targets]
        info["slim"] = {"rows": len(slim), "targets": targets}
        n_sets = {"n": slim}
        if "n122" in args.kinds:
            # The paper's fit set plus the 122M runs (first checkpoint dropped, as for 310M).
            _, n_sets["n122"], _ = paper_fit_set(Path(args.slimpajama), with_122m=True)
        for kind, rows in n_sets.items():
            if kind not in args.kinds:
                continue
            train = rows.select(rows.model_size < 1.2e9)
            test = rows.select(rows.model_size >= 1.2e9)
            # For auto and the inner choices: a check inside the fitting rows only (the
            # largest fitted size held out: 310M-680M -> 937M, or 122M-680M -> 937M).
            inner_fit = train.select(train.model_size < 9e8)
            inner_test = train.select(train.model_size >= 9e8)
            for t in targets:
                bench.add("slim", kind, t, train, test, laws)
                bench.add("slim", f"{kind}_inner", t, inner_fit, inner_test, laws)
        for t in targets:
            if "d" in args.kinds:
                for s in plan_splits(slim, t, ("d",), seed=args.seed):
                    bench.add("slim", "d", t, *_split_rows(slim, t, s), laws)
            if "mixture" in args.kinds:
                for s in plan_splits(slim, t, ("mixture",), folds=args.folds, seed=args.seed):
                    fit_rows, held = _split_rows(slim, t, s)
                    bench.add("slim", "mixture", t, fit_rows, held, laws, s.fold)
    if args.regmix:
        reg = load_runs(args.regmix)
        runs = reg.run_ids.astype(str)
        train = reg.select(np.char.startswith(runs, "train-"))
        test = reg.select(np.char.startswith(runs, "test-"))
        info["regmix"] = {
            "train": len(train),
            "test": len(test),
            "targets": [t for t in reg.targets if not args.targets or t in args.targets],
        }
        if "mixture" in args.kinds:
            for t in info["regmix"]["targets"]:
                bench.add("regmix", "mixture", t, train, test, REGMIX_LAWS)
    return info


def _table(
    mres: dict[tuple[str, str, str, str, str], float],
    table_name: str,
    kind: str,
    targets: list[str],
    laws: tuple[str, ...],
    variants: tuple[str, ...],
    extra: dict[str, dict[str, float]] | None = None,
) -> tuple[list[str], dict[str, Any]]:
    head = "| law | variant | mean | x today | " + " | ".join(targets) + " |"
    lines = [head, "|---|---|---|---|" + "---|" * len(targets)]
    summary: dict[str, Any] = {}
    for law in (*laws, "ensemble"):
        base = np.mean([mres[(table_name, kind, t, law, "absolute")] for t in targets])
        for var in variants:
            vals = [mres[(table_name, kind, t, law, var)] for t in targets]
            mean = float(np.mean(vals))
            summary[f"{law}/{var}"] = {
                "mean": mean,
                "per_target": dict(zip(targets, vals, strict=True)),
            }
            ratio = f"{mean / base:.3f}" if var != "absolute" else "1"
            cells = " | ".join(f"{v:.3f}" for v in vals)
            lines.append(f"| {law} | {var} | {mean:.3f} | {ratio} | {cells} |")
    for name, per in (extra or {}).items():
        vals = [per[t] for t in targets]
        mean = float(np.mean(vals))
        summary[name] = {"mean": mean, "per_target": per}
        cells = " | ".join(f"{v:.3f}" for v in vals)
        # The variant is in the name ("auto (relative)"); x today is not defined for it.
        lines.append(f"| {name} | - | {mean:.3f} | | {cells} |")
    return lines, summary


def _inner_choice(
    mres: dict[Any, float], kind: str, targets: list[str], laws: tuple[str, ...], variants
) -> list[str]:
    """Per law: each variant's inner (fitting rows only) and outer N error, and the variant
    the inner check would choose (lowest mean inner MRE over targets) with its outer error."""
    lines = [
        "| law | variant | inner mean (937M) | N mean (1235M) | x today |",
        "|---|---|---|---|---|",
    ]
    for law in laws:
        inner = {
            v: np.mean([mres[("slim", f"{kind}_inner", t, law, v)] for t in targets])
            for v in variants
        }
        outer = {v: np.mean([mres[("slim", kind, t, law, v)] for t in targets]) for v in variants}
        base = outer["absolute"]
        for v in variants:
            lines.append(
                f"| {law} | {v} | {inner[v]:.3f} | {outer[v]:.3f} | {outer[v] / base:.3f} |"
            )
        pick = min(variants, key=lambda v: np.nan_to_num(inner[v], nan=1e9))
        lines.append(
            f"| {law} | **inner choice: {pick}** | {inner[pick]:.3f} | {outer[pick]:.3f} | "
            f"{outer[pick] / base:.3f} |"
        )
    return lines


def report(
    args: argparse.Namespace, info: dict[str, Any], mres: dict[Any, float]
) -> tuple[str, dict]:
    variants = tuple(args.variant_settings)
    laws = tuple(args.laws)
    out: list[str] = [
        f"# Extrapolation of the laws ({datetime.date.today().isoformat()})",
        "",
        "MRE in % on rows the fit did not see; `x today` = mean / the same law's mean with "
        "the paper's absolute objective (below 1 is better). Generated by "
        "`benchmarks/bench_extrapolation.py`; the machine was shared, times not compared.",
        "",
        "Variants: "
        + "; ".join(f"`{k}` = {s.describe()}" for k, s in args.variant_settings.items()),
        "",
    ]
    summary: dict[str, Any] = {"variants": {k: str(v) for k, v in args.variant_settings.items()}}
    if "slim" in info:
        targets = info["slim"]["targets"]
        titles = {
            "n": "SlimPajama, N: fit 310M-937M (the paper's fit set), MRE on 1235M",
            "n122": "SlimPajama, N: fit 122M-937M (the paper's fit set + 122M), MRE on 1235M",
            "d": "SlimPajama, D: fit the first half of every curve, MRE on the rest",
            "mixture": f"SlimPajama, mixtures: {args.folds}-fold, every row held out once",
            "d@maxN": "SlimPajama, D, the held-out rows of the largest size (1235M) only",
            "mixture@maxN": f"SlimPajama, mixtures ({args.folds}-fold), the held-out rows of "
            "the largest size (1235M) only",
        }
        inner_sizes = {"n": "310M-680M", "n122": "122M-680M"}
        for kind in ("n", "n122", "d", "d@maxN", "mixture", "mixture@maxN"):
            if kind.split("@")[0] not in args.kinds:
                continue
            extra: dict[str, dict[str, float]] = {}
            if kind in ("n", "n122"):
                for var in variants:
                    auto, oracle, chosen = {}, {}, {}
                    for t in targets:
                        inner = {law: mres[("slim", f"{kind}_inner", t, law, var)] for law in laws}
                        pick = min(inner, key=lambda law: np.nan_to_num(inner[law], nan=1e9))
                        chosen[t] = pick
                        auto[t] = mres[("slim", kind, t, pick, var)]
                        oracle[t] = min(mres[("slim", kind, t, law, var)] for law in laws)
                    extra[f"auto ({var})"] = auto
                    extra[f"oracle ({var})"] = oracle
                    summary.setdefault(f"auto_choice/{kind}", {})[var] = chosen
            lines, summ = _table(mres, "slim", kind, targets, laws, variants, extra)
            summary[f"slim/{kind}"] = summ
            out += [f"## {titles[kind]}", "", *lines, ""]
            if kind in ("n", "n122"):
                out += [
                    f"auto's choice per target (by the held-out 937M error of a fit on "
                    f"{inner_sizes[kind]}): "
                    + "; ".join(
                        f"{var}: " + ", ".join(f"{t} {law}" for t, law in ch.items())
                        for var, ch in summary[f"auto_choice/{kind}"].items()
                    ),
                    "",
                    f"Variant chosen by the inner check alone (fit {inner_sizes[kind]}, score "
                    "937M; the 1235M rows never enter the choice):",
                    "",
                    *_inner_choice(mres, kind, targets, laws, variants),
                    "",
                ]
    if "regmix" in info:
        targets = info["regmix"]["targets"]
        lines, summ = _table(mres, "regmix", "mixture", targets, REGMIX_LAWS, variants)
        summary["regmix/mixture"] = summ
        out += [
            f"## RegMix 1M, mixtures: fit {info['regmix']['train']} train-* runs, MRE on "
            f"{info['regmix']['test']} test-* runs",
            "",
            *lines,
            "",
        ]
    return "\n".join(out), summary


def parse_variant(text: str) -> tuple[str, FitSettings]:
    """``label:field=value,field=value`` -> (label, FitSettings); values parsed as JSON when
    they can be (numbers), else kept as strings (``objective=relative``)."""
    label, _, spec = text.partition(":")
    kwargs: dict[str, Any] = {}
    for item in filter(None, spec.split(",")):
        key, _, val = item.partition("=")
        try:
            kwargs[key] = json.loads(val)
        except json.JSONDecodeError:
            kwargs[key] = val
    return label, FitSettings(**kwargs)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--slimpajama", help="path of dmsl_slimpajama.csv")
    p.add_argument("--regmix", help="path of regmix_1m.csv")
    p.add_argument("--kinds", nargs="+", default=["n", "n122", "d", "mixture"])
    p.add_argument("--objectives", nargs="+", default=list(OBJECTIVES), choices=OBJECTIVES)
    p.add_argument(
        "--variants",
        nargs="*",
        default=[],
        help="more fit settings to compare, as label:field=value,... (e.g. "
        "size:size_weights=size shrink1:shrink=1,objective=relative)",
    )
    p.add_argument("--laws", nargs="+", default=list(SLIM_LAWS), choices=SLIM_LAWS)
    p.add_argument("--targets", nargs="+", help="only these targets (default: all)")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", default="bench_out/extrapolation.md")
    args = p.parse_args(argv)
    if "absolute" not in args.objectives:
        p.error("--objectives must include absolute (today's fits, the reference)")
    if not (args.slimpajama or args.regmix):
        p.error("pass --slimpajama and/or --regmix")
    args.variant_settings = {o: FitSettings(objective=o) for o in args.objectives}
    for text in args.variants:
        try:
            label, settings = parse_variant(text)
        except (TypeError, ValueError) as err:
            p.error(f"--variants {text!r}: {err}")
        args.variant_settings[label] = settings
    logging.disable(logging.WARNING)
    bench = Bench(args.seed, args.variant_settings)
    info = plan(args, bench)
    print(f"{len(bench.jobs)} fits", flush=True)
    mres = bench.run(args.jobs)
    text, summary = report(args, info, mres)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    out.with_suffix(".json").write_text(json.dumps(summary, indent=1, default=str))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
