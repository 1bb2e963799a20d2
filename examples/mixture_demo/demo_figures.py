"""The demo report's four figures: predicted vs measured, loss vs tokens with the fitted curves,
the mixtures' weights, and the main runs' losses per seed.

Example:
    >>> from demo_figures import plot_parity  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from demo_results import DemoResults
from demo_tables import MIX_COLORS, fmt_int, objective_label


def _rows(pattern: str) -> Any:
    """Rows of every run-table file matching ``pattern`` (one CSV per run)."""
    import glob

    from mixsampler import laws

    return laws.load_runs(sorted(glob.glob(pattern)))


def _predict(law: Any, table: Any) -> np.ndarray:
    from mixsampler import laws

    return laws.predict_table({law.target: law}, table)[law.target]


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


def plot_parity(results: DemoResults, out: Path) -> Path:
    """Predicted vs measured loss per law: the proxies it was fitted on, the largest proxy
    held out, and the main runs; written to ``out/parity.png``.

    Example:
        >>> plot_parity(results, Path("demo_out"))  # doctest: +SKIP
        PosixPath('demo_out/parity.png')
    """
    plt = _pyplot()

    from mixsampler import laws

    proxy = _rows(results.files.proxy_rows)
    main = _rows(results.files.main_rows)
    n_max = results.proxy_sizes[-1]
    large = proxy.select(np.asarray(proxy.model_size) >= n_max)
    fig, axes = plt.subplots(1, len(results.laws), figsize=(5.5 * len(results.laws), 5))
    axes = np.atleast_1d(axes)
    targets = [*results.domains, *results.targets]
    for ax, (law, rep) in zip(axes, results.laws.items(), strict=True):
        full = laws.load_laws(rep.path)
        held = laws.load_laws(rep.heldout_path)
        lo, hi = math.inf, -math.inf
        for tbl, fitted, label, color, marker in (
            (proxy, full, "proxy rows (fit)", "lightgray", "."),
            (large, held, f"largest proxy N={fmt_int(n_max)} (held out)", "tab:blue", "o"),
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


def plot_curves(results: DemoResults, out: Path) -> Path:
    """Loss vs tokens per mixture with the fitted curves: main runs (top), and the largest
    proxy size against the law fitted without it (bottom); written to ``out/curves.png``.

    Example:
        >>> plot_curves(results, Path("demo_out"))  # doctest: +SKIP
        PosixPath('demo_out/curves.png')
    """
    plt = _pyplot()

    from mixsampler import laws

    chosen = results.chosen_law
    fitted = laws.load_laws(results.laws[chosen].path)
    held = laws.load_laws(results.laws[chosen].heldout_path)
    objectives = results.objectives
    main = _rows(results.files.main_rows)
    proxy = _rows(results.files.proxy_rows)
    run_mix = {r.name: r.mixture for r in results.runs}
    fig, axes = plt.subplots(2, len(objectives), figsize=(6 * len(objectives), 9), squeeze=False)
    for j, (obj, objective) in enumerate(objectives.items()):
        ax = axes[0, j]
        meas, _ = _objective_series(main, fitted, objective)
        run_ids = np.asarray(main.run_ids)
        for mix, mixture in results.mixtures.items():
            color = MIX_COLORS.get(mix, None)
            sel = np.array([run_mix.get(r) == mix for r in run_ids])
            if not sel.any():
                continue
            ax.scatter(main.n_tokens[sel], meas[sel], s=14, color=color, label=f"{mix} measured")
            d = np.geomspace(main.n_tokens[sel].min(), main.n_tokens[sel].max(), 50)
            w = mixture.weights
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
        n_max = results.proxy_sizes[-1]
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
            f"largest proxy (N={fmt_int(n_max)}), one color per mixture;\n"
            f"lines: {chosen} law fitted without this size",
            fontsize=9,
        )
        ax.set_xlabel("tokens D")
        ax.set_ylabel("loss (nats/byte)")
    return _save(fig, out / "curves.png")


def plot_weights(results: DemoResults, out: Path) -> Path:
    """Bars of every main-run mixture's weights; written to ``out/weights.png``.

    Example:
        >>> plot_weights(results, Path("demo_out"))  # doctest: +SKIP
        PosixPath('demo_out/weights.png')
    """
    plt = _pyplot()

    domains = results.domains
    mixes = list(results.mixtures)
    x = np.arange(len(domains))
    width = 0.8 / len(mixes)
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, mix in enumerate(mixes):
        w = [results.mixtures[mix].weights[d] for d in domains]
        ax.bar(
            x + (i - (len(mixes) - 1) / 2) * width, w, width, label=mix, color=MIX_COLORS.get(mix)
        )
    ax.set_xticks(x, domains)
    ax.set_ylabel("weight")
    ax.set_title("main-run mixtures")
    ax.legend(fontsize=8)
    return _save(fig, out / "weights.png")


def plot_main(results: DemoResults, out: Path) -> Path:
    """The main runs' final objective per seed, mean and spread, with the law's prediction;
    written to ``out/main_runs.png``.

    Example:
        >>> plot_main(results, Path("demo_out"))  # doctest: +SKIP
        PosixPath('demo_out/main_runs.png')
    """
    plt = _pyplot()

    objectives = list(results.objectives)
    mixes = list(results.mixtures)
    fig, axes = plt.subplots(1, len(objectives), figsize=(5.5 * len(objectives), 4.2))
    axes = np.atleast_1d(axes)
    for ax, obj in zip(axes, objectives, strict=True):
        for i, mix in enumerate(mixes):
            e = results.main.mixtures[mix].objective[obj]
            color = MIX_COLORS.get(mix)
            ax.scatter([i] * len(e.measured), e.measured, color=color, s=25, zorder=3)
            ax.errorbar(
                i,
                e.mean,
                yerr=[[e.mean - min(e.measured)], [max(e.measured) - e.mean]],
                color=color,
                capsize=6,
                lw=2,
            )
            ax.scatter(
                [i + 0.2],
                [e.predicted],
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


def plot_check(results: DemoResults, out: Path) -> Path | None:
    """Part (a): the law's predicted against the measured mean objective of every check
    mixture at the largest proxy size (each point one mixture, its seeds averaged; the bar is
    the spread over seeds); written to ``out/check.png``. None when part (a) did not run.

    Example:
        >>> plot_check(results, Path("demo_out"))  # doctest: +SKIP
        PosixPath('demo_out/check.png')
    """
    a = results.claims.mixtures
    if a is None:
        return None
    plt = _pyplot()
    objectives = list(results.objectives)
    fig, axes = plt.subplots(1, len(objectives), figsize=(5.0 * len(objectives), 4.4))
    axes = np.atleast_1d(axes)
    for ax, obj in zip(axes, objectives, strict=True):
        lo, hi = math.inf, -math.inf
        for mix, m in a.mixtures.items():
            meas = np.asarray(m.measured[obj])
            pred = float(np.mean(m.predicted[obj]))
            color = MIX_COLORS.get(mix, "0.5")
            ax.errorbar(
                pred,
                meas.mean(),
                yerr=[[meas.mean() - meas.min()], [meas.max() - meas.mean()]],
                fmt="o",
                color=color,
                capsize=3,
            )
            ax.annotate(
                mix, (pred, meas.mean()), fontsize=7, xytext=(3, 3), textcoords="offset points"
            )
            lo, hi = min(lo, pred, meas.min()), max(hi, pred, meas.max())
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="predicted = measured")
        v = a.objectives[obj]
        ax.set_title(
            f"{objective_label(results, obj)}\nSpearman {v.spearman:.2f}, regret {v.regret:+.4f}",
            fontsize=9,
        )
        ax.set_xlabel("law's prediction (nats/byte)")
        ax.set_ylabel("measured, mean over seeds (nats/byte)")
        ax.legend(fontsize=8)
    fig.suptitle(
        f"(a) unseen mixtures at the largest proxy size (N = {fmt_int(a.model_size)}); "
        f"MRE {a.mre:.2f} %",
        fontsize=10,
    )
    return _save(fig, out / "check.png")
