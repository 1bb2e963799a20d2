"""The demo's report: ``report.md`` with its tables, four figures, and a terminal summary.

Every number comes from the results dict that :func:`mixsampler.demo.pipeline.run_demo`
computed from the run files; the verdict is computed, never written by hand.

Example:
    >>> write_report(results, Path("demo_out"))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

BASELINES: tuple[str, ...] = ("uniform", "natural")
_MIX_COLORS = {
    "optimized-avg": "tab:green",
    "optimized-target": "tab:purple",
    "uniform": "tab:gray",
    "natural": "tab:orange",
}


def _fmt_bytes(n: float | None) -> str:
    if n is None:
        return "n/a"
    for unit, scale in (("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"


def _fmt_int(n: float) -> str:
    return f"{int(round(n)):,d}"


def objective_label(results: Mapping[str, Any], obj: str) -> str:
    """Words for an objective: 'avg' is the mean over training domains, 'target' the
    held-out target(s)."""
    if obj == "avg":
        return "average loss over the training domains"
    return "held-out target " + ", ".join(results["targets"])


# --------------------------------------------------------------------------- tables


def _verdict_lines(results: Mapping[str, Any]) -> list[str]:
    v = results["verdict"]
    lines = []
    for obj, o in v["objectives"].items():
        label = objective_label(results, obj)
        parts = []
        for base, c in o["vs"].items():
            paired = ", ".join(f"{g:+.4f}" for g in c["paired"])
            if c["wins"]:
                parts.append(
                    f"beats {base} on every seed by at least {c['min_paired']:.4f} nats/byte "
                    f"(seed by seed {paired}), more than the seed spread ({c['spread']:.4f})"
                )
            elif c["lower_on_every_seed"]:
                parts.append(
                    f"is lower than {base} on every seed (seed by seed {paired}), but NOT by "
                    f"more than the seed spread ({c['spread']:.4f}) on each: not a "
                    "demonstrated win"
                )
            elif c["better_on_average"]:
                parts.append(
                    f"is lower than {base} by {c['gap']:.4f} on average but NOT on every seed "
                    f"(seed by seed {paired}; spread {c['spread']:.4f})"
                )
            else:
                parts.append(
                    f"does NOT beat {base}: it is {-c['gap']:.4f} higher on average (seed by "
                    f"seed {paired}; spread {c['spread']:.4f})"
                )
        status = "PASS" if o["wins"] else "FAIL"
        lines.append(f"- **{status}**: optimized-{obj} on the {label} " + "; ".join(parts) + ".")
    w = v["prediction_worst_pct"]
    status = "PASS" if v["prediction_within_2pct"] else "FAIL"
    worst_key = max(v["prediction"], key=v["prediction"].get) if v["prediction"] else "n/a"
    lines.append(
        f"- **{status}**: the law's prediction of the main runs is within {w:.2f}% of measured "
        f"for every run ({worst_key} the worst seed); the target is 2%."
    )
    return lines


def _reading_lines(results: Mapping[str, Any]) -> list[str]:
    """Facts computed from the main runs that explain the verdict: paired seeds, the law's
    common offset, and whether it ranks the mixtures in the measured order."""
    by_mix = results["main"]["mixtures"]
    lines = []
    for obj in results["objectives"]:
        opt = by_mix[f"optimized-{obj}"]["objective"][obj]["measured"]
        for base in BASELINES:
            other = by_mix[base]["objective"][obj]["measured"]
            diffs = [o - b for o, b in zip(opt, other, strict=True)]
            lower = sum(d < 0 for d in diffs)
            lines.append(
                f"- {obj}: optimized-{obj} minus {base}, seed by seed (same seed = same "
                f"initialisation and data order): {', '.join(f'{d:+.4f}' for d in diffs)}; "
                f"lower on {lower} of {len(diffs)} seeds."
            )
    for obj in results["objectives"]:
        mixes = list(by_mix)
        meas = [by_mix[m]["objective"][obj]["mean"] for m in mixes]
        pred = [by_mix[m]["objective"][obj]["predicted"] for m in mixes]
        signed = [(p - m) / m * 100 for p, m in zip(pred, meas, strict=True)]
        order_m = [mixes[i] for i in np.argsort(meas)]
        order_p = [mixes[i] for i in np.argsort(pred)]
        same = (
            "the measured order"
            if order_m == order_p
            else "an order different from the measured one"
        )
        lines.append(
            f"- {obj}: the law's predictions are off by {min(signed):+.2f}% to "
            f"{max(signed):+.2f}% (predicted minus measured); it ranks the mixtures in {same} "
            f"(measured best to worst: {', '.join(order_m)}; predicted: "
            f"{', '.join(order_p)})."
        )
    for obj in results["objectives"]:
        opt = by_mix[f"optimized-{obj}"]["objective"][obj]
        for base in BASELINES:
            other = by_mix[base]["objective"][obj]
            predicted_gain = other["predicted"] - opt["predicted"]
            noise = max(other["spread"], opt["spread"])
            if predicted_gain <= noise:
                lines.append(
                    f"- {obj}: the law itself predicted optimized-{obj} to beat {base} by only "
                    f"{predicted_gain:+.4f}, not more than the seed spread ({noise:.4f}): "
                    "a gain that small cannot be told from seed noise at this size."
                )
    bt = results["main"].get("by_tokens")
    if bt:
        d = _fmt_int(bt["proxy_tokens_max"])
        w, b = bt["within"], bt["beyond"]
        line = (
            f"- On every main-run validation up to D = {d} (the proxies' longest run; only N is "
            f"extrapolated) the law's MRE is {w['mre']:.2f}% (mean signed error "
            f"{w['bias']:+.2f}%, {w['rows']} validations)"
        )
        if b["rows"]:
            line += (
                f"; beyond it (N and D extrapolated) {b['mre']:.2f}% ({b['bias']:+.2f}%, "
                f"{b['rows']} validations)"
            )
        lines.append(line + ".")
        if b["rows"] and b["mre"] > 2 * w["mre"] and b["bias"] > 0:
            lines.append(
                "- The main runs' loss keeps falling faster with D than the power law fitted "
                "on the proxies: the law over-predicts more the further it extrapolates in D. "
                "The proxies' curves have not reached the regime where L(D) bends like "
                "E + B/D^beta, so their fit cannot foresee the main runs' later drop."
            )
    for law, rep in results["laws"].items():
        bias_d = float(np.mean(list(rep["heldout_d_bias"].values())))
        lines.append(
            f"- Extrapolation in D on the proxies themselves ({law} law fitted on D <= "
            f"{_fmt_int(rep['d_half'])}, scored on the rest, up to 2x D): MRE "
            f"{np.mean(list(rep['heldout_d_mre'].values())):.2f}%, mean signed error "
            f"{bias_d:+.2f}%"
            + (" (too high: the curves fall faster than E + B/D^beta)." if bias_d > 1 else ".")
        )
    return lines


def _data_table(results: Mapping[str, Any]) -> list[str]:
    data = results["data"]
    natural = results["mixtures"]["natural"]["weights"]
    lines = [
        "| domain | role | source | documents train / val | train text | val text | "
        "available | natural weight | sha256 train / val |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, d in data["domains"].items():
        role = "training" if d["train"] else "held-out target"
        nat = f"{natural[name]:.3f}" if name in natural else "-"
        lines.append(
            f"| {name} | {role} | {d['source']} | {len(d['train_docs'])} / {len(d['val_docs'])} "
            f"| {_fmt_bytes(d['train_bytes'])} | {_fmt_bytes(d['val_bytes'])} | "
            f"{_fmt_bytes(d.get('available_bytes'))} | {nat} | "
            f"{(d.get('train_sha256') or '-')[:12]} / {(d.get('val_sha256') or '-')[:12]} |"
        )
    return lines


def _why_domains(results: Mapping[str, Any]) -> list[str]:
    """Why these objectives, with the natural mixture's largest share computed, not assumed."""
    natural = results["mixtures"]["natural"]["weights"]
    big = max(natural, key=natural.get)
    return [
        "Why these objectives (fixed before any run): the held-out target is text no run "
        "trains on, as the paper's OpenHermes, so only transfer can lower it; the average over "
        f"the training domains is taken where the natural mixture is dominated by one large "
        f"domain ({big}: {natural[big]:.0%} of the training text, as CommonCrawl's 52 % of "
        "SlimPajama). With the embedded data that is torch's C++ headers, the largest source "
        "by far and mostly boilerplate (licence headers, includes, macros): plentiful, "
        "low-value text, so training on the natural mixture is the mistake a user would make "
        "by default."
    ]


