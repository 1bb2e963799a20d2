"""make_plan and `mixsampler plan`: simplex mixtures sized to the law, one config per run."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from mixsampler import cli, make_plan
from mixsampler.plan import law_mixture_params, law_n_params


def test_default_grid_is_the_papers_grid() -> None:
    # The public SlimPajama table uses 0.02 + 0.86 c / 13 with c integer (7 domains).
    domains = ["arxiv", "book", "c4", "github", "cc", "se", "wiki"]
    plan = make_plan(domains, token_budgets=[1e9], law="joint")
    assert plan.n_params == 5 + 4 * 7
    # E, C_i, gamma_i need distinct mixtures: 15 + 5 = 20, the paper's "about 20 for k = 6-8".
    assert plan.mixture_params == 2 * 7 + 1
    assert plan.n_mixtures == 20
    c = (plan.weights - 0.02) / (0.86 / 13)
    np.testing.assert_allclose(c, np.round(c), atol=1e-9)
    np.testing.assert_allclose(np.round(c).sum(axis=1), 13)
    assert len({tuple(np.round(r, 12)) for r in plan.weights}) == plan.n_mixtures


@settings(max_examples=25, deadline=None)
@given(
    k=st.integers(2, 8),
    design=st.sampled_from(["grid", "dirichlet", "sobol"]),
    frac=st.floats(0.0, 0.9),
    n=st.integers(1, 40),
    seed=st.integers(0, 2**16),
)
def test_every_mixture_is_on_the_simplex_above_the_minimum(
    k: int, design: str, frac: float, n: int, seed: int
) -> None:
    m = frac / k
    kw = dict(token_budgets=[1e6], design=design, n_mixtures=n, min_weight=m, seed=seed, law=None)
    plan = make_plan([f"d{i}" for i in range(k)], **kw)
    assert plan.weights.shape == (n, k)
    np.testing.assert_allclose(plan.weights.sum(axis=1), 1.0, atol=1e-12)
    assert (plan.weights >= m - 1e-12).all()
    again = make_plan([f"d{i}" for i in range(k)], **kw)
    np.testing.assert_array_equal(plan.weights, again.weights)


def test_runs_are_mixtures_times_sizes_times_budgets() -> None:
    plan = make_plan(
        ["a", "b", "c"], token_budgets=[1e7, 2e7], model_sizes=["S", "M"], law="additive", margin=2
    )
    assert plan.n_mixtures == law_mixture_params("additive", 3) + 2 == 9
    assert len(plan.runs) == 9 * 2 * 2
    assert len({r["run"] for r in plan.runs}) == len(plan.runs)
    # every model size and budget sees the same mixtures, so N and D effects are not confounded
    by_cell: dict = {}
    for r in plan.runs:
        by_cell.setdefault((r["model"], r["n_tokens"]), []).append(
            tuple(r[f"weight_{d}"] for d in "abc")
        )
    assert len(set(map(tuple, by_cell.values()))) == 1


def test_fixed_scale_baselines_count_every_parameter() -> None:
    # A law without N and D terms is identified by mixtures alone.
    assert law_mixture_params("ye_m1", 4) == law_n_params("ye_m1", 4)
    plan = make_plan(list("abcd"), token_budgets=[1e6], law="ye_m1", margin=1)
    assert plan.n_mixtures == law_n_params("ye_m1", 4) + 1


def test_sobol_fills_the_simplex_more_evenly_than_dirichlet() -> None:
    def min_dist(w: np.ndarray) -> float:
        d = np.linalg.norm(w[:, None] - w[None], axis=-1)
        return float(d[np.triu_indices(len(w), 1)].min())

    kw = dict(token_budgets=[1e6], n_mixtures=32, min_weight=0.0, law=None)
    sob = np.mean(
        [min_dist(make_plan(list("abcd"), design="sobol", seed=s, **kw).weights) for s in range(5)]
    )
    dirich = np.mean(
        [
            min_dist(make_plan(list("abcd"), design="dirichlet", seed=s, **kw).weights)
            for s in range(5)
        ]
    )
    assert sob > dirich


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"design": "lhs"}, "design can be grid, dirichlet, sobol, got 'lhs'"),
        ({"min_weight": 0.5}, r"min_weight must be in \[0, 1/k\)"),
        ({"token_budgets": [-1.0]}, "token_budgets must be positive"),
        ({"law": "nope"}, "law can be"),
        ({"n_mixtures": 0}, "n_mixtures must be an integer >= 1, got 0"),
        ({"grid_steps": 1, "n_mixtures": 10}, "grid_steps=1 gives 3 grid points"),
    ],
)
def test_bad_arguments_name_the_argument_and_value(kwargs: dict, match: str) -> None:
    args = {"token_budgets": [1e6], **kwargs}
    with pytest.raises(ValueError, match=match):
        make_plan(["a", "b", "c"], **args)


def test_cli_writes_plan_and_lightningcli_configs(tmp_path, capsys) -> None:
    base = tmp_path / "base.yaml"
    base.write_text(
        yaml.safe_dump(
            {
                "model": {"class_path": "my.Model", "init_args": {"n_layer": 1}},
                "data": {
                    "class_path": "mixsampler.MixtureDataModule",
                    "init_args": {"train": {"web": "web/", "code": "code/"}, "batch_size": 4},
                },
                "trainer": {
                    "callbacks": [
                        {
                            "class_path": "mixsampler.callbacks.DomainLossLogger",
                            "init_args": {"model_size": "total"},
                        }
                    ]
                },
            }
        )
    )
    out = tmp_path / "sweep"
    rc = cli.main(
        [
            "plan",
            "--config",
            str(base),
            "--tokens",
            "4096",
            "-o",
            str(out),
            "--model",
            "S:model.init_args.n_layer=2",
            "--model",
            "M:model.init_args.n_layer=4",
            "--n-mixtures",
            "3",
            "--tokens-per-step",
            "1000",
        ]
    )
    assert rc == 0
    assert "6 runs = 3 mixtures" in capsys.readouterr().out
    rows = list(csv.DictReader(open(out / "plan.csv")))
    assert len(rows) == 6
    for row in rows:
        cfg = yaml.safe_load(open(row["config"]))
        w = cfg["data"]["init_args"]["weights"]
        assert w == {"web": float(row["weight_web"]), "code": float(row["weight_code"])}
        assert math.isclose(sum(w.values()), 1.0)
        assert cfg["data"]["init_args"]["batch_size"] == 4
        assert cfg["model"]["init_args"]["n_layer"] == {"S": 2, "M": 4}[row["model"]]
        assert cfg["trainer"]["max_steps"] == 5 == int(row["max_steps"])
        (cb,) = cfg["trainer"]["callbacks"]
        assert cb["init_args"] == {
            "model_size": "total",
            "run": row["run"],
            "path": str(out / "runs" / f"{row['run']}.csv"),
        }


def test_cli_without_domains_is_a_one_line_error(tmp_path, capsys) -> None:
    assert cli.main(["plan", "--tokens", "1e6", "-o", str(tmp_path)]) == 2
    assert "give --domains" in capsys.readouterr().err


def test_a_plan_too_large_is_refused_at_once() -> None:
    from mixsampler.plan import MAX_MIXTURES, MAX_RUNS

    with pytest.raises(ValueError, match=r"n_mixtures must be at most 10,000 .* got 100,000,000"):
        make_plan(["a", "b", "c"], token_budgets=[1e6], n_mixtures=100_000_000, law=None)
    # Within the mixture limit, but mixtures x sizes x budgets is too many runs.
    budgets = [1e6 * (i + 1) for i in range(MAX_RUNS // MAX_MIXTURES + 1)]
    with pytest.raises(ValueError, match=r"would have 110,000 runs .* limit of 100,000"):
        make_plan(["a", "b"], token_budgets=budgets, n_mixtures=MAX_MIXTURES, law=None)


@pytest.mark.parametrize("law", ["additive", "joint", "simple", "full", "ye_m2", "bimix"])
def test_mixture_count_is_read_from_the_law_definition(law: str) -> None:
    from mixsampler.laws.law_defs import REGISTRY

    k = 4
    blocks = [b for t in REGISTRY[law].terms for b in t.blocks]
    by_group: dict = {}
    for b in blocks:
        if b.group is not None:
            by_group[b.group] = by_group.get(b.group, 0) + (k if b.per_domain else 1)
    assert law_mixture_params(law, k) == max(by_group.values())


def test_plan_says_when_the_sizes_cannot_check_the_n_extrapolation(caplog) -> None:
    from mixsampler.laws.heldout import N_CHECK_SIZES

    with caplog.at_level("WARNING", logger="mixsampler.plan"):
        make_plan(["a", "b"], token_budgets=[1e6], model_sizes=["S", "M", "L"], law="joint")
    assert f"only with {N_CHECK_SIZES}" in caplog.text and "3 model size(s)" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="mixsampler.plan"):
        make_plan(["a", "b"], token_budgets=[1e6], model_sizes=["S", "M", "L", "XL"], law="joint")
        # a law without an N term, or no law: nothing to check in N
        make_plan(["a", "b"], token_budgets=[1e6], model_sizes=["S"], law=None, n_mixtures=4)
    assert "extrapolation in N" not in caplog.text
