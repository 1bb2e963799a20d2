"""Synthetic run tables generated from known laws, shared by the laws tests."""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pytest

from mixsampler.laws import FittedLaw, RunTable, load_runs

DOMAINS = ("a", "b", "c")

# Plausible parameters per law over DOMAINS (losses between ~2 and ~5).
TRUE_PARAMS: dict[str, dict[str, float]] = {
    "chinchilla": {"E": 1.8, "A": 0.4, "alpha": 0.35, "B": 0.9, "beta": 0.3},
    "additive": {
        "E": 1.5,
        "C_a": 2.0,
        "C_b": 1.0,
        "C_c": 0.6,
        "gamma_a": 0.5,
        "gamma_b": 0.3,
        "gamma_c": 0.8,
        "A": 0.4,
        "alpha": 0.35,
        "B": 0.9,
        "beta": 0.3,
    },
    "joint": {
        "E": 1.5,
        "C_a": 2.0,
        "C_b": 1.0,
        "C_c": 0.6,
        "gamma_a": 0.5,
        "gamma_b": 0.3,
        "gamma_c": 0.8,
        "CA_a": 0.2,
        "CA_b": 0.6,
        "CA_c": 0.4,
        "gammaA": 1.3,
        "alpha": 0.35,
        "CB_a": 1.2,
        "CB_b": 0.6,
        "CB_c": 0.9,
        "gammaB": 0.8,
        "beta": 0.3,
    },
    "simple": {
        "E": 1.5,
        "C_a": 2.0,
        "C_b": 1.0,
        "C_c": 0.6,
        "gamma": 0.7,
        "A": 0.4,
        "alpha": 0.35,
        "B": 0.9,
        "beta": 0.3,
    },
    "full": {
        "E": 1.5,
        "C_a": 2.0,
        "C_b": 1.0,
        "C_c": 0.6,
        "gamma_a": 0.5,
        "gamma_b": 0.3,
        "gamma_c": 0.8,
        "CA_a": 0.2,
        "CA_b": 0.6,
        "CA_c": 0.4,
        "gammaA": 1.3,
        "Calpha_a": 0.3,
        "Calpha_b": 0.4,
        "Calpha_c": 0.35,
        "gamma_alpha": 1.0,
        "CB_a": 1.2,
        "CB_b": 0.6,
        "CB_c": 0.9,
        "gammaB": 0.8,
        "Cbeta_a": 0.25,
        "Cbeta_b": 0.35,
        "Cbeta_c": 0.3,
        "gamma_beta": 1.0,
    },
    "ye_m1": {"E": 2.0, "C_a": 0.8, "C_b": 0.5, "C_c": 0.7, "g_a": -1.5, "g_b": -0.5, "g_c": -2.0},
    "ye_m2": {"E": 2.0, "C": 0.4, "g_a": -1.5, "g_b": -0.5, "g_c": -2.0},
    "ye_m4": {"E": 2.0, "C": 1.5, "g_a": -1.5, "g_b": -0.5, "g_c": -2.0},
    "linear": {"C_a": 2.5, "C_b": 3.2, "C_c": 2.9},
    "bimix": {"E": 2.0, "C": 0.3, "gamma": 0.4, "B": 0.9, "beta": 0.3},
}


def true_law(law: str, target: str = "a") -> FittedLaw:
    return FittedLaw(law, DOMAINS, target, dict(TRUE_PARAMS[law]))


def synth_rows(
    laws_: Mapping[str, FittedLaw],
    *,
    n_mix: int = 15,
    sizes: tuple[float, ...] = (1e8, 3e8, 1e9),
    tokens: tuple[float, ...] = (1e9, 2e9, 4e9, 8e9),
    noise: float = 5e-4,
    seed: int = 0,
    min_weight: float = 0.05,
) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    k = len(DOMAINS)
    mixes = rng.dirichlet(np.ones(k), size=n_mix) * (1 - k * min_weight) + min_weight
    rows: list[dict[str, object]] = []
    for i, h in enumerate(mixes):
        for n in sizes:
            for d in tokens:
                row: dict[str, object] = {"run": f"mix{i}-{n:g}", "model_size": n, "n_tokens": d}
                row.update({f"weight_{dom}": float(v) for dom, v in zip(DOMAINS, h, strict=True)})
                for t, law in laws_.items():
                    y = float(law.predict(n, d, h)) + rng.normal(0, noise)
                    row[f"{t}_loss"] = y
                rows.append(row)
    return rows


def write_csv(path: Path, rows: list[dict[str, object]]) -> Path:
    cols: dict[str, None] = {}
    for r in rows:
        cols.update(dict.fromkeys(r))
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(cols))
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture
def synth_table(tmp_path: Path) -> Callable[..., RunTable]:
    """Factory: ``synth_table({"x": law}, **kw)`` -> RunTable read back from a CSV."""

    def make(laws_: Mapping[str, FittedLaw], **kw: object) -> RunTable:
        rows = synth_rows(laws_, **kw)  # type: ignore[arg-type]
        return load_runs(write_csv(tmp_path / "synth.csv", rows))

    return make


@pytest.fixture
def helpers() -> object:
    """The helpers above, for test modules (importlib mode cannot import conftest)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        DOMAINS=DOMAINS,
        TRUE_PARAMS=TRUE_PARAMS,
        true_law=true_law,
        synth_rows=synth_rows,
        write_csv=write_csv,
    )
