"""`mixsampler plan` knows how much data each domain has: weights capped by repetition.

A proxy run of D with weight h on a domain of A tokens takes h * D / A epochs of it; the laws
have no repetition term, so plan keeps h * max(D) <= R * A (R = --max-repeat).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from mixsampler import cli, make_plan, write_shards
from mixsampler.designs import capped_design_weights, count_capped_grid
from mixsampler.plan import DEFAULT_MAX_REPEAT, domain_sizes, repeat_caps


def _shards(tmp_path: Path, docs: dict[str, int]) -> dict[str, object]:
    """Shards of byte tokens, ``docs[domain]`` documents of ~1 KB each; the write results."""
    out = {}
    for domain, n in docs.items():
        folder = tmp_path / "text" / domain
        folder.mkdir(parents=True)
        for i in range(n):
            (folder / f"{i}.txt").write_text(f"{domain} {i} " + "some words here. " * 60)
        out[domain] = write_shards(
            folder, tmp_path / "shards", domain=domain, chunk_tokens=17, samples_per_shard=40
        )
    return out


def _config(tmp_path: Path, train: dict[str, object], unit: str = "tokens", **extra) -> Path:
    cfg = {
        "data": {
            "class_path": "mixsampler.MixtureDataModule",
            "init_args": {"train": train, "unit": unit, "batch_size": 4, **extra},
        }
    }
    path = tmp_path / "base.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "plan.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def corpus(tmp_path: Path) -> dict[str, object]:
    # prose: a small high-quality domain (as the e2e benchmark's), web and code large.
    return _shards(tmp_path, {"web": 30, "code": 30, "prose": 4})


def test_sizes_are_the_tokens_and_samples_the_shards_hold(tmp_path, corpus) -> None:
    shards = tmp_path / "shards"
    train = {
        "web": str(shards / "web-*.tar"),  # a glob
        "code": corpus["code"].pattern,  # a brace pattern
        "prose": [str(p) for p in corpus["prose"].paths],  # a list
    }
    assert len(corpus["web"].paths) > 1  # several shards are summed
    sizes, unknown = domain_sizes(train, "tokens")
    assert unknown == {}
    # The reference: write_shards' own count of what it wrote.
    assert sizes == {d: float(r.tokens) for d, r in corpus.items()}
    sizes, _ = domain_sizes(train, "samples")
    assert sizes == {d: float(r.samples) for d, r in corpus.items()}
    sizes, unknown = domain_sizes({"web": str(shards / "nope-*.tar"), "x": {"a": 1}}, "tokens")
    assert sizes == {}
    assert "matches no shards" in unknown["web"] and "not shard paths" in unknown["x"]


def test_a_small_domain_gets_its_weight_capped(tmp_path, corpus, capsys) -> None:
    shards = tmp_path / "shards"
    train = {d: str(shards / f"{d}-*.tar") for d in corpus}
    prose = corpus["prose"].tokens
    d_max = 12 * prose  # at R = 4 the cap is 1/3; the uncapped grid goes to 0.96
    args = ["plan", "--config", str(_config(tmp_path, train)), "--tokens", str(d_max / 2)]
    args += [str(d_max), "--design", "grid", "--law", "simple"]
    assert cli.main([*args, "-o", str(tmp_path / "sweep")]) == 0
    out = capsys.readouterr().out
    assert f"prose: {prose:,} tokens" in out and "worst repetition:" in out
    rows = _rows(tmp_path / "sweep")
    cap = DEFAULT_MAX_REPEAT * prose / d_max
    prose_w = np.array([float(r["weight_prose"]) for r in rows])
    assert prose_w.max() <= cap + 1e-12
    assert len(set(np.round(prose_w, 9))) >= 2  # it still varies
    for r in rows:
        epochs = {
            d: float(r[f"weight_{d}"]) * float(r["n_tokens"]) / corpus[d].tokens for d in corpus
        }
        worst = max(epochs, key=epochs.__getitem__)
        assert r["most_repeated"] == worst
        assert float(r["max_epochs"]) == pytest.approx(epochs[worst], rel=1e-9)
        assert float(r["max_epochs"]) <= DEFAULT_MAX_REPEAT + 1e-9
    # Without the sizes the same plan puts prose far above its cap: the check is what moved it.
    assert cli.main([*args, "--no-count", "-o", str(tmp_path / "free")]) == 0
    assert "repetition not checked (--no-count)" in capsys.readouterr().out
    free = np.array([float(r["weight_prose"]) for r in _rows(tmp_path / "free")])
    assert free.max() > 2 * cap
    assert "max_epochs" in _rows(tmp_path / "free")[0]  # the column, empty
    assert _rows(tmp_path / "free")[0]["max_epochs"] == ""


def test_too_little_data_is_a_clear_error(tmp_path, corpus, capsys) -> None:
    shards = tmp_path / "shards"
    train = {d: str(shards / f"{d}-*.tar") for d in corpus}
    prose = corpus["prose"].tokens
    # web and code have room at this D (caps about 0.67); prose's cap (about 0.09) is less
    # than the two grid steps (2 x 0.157 above the minimum) the joint law's C_i and gamma_i
    # need.
    d_max = 6 * min(corpus["web"].tokens, corpus["code"].tokens)
    cap = 4 * prose / d_max
    cfg = _config(tmp_path, train)
    args = ["plan", "--config", str(cfg), "--tokens", str(d_max)]
    assert cli.main([*args, "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"domain 'prose' has {prose:,} tokens" in err
    assert f"capped at {cap:.4g} " in err and "too small as well" not in err
    assert "--tokens <= " in err and "more data (>= " in err
    assert not (tmp_path / "o" / "plan.csv").exists()
    # Its numbers are the fixes: each of --max-repeat and --grid-steps as it says plans.
    repeat = err.split("--max-repeat >= ")[1].split(",")[0]
    steps = err.split("--grid-steps >= ")[1].split(" ")[0]
    fixed = [["--max-repeat", str(float(repeat) * 1.01)], ["--grid-steps", steps]]
    for i, extra in enumerate(fixed):
        assert cli.main([*args, *extra, "-o", str(tmp_path / f"fixed{i}")]) == 0, extra
    # One grid step less than it says is still refused.
    less = ["--grid-steps", str(int(steps) - 1), "-o", str(tmp_path / "less")]
    assert cli.main([*args, *less]) == 2


def test_caps_that_leave_too_few_mixtures_name_the_domains() -> None:
    with pytest.raises(ValueError, match=r"leave 9 distinct mixtures .* of the 12 .*'code'"):
        make_plan(
            ["web", "code", "prose"], token_budgets=[1e7], available={"prose": 1e6, "code": 1e6}
        )
    with pytest.raises(ValueError, match=r"is 8,000,000 tokens in all, .* no mixture fits"):
        make_plan(["a", "b"], token_budgets=[1e7], available={"a": 1e6, "b": 1e6})


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("wiki=5", "--available names 'wiki', which is not one of"),
        ("web=-5", "--available web=-5: a domain's size must be a positive number of tokens"),
        ("web=0", "--available web=0"),
        ("web=lots", "--available web must be a number such as 1.4e9 or 1.4B, got 'lots'"),
        ("web", "--available takes name=value, got 'web'"),
    ],
)
def test_available_is_checked(tmp_path, capsys, value: str, message: str) -> None:
    args = ["plan", "--domains", "web,code", "--tokens", "1e6", "--available", value]
    assert cli.main([*args, "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_max_repeat_is_checked(tmp_path, capsys) -> None:
    base = ["plan", "--domains", "web,code", "--tokens", "1e6", "--available", "web=1e6"]
    assert cli.main([*base, "--max-repeat", "0", "-o", str(tmp_path / "a")]) == 2
    assert "--max-repeat 0: epochs must be a positive number" in capsys.readouterr().err
    assert cli.main([*base, "--max-repeat", "wiki=2", "-o", str(tmp_path / "b")]) == 2
    assert "--max-repeat names 'wiki'" in capsys.readouterr().err


def test_available_overrides_counting_and_unknown_domains_are_said_once(tmp_path, capsys) -> None:
    args = ["plan", "--domains", "web,code,prose", "--tokens", "1e6", "--available", "prose=8e4"]
    assert cli.main([*args, "--law", "simple", "-o", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert out.count("repetition not checked") == 1
    assert "web: not in --available; code: not in --available" in out
    assert "--available DOMAIN=SIZE" in out
    rows = _rows(tmp_path / "o")
    assert max(float(r["weight_prose"]) for r in rows) <= 4 * 8e4 / 1e6 + 1e-12
    assert {r["most_repeated"] for r in rows} == {"prose"}


def test_without_sizes_plan_says_once_it_could_not_check(tmp_path, capsys) -> None:
    args = ["plan", "--domains", "a,b", "--tokens", "1e6", "-o", str(tmp_path / "o")]
    assert cli.main(args) == 0
    captured = capsys.readouterr()
    assert captured.out.count("repetition not checked") == 1 and "--available" in captured.out
    assert captured.err == ""  # plan writes: a note, not a warning


def test_samples_unit_and_length_fn(tmp_path, corpus, capsys) -> None:
    shards = tmp_path / "shards"
    train = {d: str(shards / f"{d}-*.tar") for d in corpus}
    cfg = _config(tmp_path, train, unit="samples")
    args = ["plan", "--config", str(cfg), "--samples", "40", "--law", "simple"]
    assert cli.main([*args, "-o", str(tmp_path / "s")]) == 0
    assert f"prose: {corpus['prose'].samples:,} samples" in capsys.readouterr().out
    cap = DEFAULT_MAX_REPEAT * corpus["prose"].samples / 40
    assert max(float(r["weight_prose"]) for r in _rows(tmp_path / "s")) <= cap + 1e-12
    # A user's length_fn counts the tokens: plan cannot, and says so.
    cfg = _config(tmp_path, train, length_fn="builtins.len")
    assert (
        cli.main(["plan", "--config", str(cfg), "--tokens", "1e6", "-o", str(tmp_path / "t")]) == 0
    )
    assert "length_fn counts the tokens" in capsys.readouterr().out


def test_sizes_that_do_not_bind_leave_the_plan_as_it_was() -> None:
    for design in ("grid", "dirichlet", "sobol"):
        kw = dict(token_budgets=[1e6], design=design, seed=3)
        free = make_plan(["a", "b", "c"], **kw)
        sized = make_plan(["a", "b", "c"], available={"a": 1e6, "b": 1e9}, **kw)
        np.testing.assert_array_equal(free.weights, sized.weights)


@settings(max_examples=40, deadline=None)
@given(
    k=st.integers(2, 6),
    design=st.sampled_from(["grid", "dirichlet", "sobol"]),
    frac=st.floats(0.0, 0.9),
    n=st.integers(1, 8),
    caps=st.lists(st.one_of(st.none(), st.floats(0.3, 1.5)), min_size=6, max_size=6),
    repeat=st.sampled_from([1.0, 4.0]),
    seed=st.integers(0, 2**16),
)
def test_every_mixture_respects_the_caps(
    k: int, design: str, frac: float, n: int, caps: list, repeat: float, seed: int
) -> None:
    m = frac / k
    d_max = 1e6
    domains = [f"d{i}" for i in range(k)]
    # A cap c on a domain: available = c * D / R. Caps of at least 0.3 leave room for n <= 8.
    available = {
        d: c * d_max / repeat for d, c in zip(domains, caps, strict=False) if c is not None
    }
    kw = dict(design=design, n_mixtures=n, min_weight=m, seed=seed, law=None)
    try:
        plan = make_plan(
            domains, token_budgets=[d_max / 2, d_max], available=available, max_repeat=repeat, **kw
        )
    except ValueError as err:
        # Only the documented refusal, and only when the grid at that resolution is too tight.
        assert "distinct mixtures" in str(err) or "capped at" in str(err)
        return
    upper = repeat_caps(domains, d_max, available, dict.fromkeys(available, repeat))
    np.testing.assert_allclose(plan.weights.sum(axis=1), 1.0, atol=1e-12)
    assert (plan.weights >= m - 1e-12).all()
    assert (plan.weights <= upper + 1e-12).all()
    for run in plan.runs:
        if available:
            assert run["max_epochs"] <= repeat + 1e-9


@settings(max_examples=30, deadline=None)
@given(
    steps=st.integers(0, 9),
    caps=st.lists(st.integers(-1, 10), min_size=1, max_size=4),
)
def test_capped_grid_count_matches_brute_force(steps: int, caps: list[int]) -> None:
    import itertools

    brute = sum(
        1
        for c in itertools.product(range(steps + 1), repeat=len(caps))
        if sum(c) == steps and all(v <= u for v, u in zip(c, caps, strict=True))
    )
    assert count_capped_grid(steps, np.array(caps)) == brute


def test_a_grid_too_large_to_enumerate_is_sampled_under_the_caps() -> None:
    # k = 8, S = 40: 62.9M grid points, drawn part by part rather than enumerated.
    upper = np.array([0.1, 0.3] + [1.0] * 6)
    w = capped_design_weights("grid", 8, 50, 0.02, 40, 1.0, 0, upper)
    assert w.shape == (50, 8) and len({tuple(np.round(r, 12)) for r in w}) == 50
    assert (w <= upper + 1e-12).all() and (w >= 0.02 - 1e-12).all()
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)
    c = (w - 0.02) / (0.84 / 40)  # on the grid
    np.testing.assert_allclose(c, np.round(c), atol=1e-9)
    assert w[:, 0].max() > 0.05  # the capped domain still varies