def _fingerprint_lines(results: Mapping[str, Any]) -> list[str]:
    """Two reports with the same fingerprints trained on the same bytes with the same
    mixtures; a difference in the weights' fingerprint explains a difference in sample order."""
    mixes = results["mixtures"]
    return [
        f"Fingerprints: data `{results['data'].get('fingerprint', '-')}`; weights "
        + ", ".join(f"{m} `{mixes[m].get('fingerprint', '-')}`" for m in mixes)
        + " (SHA-256 of the bytes, and of the weights as exact JSON)."
    ]


def _fit_table(results: Mapping[str, Any]) -> list[str]:
    targets = [*results["domains"], *results["targets"]]
    lines = [
        "| law | target | MRE % proxy (fit on all) | MRE % held-out scale (fit on N < "
        f"{_fmt_int(results['proxy_sizes'][-1])}, evaluated at N = "
        f"{_fmt_int(results['proxy_sizes'][-1])}) | MRE % held-out D (fit on D <= "
        f"{_fmt_int(next(iter(results['laws'].values()))['d_half'])}, evaluated beyond; mean "
        "signed error) | fit converged |",
        "|---|---|---|---|---|---|",
    ]
    for law, rep in results["laws"].items():
        for t in targets:
            conv = []
            for label, key in (("all", "fit"), ("held-out", "heldout_fit")):
                f = rep[key][t]
                conv.append(f"{label}: " + ("yes" if f["success"] else f"no ({f['message']})"))
            lines.append(
                f"| {law} | {t} | {rep['train_mre'][t]:.3f} | {rep['heldout_mre'][t]:.3f} | "
                f"{rep['heldout_d_mre'][t]:.3f} ({rep['heldout_d_bias'][t]:+.2f}) | "
                f"{'; '.join(conv)} |"
            )
        lines.append(
            f"| {law} | **mean** | {np.mean([rep['train_mre'][t] for t in targets]):.3f} | "
            f"{np.mean([rep['heldout_mre'][t] for t in targets]):.3f} | "
            f"{np.mean([rep['heldout_d_mre'][t] for t in targets]):.3f} "
            f"({np.mean([rep['heldout_d_bias'][t] for t in targets]):+.2f}) | |"
        )
    return lines


