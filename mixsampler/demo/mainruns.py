"""Evaluate the main runs against the law and compute the verdict, from the run files.

Example:
    >>> from mixsampler.demo.mainruns import verdict  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from mixsampler.demo.fit import load_rows


def final_rows(table: Any) -> Any:
    """The last validation (most tokens) of every run of a ``laws.RunTable``, one row per run
    in run order: the measured end point of each main run."""
    last: dict[str, int] = {}
    for i, run in enumerate(table.run_ids.tolist()):
        if run not in last or table.n_tokens[i] >= table.n_tokens[last[run]]:
            last[run] = i
    return table.select([last[r] for r in sorted(last)])


def evaluate_main(
    results: Mapping[str, Any], rows: str, fitted: Mapping[str, Any]
) -> dict[str, Any]:
    """Measured final losses of the main runs next to the law's prediction for each.

    Predictions use each run's own recorded N, D and weights (the row, through
    ``laws.predict_table``), not the planned ones.
    """
    import laws

    targets = [*results["domains"], *results["targets"]]
    objectives: Mapping[str, Mapping[str, float]] = results["objectives"]
    final = final_rows(load_rows(rows))
    preds = laws.predict_table(fitted, final)
    meta = {r["name"]: r for r in results["runs"]}
    per_run: dict[str, dict[str, Any]] = {}
    for i, run in enumerate(final.run_ids.tolist()):
        losses = {t: float(final.losses[t][i]) for t in targets}
        pred = {t: float(preds[t][i]) for t in fitted}
        per_run[run] = {
            "mixture": meta[run]["mixture"],
            "seed": meta[run]["seed"],
            "model_size": float(final.model_size[i]),
            "n_tokens": float(final.n_tokens[i]),
            "loss": losses,
            "pred": pred,
            "objective": {
                o: sum(w * losses[t] for t, w in obj.items()) for o, obj in objectives.items()
            },
            "pred_objective": {
                o: sum(w * pred[t] for t, w in obj.items()) for o, obj in objectives.items()
            },
        }
    by_mix: dict[str, dict[str, Any]] = {}
    for mix in results["mixtures"]:
        # In seed order, so seed s of one mixture pairs with seed s of another.
        rs = sorted((r for r in per_run.values() if r["mixture"] == mix), key=lambda r: r["seed"])
        entry: dict[str, Any] = {"seeds": [r["seed"] for r in rs], "objective": {}}
        for o in objectives:
            vals = np.array([r["objective"][o] for r in rs])
            preds = np.array([r["pred_objective"][o] for r in rs])
            entry["objective"][o] = {
                "measured": vals.tolist(),
                "predicted_per_seed": preds.tolist(),
                "mean": float(vals.mean()),
                "spread": float(vals.max() - vals.min()),
                "predicted": float(preds.mean()),
                "rel_error_pct": float(abs(preds.mean() - vals.mean()) / vals.mean() * 100),
                # "every main run within 2 %": the worst seed, not the mean of the seeds.
                "max_rel_error_pct": float(np.max(np.abs(preds - vals) / vals) * 100),
            }
        by_mix[mix] = entry
    return {
        "runs": per_run,
        "mixtures": by_mix,
        "by_tokens": _error_by_tokens(rows, fitted, float(results["proxy_tokens_max"])),
    }


def _error_by_tokens(rows: str, fitted: Mapping[str, Any], d_proxy: float) -> dict[str, Any]:
    """The law's MRE on every main-run validation, split at the proxies' largest D: where it
    only extrapolates in N, and where it extrapolates in N and D."""
    import laws

    table = load_rows(rows)
    errs = []
    for target, pred in laws.predict_table(fitted, table).items():
        obs = table.losses[target]
        errs.append((pred - obs) / obs * 100)
    err = np.stack(errs)  # (targets, rows), signed %
    out: dict[str, Any] = {"proxy_tokens_max": d_proxy}
    for name, sel in (
        ("within", table.n_tokens <= d_proxy * 1.05),
        ("beyond", table.n_tokens > d_proxy * 1.05),
    ):
        e = err[:, sel]
        out[name] = {
            "rows": int(sel.sum()),
            "mre": float(np.nanmean(np.abs(e))) if e.size else math.nan,
            "bias": float(np.nanmean(e)) if e.size else math.nan,
        }
    return out


def verdict(results: Mapping[str, Any]) -> dict[str, Any]:
    """Did each optimized mixture beat uniform and natural on every seed by more than the seed
    spread, and did the law predict every main run within 2 %? Computed from the numbers.

    Seeds are compared pairwise: seed s of every mixture shares its initialisation and its
    data-order seed, so ``base[s] - optimized[s]`` cancels the noise the two runs share. A win
    needs that paired gap above the larger of the two mixtures' seed spreads on every seed.
    """
    by_mix = results["main"]["mixtures"]
    out: dict[str, Any] = {"objectives": {}, "prediction": {}}
    for obj in results["objectives"]:
        opt = by_mix[f"optimized-{obj}"]["objective"][obj]
        comps = {}
        for base in ("uniform", "natural"):
            b = by_mix[base]["objective"][obj]
            paired = [bb - oo for bb, oo in zip(b["measured"], opt["measured"], strict=True)]
            spread = max(b["spread"], opt["spread"])
            comps[base] = {
                "gap": b["mean"] - opt["mean"],
                "paired": paired,
                "min_paired": min(paired),
                "spread": spread,
                "wins": bool(min(paired) > spread),
                "lower_on_every_seed": bool(min(paired) > 0),
                "better_on_average": bool(b["mean"] > opt["mean"]),
            }
        out["objectives"][obj] = {
            "optimized": opt["mean"],
            "vs": comps,
            "wins": all(c["wins"] for c in comps.values()),
        }
    worst = 0.0
    for mix, entry in by_mix.items():
        for obj, e in entry["objective"].items():
            out["prediction"][f"{mix}/{obj}"] = e["max_rel_error_pct"]
            worst = max(worst, e["max_rel_error_pct"])
    out["prediction_worst_pct"] = worst
    out["prediction_within_2pct"] = bool(worst <= 2.0)
    out["all_pass"] = bool(
        all(o["wins"] for o in out["objectives"].values()) and out["prediction_within_2pct"]
    )
    return out
