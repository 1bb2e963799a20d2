"""How well fitted laws predict a run table: MRE per target and a parity plot.

Example:
    >>> report = evaluate(load_laws("LAW.json"), load_runs("heldout.csv"))  # doctest: +SKIP
    >>> report["c4"]["mre"]  # doctest: +SKIP
    0.31
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mixsampler.laws.fitted import FittedLaw
from mixsampler.laws.runtable import RunTable

__all__ = ["mre", "evaluate", "predict_table", "parity_plot"]


def mre(pred: np.ndarray, obs: np.ndarray) -> float:
    """Mean relative error in %, over entries where both are finite."""
    pred = np.asarray(pred, dtype=float)
    obs = np.asarray(obs, dtype=float)
    ok = np.isfinite(pred) & np.isfinite(obs)
    if not ok.any():
        return float("nan")
    return float(np.mean(np.abs(pred[ok] - obs[ok]) / np.abs(obs[ok])) * 100.0)


def _weights_for(law: FittedLaw, table: RunTable) -> np.ndarray:
    missing = [d for d in law.domains if d not in table.domains]
    if missing:
        raise ValueError(
            f"law for {law.target} needs weight columns for {', '.join(missing)}; the table "
            f"has {', '.join(table.domains)}"
        )
    return table.weights[:, [table.domains.index(d) for d in law.domains]]


def predict_table(fitted: Mapping[str, FittedLaw], table: RunTable) -> dict[str, np.ndarray]:
    """Predicted loss per target for every row of ``table``."""
    return {
        t: law.predict(table.model_size, table.n_tokens, _weights_for(law, table))
        for t, law in fitted.items()
    }


def evaluate(fitted: Mapping[str, FittedLaw], table: RunTable) -> dict[str, dict[str, Any]]:
    """Per target: MRE %, max relative error %, rows scored and rows without an observed loss.

    Targets of ``fitted`` that the table does not have are reported with ``n = 0``.
    """
    preds = predict_table(fitted, table)
    out: dict[str, dict[str, Any]] = {}
    for t, pred in preds.items():
        obs = table.losses.get(t, np.full(len(table), np.nan))
        ok = np.isfinite(obs)
        rel = np.abs(pred[ok] - obs[ok]) / np.abs(obs[ok]) * 100.0
        out[t] = {
            "law": fitted[t].law,
            "mre": float(rel.mean()) if ok.any() else float("nan"),
            "max_re": float(rel.max()) if ok.any() else float("nan"),
            "n": int(ok.sum()),
            "n_missing": int((~ok).sum()),
        }
    return out


def parity_plot(
    fitted: Mapping[str, FittedLaw],
    table: RunTable,
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
) -> Path:
    """Save predicted vs observed loss, one panel per target, coloured by model size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    preds = predict_table(fitted, table)
    targets = [t for t in preds if t in table.losses]
    if not targets:
        raise ValueError(
            f"none of the laws' targets ({', '.join(preds)}) has a loss column in the table"
        )
    ncol = min(4, len(targets))
    nrow = -(-len(targets) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 3.1 * nrow), squeeze=False)
    sizes = np.unique(table.model_size)
    cmap = plt.get_cmap("viridis", max(len(sizes), 2))
    for ax, t in zip(axes.flat, targets, strict=False):
        obs = table.losses[t]
        ok = np.isfinite(obs)
        for j, s in enumerate(sizes):
            m = ok & (table.model_size == s)
            ax.scatter(obs[m], preds[t][m], s=6, color=cmap(j), label=f"{s / 1e6:.0f}M")
        lo = float(min(obs[ok].min(), preds[t][ok].min()))
        hi = float(max(obs[ok].max(), preds[t][ok].max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_title(f"{t} ({fitted[t].law}): MRE {mre(preds[t], obs):.2f}%", fontsize=9)
        ax.set_xlabel("observed loss")
        ax.set_ylabel("predicted loss")
    for ax in list(axes.flat)[len(targets) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, title="N", title_fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