def _weights_table(results: Mapping[str, Any]) -> list[str]:
    mixes = list(results["mixtures"])
    lines = ["| domain | " + " | ".join(mixes) + " |", "|---" * (len(mixes) + 1) + "|"]
    for d in results["domains"]:
        cells = [f"{results['mixtures'][m]['weights'][d]:.3f}" for m in mixes]
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    return lines


def _main_table(results: Mapping[str, Any]) -> list[str]:
    lines = [
        "| objective | mixture | measured per seed | mean | spread (max - min) | "
        "predicted | worst seed's prediction error % |",
        "|---|---|---|---|---|---|---|",
    ]
    for obj in results["objectives"]:
        for mix, entry in results["main"]["mixtures"].items():
            e = entry["objective"][obj]
            seeds = ", ".join(f"{x:.4f}" for x in e["measured"])
            lines.append(
                f"| {obj} | {mix} | {seeds} | {e['mean']:.4f} | {e['spread']:.4f} | "
                f"{e['predicted']:.4f} | {e['max_rel_error_pct']:.2f} |"
            )
    return lines


def _per_domain_table(results: Mapping[str, Any]) -> list[str]:
    cols = [*results["domains"], *results["targets"]]
    lines = ["| run | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for run, r in results["main"]["runs"].items():
        cells = [f"{r['loss'][c]:.4f} ({r['pred'][c]:.4f})" for c in cols]
        lines.append(f"| {run} | " + " | ".join(cells) + " |")
    return lines


def _commands(results: Mapping[str, Any], out: Path) -> list[str]:
    proxy = results["files"]["proxy_rows"]
    n_max = _fmt_sci(results["proxy_sizes"][-1])
    lines = ["```"]
    for law in results["laws"]:
        lines.append(f"mixsampler fit {proxy} --law {law} --target all -o {out}/laws/{law}.json")
        lines.append(
            f'mixsampler fit {proxy} --law {law} --target all --where "model_size < {n_max}" '
            f"-o {out}/laws/{law}.heldout.json"
        )
        lines.append(
            f"mixsampler evaluate {out}/laws/{law}.heldout.json {proxy} "
            f'--where "model_size >= {n_max}"'
        )
    chosen = results["chosen_law"]
    n, d = results["main_model_size"], results["config"]["main_tokens"]
    mw = results["config"]["min_weight"]
    avail = " ".join(
        f"--available {dom}={results['data']['domains'][dom]['train_bytes']}"
        for dom in results["domains"]
    )
    rep = results["config"]["max_repeat"]
    for obj, objective in results["objectives"].items():
        spec = ",".join(f"{t}={w:.6g}" for t, w in objective.items())
        lines.append(
            f"mixsampler optimize {out}/laws/{chosen}.json --model-size {n} --tokens {d} "
            f"--objective {spec} --min-weight {mw} {avail} --max-repeat {rep} "
            f"-o {out}/weights/optimized-{obj}.json"
        )
    lines.append(f"mixsampler evaluate {out}/laws/{chosen}.json {results['files']['main_rows']}")
    lines.append("```")
    return lines


def _fmt_sci(x: float) -> str:
    return f"{float(x):.6g}"


def render_markdown(results: Mapping[str, Any], out: Path) -> str:
    """The text of report.md."""
    cfg = results["config"]
    t = results["timings"]
    v = results["verdict"]
    sizes = ", ".join(_fmt_int(n) for n in results["proxy_sizes"])
    n_proxy = sum(1 for r in results["runs"] if r["stage"] == "proxy")
    n_main = sum(1 for r in results["runs"] if r["stage"] == "main")
    lines = [
        "# mixsampler demo report",
        "",
        f"Proxy sweep of {n_proxy} runs -> {', '.join(results['laws'])} laws -> optimized "
        f"mixtures -> {n_main} main runs, on {results['data']['origin']} data, device "
        f"{results['device']}, {results.get('jobs', 1)} run(s) side by side with "
        f"{results['threads']} thread(s) each, in "
        f"{t.get('total', t.get('total_before_report', math.nan)):.0f} s. Losses are in nats "
        "per byte (byte-level models, vocabulary 256).",
        "",
        *_fingerprint_lines(results),
        "",
        "## Verdict",
        "",
        *_verdict_lines(results),
        "",
        ("All criteria met." if v["all_pass"] else "Not every criterion is met; see above."),
        "",
        "What the main runs show beyond the verdict:",
        "",
        *_reading_lines(results),
        "",
        "## Data",
        "",
        f"Origin: {results['data']['origin']}. Training text is split from validation text by "
        "document (no validation document is ever trained on); the held-out target is only "
        "evaluated, never trained on. The natural mixture is proportional to each training "
        "domain's training text.",
        "",
        *_data_table(results),
        "",
        *_why_domains(results),
        "",
        "## Proxy sweep",
        "",
        f"{cfg['n_mixtures']} mixtures (the paper's evenly spaced simplex grid, minimum weight "
        f"{cfg['min_weight']}) x {len(results['proxy_sizes'])} model sizes (non-embedding N = "
        f"{sizes}; width {', '.join(map(str, cfg['proxy_widths']))}, {cfg['n_layer']} layers) at "
        f"{_fmt_int(cfg['proxy_tokens'])} tokens each, constant learning rate {cfg['lr']} after "
        f"{cfg['warmup_steps']} warm-up steps, {cfg['evals_per_run']} validations per run (each "
        f"one run-table row). Took {t['proxy_sweep']:.0f} s.",
        "",
        "## Fitted laws",
        "",
        "MRE = mean |predicted - measured| / measured. The held-out column is the honest one: "
        "those laws never saw the largest proxy size.",
        "",
        *_fit_table(results),
        "",
        f"Law used for the optimum and the predictions: **{results['chosen_law']}** (lower "
        "held-out-scale MRE).",
        "",
        "## Mixtures of the main runs",
        "",
        f"Optimized at the main runs' N = {_fmt_int(results['main_model_size'])} and D = "
        f"{_fmt_int(cfg['main_tokens'])}, each weight at least {cfg['min_weight']} (the plan's "
        f"minimum: the law saw no mixture below it) and at most {cfg['max_repeat']} epochs of a "
        "domain's text.",
        "",
        *_weights_table(results),
        "",
        "![weights](weights.png)",
        "",
        "## Main runs",
        "",
        f"Width {cfg['main_width']} (N = {_fmt_int(results['main_model_size'])}), "
        f"{_fmt_int(cfg['main_tokens'])} tokens, seeds {', '.join(map(str, cfg['seeds']))}. "
        "Measured = the final validation; predicted = the law at each run's recorded N, D and "
        "weights.",
        "",
        *_main_table(results),
        "",
        "Per domain, measured (predicted), final validation:",
        "",
        *_per_domain_table(results),
        "",
        "![main runs](main_runs.png)",
        "",
        "## Figures",
        "",
        "![parity](parity.png)",
        "",
        "![loss vs tokens](curves.png)",
        "",
        "## The same with the command line",
        "",
        "The demo calls the same functions as these commands (`laws.load_runs`, `laws.fit`, "
        "`laws.save_laws`, `laws.optimize`):",
        "",
        *_commands(results, out),
        "",
        "## Timings (s)",
        "",
        "| stage | seconds |",
        "|---|---|",
        *[f"| {k} | {val:.1f} |" for k, val in t.items()],
        "",
    ]
    return "\n".join(lines)


# -------------------------------------------------------------------------- figures


def _rows(pattern: str) -> Any:
    """Rows of every run-table file matching ``pattern`` (one CSV per run)."""
    import glob

    import laws

    return laws.load_runs(sorted(glob.glob(pattern)))


def _predict(law: Any, table: Any) -> np.ndarray:
    idx = [list(table.domains).index(d) for d in law.domains]
    return law.predict(table.model_size, table.n_tokens, np.asarray(table.weights)[:, idx])


def _objective_series(
    table: Any, fitted: Mapping[str, Any], objective: Mapping[str, float]
) -> tuple[np.ndarray, np.ndarray]:
    meas = sum(w * table.losses[t] for t, w in objective.items())
    pred = sum(w * _predict(fitted[t], table) for t, w in objective.items())
    return np.asarray(meas), np.asarray(pred)


def _pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend: the demo runs headless, in CI and over ssh."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    """Write a figure as PNG and free it (a long demo draws many)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_parity(results: Mapping[str, Any], out: Path) -> Path:
    plt = _pyplot()

    import laws

    proxy = _rows(results["files"]["proxy_rows"])
    main = _rows(results["files"]["main_rows"])
    n_max = results["proxy_sizes"][-1]
    large = proxy.select(np.asarray(proxy.model_size) >= n_max)
    fig, axes = plt.subplots(1, len(results["laws"]), figsize=(5.5 * len(results["laws"]), 5))
    axes = np.atleast_1d(axes)
    targets = [*results["domains"], *results["targets"]]
    for ax, (law, rep) in zip(axes, results["laws"].items(), strict=True):
        full = laws.load_laws(rep["path"])
        held = laws.load_laws(rep["heldout_path"])
        lo, hi = math.inf, -math.inf
        for tbl, fitted, label, color, marker in (
            (proxy, full, "proxy rows (fit)", "lightgray", "."),
            (large, held, f"largest proxy N={_fmt_int(n_max)} (held out)", "tab:blue", "o"),
            (main, full, "main runs (extrapolated)", "tab:red", "^"),
        ):
            xs, ys = [], []
            for t in targets:
                obs = tbl.losses[t]
                ok = np.isfinite(obs)
                xs.append(obs[ok])
                ys.append(_predict(fitted[t], tbl)[ok])
            x, y = np.concatenate(xs), np.concatenate(ys)
            ax.scatter(x, y, s=10 if marker == "." else 18, c=color, marker=marker, label=label)
            lo, hi = min(lo, x.min(), y.min()), max(hi, x.max(), y.max())
        grid = np.linspace(lo, hi, 10)
        ax.plot(grid, grid, "k-", lw=0.8)
        ax.fill_between(grid, grid * 0.98, grid * 1.02, color="k", alpha=0.08, label="+-2%")
        ax.set_xlabel("measured loss (nats/byte)")
        ax.set_ylabel("predicted loss")
        ax.set_title(f"{law} law, all targets")
        ax.legend(fontsize=8)
    return _save(fig, out / "parity.png")


def plot_curves(results: Mapping[str, Any], out: Path) -> Path:
    """Loss vs tokens per mixture with the fitted curves: main runs (top), and the largest
    proxy size against the law fitted without it (bottom)."""
    plt = _pyplot()

    import laws

    chosen = results["chosen_law"]
    fitted = laws.load_laws(results["laws"][chosen]["path"])
    held = laws.load_laws(results["laws"][chosen]["heldout_path"])
    objectives = results["objectives"]
    main = _rows(results["files"]["main_rows"])
    proxy = _rows(results["files"]["proxy_rows"])
    run_mix = {r["name"]: r["mixture"] for r in results["runs"]}
    fig, axes = plt.subplots(2, len(objectives), figsize=(6 * len(objectives), 9), squeeze=False)
    for j, (obj, objective) in enumerate(objectives.items()):
        ax = axes[0, j]
        meas, _ = _objective_series(main, fitted, objective)
        run_ids = np.asarray(main.run_ids)
        for mix in results["mixtures"]:
            color = _MIX_COLORS.get(mix, None)
            sel = np.array([run_mix.get(r) == mix for r in run_ids])
            if not sel.any():
                continue
            ax.scatter(main.n_tokens[sel], meas[sel], s=14, color=color, label=f"{mix} measured")
            d = np.geomspace(main.n_tokens[sel].min(), main.n_tokens[sel].max(), 50)
            w = results["mixtures"][mix]["weights"]
            n = float(main.model_size[sel][0])
            curve = sum(
                wt * fitted[t].predict(n, d, np.array([w[x] for x in fitted[t].domains]))
                for t, wt in objective.items()
            )
            ax.plot(d, curve, color=color, lw=1.2)
        ax.set_xscale("log")
        ax.set_title(f"main runs: {objective_label(results, obj)}", fontsize=9)
        ax.set_xlabel("tokens D")
        ax.set_ylabel("loss (nats/byte); lines: law")
        ax.legend(fontsize=7)

        ax = axes[1, j]
        n_max = results["proxy_sizes"][-1]
        big = proxy.select(np.asarray(proxy.model_size) >= n_max)
        meas, _ = _objective_series(big, held, objective)
        run_ids = np.asarray(big.run_ids)
        cmap = plt.get_cmap("viridis")
        uniq = sorted(set(run_ids.tolist()))
        for i, run in enumerate(uniq):
            sel = run_ids == run
            color = cmap(i / max(1, len(uniq) - 1))
            order = np.argsort(big.n_tokens[sel])
            ax.scatter(big.n_tokens[sel][order], meas[sel][order], s=10, color=color)
            d = np.geomspace(big.n_tokens[sel].min(), big.n_tokens[sel].max(), 50)
            w = np.asarray(big.weights)[sel][0]
            curve = sum(
                wt
                * held[t].predict(
                    n_max, d, w[[list(big.domains).index(x) for x in held[t].domains]]
                )
                for t, wt in objective.items()
            )
            ax.plot(d, curve, color=color, lw=1)
        ax.set_xscale("log")
        ax.set_title(
            f"largest proxy (N={_fmt_int(n_max)}), one color per mixture;\n"
            f"lines: {chosen} law fitted without this size",
            fontsize=9,
        )
        ax.set_xlabel("tokens D")
        ax.set_ylabel("loss (nats/byte)")
    return _save(fig, out / "curves.png")


def plot_weights(results: Mapping[str, Any], out: Path) -> Path:
    plt = _pyplot()

    domains = results["domains"]
    mixes = list(results["mixtures"])
    x = np.arange(len(domains))
    width = 0.8 / len(mixes)
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, mix in enumerate(mixes):
        w = [results["mixtures"][mix]["weights"][d] for d in domains]
        ax.bar(
            x + (i - (len(mixes) - 1) / 2) * width, w, width, label=mix, color=_MIX_COLORS.get(mix)
        )
    ax.set_xticks(x, domains)
    ax.set_ylabel("weight")
    ax.set_title("main-run mixtures")
    ax.legend(fontsize=8)
    return _save(fig, out / "weights.png")


def plot_main(results: Mapping[str, Any], out: Path) -> Path:
    plt = _pyplot()

    objectives = list(results["objectives"])
    mixes = list(results["mixtures"])
    fig, axes = plt.subplots(1, len(objectives), figsize=(5.5 * len(objectives), 4.2))
    axes = np.atleast_1d(axes)
    for ax, obj in zip(axes, objectives, strict=True):
        for i, mix in enumerate(mixes):
            e = results["main"]["mixtures"][mix]["objective"][obj]
            color = _MIX_COLORS.get(mix)
            ax.scatter([i] * len(e["measured"]), e["measured"], color=color, s=25, zorder=3)
            ax.errorbar(
                i,
                e["mean"],
                yerr=[[e["mean"] - min(e["measured"])], [max(e["measured"]) - e["mean"]]],
                color=color,
                capsize=6,
                lw=2,
            )
            ax.scatter(
                [i + 0.2],
                [e["predicted"]],
                marker="x",
                color="k",
                s=30,
                zorder=3,
                label="law's prediction" if i == 0 else None,
            )
        ax.set_xticks(range(len(mixes)), mixes, rotation=15, fontsize=8)
        ax.set_ylabel("final validation loss (nats/byte)")
        ax.set_title(objective_label(results, obj), fontsize=9)
        ax.legend(fontsize=8)
    fig.suptitle("main runs: each dot one seed, bar = spread over seeds", fontsize=10)
    return _save(fig, out / "main_runs.png")


def write_report(results: Mapping[str, Any], out: Path) -> Path:
    """Write the figures and report.md under ``out``; returns the report's path."""
    for plot in (plot_parity, plot_curves, plot_weights, plot_main):
        try:
            plot(results, out)
        except Exception as err:  # a figure must never cost the user the report's numbers
            log.warning("could not draw %s: %s", plot.__name__, err)
    path = out / "report.md"
    path.write_text(render_markdown(results, out))
    return path


def summary(results: Mapping[str, Any], out: Path) -> str:
    """The terminal summary printed at the end of ``mixsampler demo``."""
    lines = ["", f"mixsampler demo: report in {out / 'report.md'}", ""]
    chosen = results["chosen_law"]
    for law, rep in results["laws"].items():
        held = np.mean(list(rep["heldout_mre"].values()))
        train = np.mean(list(rep["train_mre"].values()))
        mark = "  <- used" if law == chosen else ""
        lines.append(f"  {law:<9} MRE proxy {train:.2f}%   held-out largest size {held:.2f}%{mark}")
    lines.append("")
    domains = results["domains"]
    lines.append("  mixture            " + " ".join(f"{d:>9}" for d in domains))
    for mix, m in results["mixtures"].items():
        lines.append(f"  {mix:<18} " + " ".join(f"{m['weights'][d]:9.3f}" for d in domains))
    lines.append("")
    for obj in results["objectives"]:
        lines.append(f"  main runs, {objective_label(results, obj)}:")
        for mix, entry in results["main"]["mixtures"].items():
            e = entry["objective"][obj]
            lines.append(
                f"    {mix:<18} measured {e['mean']:.4f} (spread {e['spread']:.4f})  "
                f"predicted {e['predicted']:.4f} ({e['rel_error_pct']:.2f}% off)"
            )
    lines.append("")
    lines += ["  " + ln.replace("**", "") for ln in _verdict_lines(results)]
    return "\n".join(lines)
