"""Fast checks of the demo's parts: data selection, the byte collate, the model's contract."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from demo_claims import (
    decision_statement,
    decisions_before_main,
    judge_decisions,
    paired_test,
    random_mixtures,
    seeds_needed,
)
from demo_data import DataConfig, DemoData, DomainData, load_user_data, select_documents
from demo_model import GPTConfig, TinyGPT, TrainConfig, collate_bytes
from demo_pipeline import DemoConfig
from demo_results import (
    DecisionStatement,
    ErrorByTokens,
    ErrorSummary,
    MainEvaluation,
    MixtureEvaluation,
    ObjectiveStats,
)


def test_select_documents_is_deterministic_and_splits_by_file() -> None:
    docs = [(f"doc{i}", f"text {i} " * (50 + i)) for i in range(40)]
    a = select_documents(iter(docs), train_cap=2000, val_cap=400, doc_cap=300, target=False)
    b = select_documents(
        iter(reversed(docs)), train_cap=2000, val_cap=400, doc_cap=300, target=False
    )
    assert a == b  # order of discovery does not matter
    train, val, available = a
    assert available == sum(len(t.encode()) for _, t in docs)
    assert {n for n, _ in train}.isdisjoint({n for n, _ in val})
    assert len(val) >= 8  # the validation window keeps at least 8 documents
    assert all(len(raw) <= 300 for _, raw in train)
    # caps hold to within one document
    assert sum(len(r) for _, r in train) < 2000 + 300


def test_select_documents_target_has_no_training_text() -> None:
    docs = [(f"d{i}", "x" * 100) for i in range(10)]
    train, val, _ = select_documents(
        iter(docs), train_cap=10**6, val_cap=80, doc_cap=50, target=True
    )
    assert train == [] and val


def test_select_documents_keeps_utf8_valid() -> None:
    docs = [("a", "é" * 101)]  # two bytes per character: any odd cut splits one
    train, val, _ = select_documents(
        iter(docs), train_cap=10**6, val_cap=9, doc_cap=51, target=False
    )
    for _, raw in train + val:
        raw.decode("utf-8")


def test_data_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="seq_len"):
        DataConfig(seq_len=0)
    with pytest.raises(ValueError, match="val_cap"):
        DataConfig(seq_len=128, seqs_per_sample=1, val_cap=100)


def test_natural_weights_follow_training_bytes() -> None:
    data = DemoData(
        domains={
            "a": DomainData("a", "", "ta", "va", train_bytes=300),
            "b": DomainData("b", "", "tb", "vb", train_bytes=100),
            "t": DomainData("t", "", None, "vt"),
        },
        origin="test",
    )
    assert data.train_domains == ("a", "b") and data.targets == ("t",)
    assert data.natural_weights() == {"a": 0.75, "b": 0.25}


def test_load_user_data_layout_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="not a directory"):
        load_user_data(tmp_path / "missing")
    (tmp_path / "web" / "train").mkdir(parents=True)
    (tmp_path / "web" / "train" / "web-000000.tar").write_bytes(b"")
    with pytest.raises(ValueError, match="no validation shards"):
        load_user_data(tmp_path)
    (tmp_path / "web" / "val").mkdir()
    (tmp_path / "web" / "val" / "web-000000.tar").write_bytes(b"")
    with pytest.raises(ValueError, match="at least 2 training domains"):
        load_user_data(tmp_path)


def test_collate_bytes_checks_lengths() -> None:
    batch = collate_bytes(
        [{"bin": b"abcd", "__domain__": "x"}, {"bin": b"efgh", "__domain__": "y"}]
    )
    assert batch["tokens"].tolist() == [list(b"abcd"), list(b"efgh")]
    assert batch["__domain__"] == ["x", "y"]
    with pytest.raises(ValueError, match="equal-length"):
        collate_bytes([{"bin": b"ab"}, {"bin": b"abc"}])


def test_validation_step_contract_matches_the_mean_loss() -> None:
    torch.manual_seed(0)
    model = TinyGPT(GPTConfig(d_model=16, n_head=2, n_layer=1, seq_len=8), TrainConfig())
    tokens = torch.randint(0, 256, (4, 9))
    with torch.no_grad():  # as Lightning runs validation
        out = model.validation_step({"tokens": tokens, "__domain__": list("abab")}, 0)
    assert out["domain"] == list("abab")
    assert out["n_tokens"].tolist() == [8] * 4
    mean = float(out["loss_sum"].sum() / out["n_tokens"].sum())
    with torch.no_grad():
        direct = float(model._token_losses(tokens).mean())
    assert math.isclose(mean, direct, rel_tol=1e-5)
    # near-uniform predictions at initialisation: about log(256) nats per byte
    assert abs(mean - math.log(256)) < 0.1


def test_packed_samples_score_every_sequence() -> None:
    torch.manual_seed(0)
    model = TinyGPT(GPTConfig(d_model=16, n_head=2, n_layer=1, seq_len=8), TrainConfig())
    seqs = torch.randint(0, 256, (6, 9))
    with torch.no_grad():
        single = model.validation_step({"tokens": seqs}, 0)
        packed = model.validation_step({"tokens": seqs.reshape(2, 27)}, 0)
    assert packed["n_tokens"].tolist() == [24, 24]
    assert torch.allclose(packed["loss_sum"], single["loss_sum"].view(2, 3).sum(1), atol=1e-4)
    with pytest.raises(ValueError, match="whole sequences"):
        model.validation_step({"tokens": torch.zeros(2, 10, dtype=torch.long)}, 0)


def test_non_embedding_params_excludes_embeddings() -> None:
    model = TinyGPT(GPTConfig(d_model=16, n_head=2, n_layer=1, seq_len=8), TrainConfig())
    total = sum(p.numel() for p in model.parameters())
    assert model.non_embedding_params() == total - 256 * 16 - 8 * 16


def test_demo_config_validation() -> None:
    with pytest.raises(ValueError, match="proxy_widths"):
        DemoConfig(proxy_widths=(16, 32))
    with pytest.raises(ValueError, match="main_width"):
        DemoConfig(proxy_widths=(16, 32, 64), main_width=64)
    with pytest.raises(ValueError, match="seeds"):
        DemoConfig(seeds=(0,))
    with pytest.raises(ValueError, match="at least 3 distinct seeds"):
        DemoConfig(seeds=(0, 1))
    with pytest.raises(ValueError, match="at least 3 distinct seeds"):
        DemoConfig(seeds=(0, 1, 1))


def _main(opt: list[float], uni: list[float], nat: list[float], off: float = 0.0) -> MainEvaluation:
    # every mixture predicted at its measured mean times (1 + off)
    def entry(vals: list[float]) -> MixtureEvaluation:
        mean = sum(vals) / len(vals)
        pred = mean * (1 + off)
        stats = ObjectiveStats(
            measured=tuple(vals),
            predicted_per_seed=(pred,) * len(vals),
            mean=mean,
            spread=max(vals) - min(vals),
            predicted=pred,
            rel_error_pct=abs(pred - mean) / mean * 100,
            max_rel_error_pct=max(abs(pred - v) / v * 100 for v in vals),
        )
        return MixtureEvaluation(seeds=(0, 1, 2), objective={"avg": stats})

    no_rows = ErrorSummary(rows=0, mre=None, bias=None)
    return MainEvaluation(
        runs={},
        mixtures={"optimized-avg": entry(opt), "uniform": entry(uni), "natural": entry(nat)},
        by_tokens=ErrorByTokens(proxy_tokens_max=1.0, within=no_rows, beyond=no_rows),
    )


def test_paired_test_matches_scipy_on_random_gains() -> None:
    from scipy import stats

    rng = np.random.default_rng(0)
    for n in (3, 5, 8):
        for _ in range(20):
            g = rng.normal(0.01, 0.02, size=n)
            t = paired_test(g)
            base, opt = 2.0 + g + rng.normal(0, 0.05, size=n), None
            opt = base - g  # baseline - optimum = g, seed by seed
            ref = stats.ttest_rel(base, opt, alternative="greater").pvalue
            assert t.t_p == pytest.approx(ref, rel=1e-9)
            assert t.significant == (ref < 0.05)
            k = int(np.sum(g > 0))
            assert t.sign_p == pytest.approx(stats.binomtest(k, n, 0.5, "greater").pvalue)


def test_sign_test_needs_five_positive_seeds() -> None:
    assert paired_test([0.1, 0.2, 0.15]).sign_p == pytest.approx(0.125)
    assert paired_test([0.1, 0.2, 0.15, 0.1, 0.12]).sign_p == pytest.approx(0.03125)


def test_seeds_needed_is_the_first_n_that_reaches_significance() -> None:
    from scipy import stats

    for mean, sd in ((0.01, 0.01), (0.05, 0.03), (0.005, 0.02)):
        n = seeds_needed(mean, sd)
        assert n is not None
        t_stat = [mean / (sd / math.sqrt(k)) if k else 0.0 for k in range(n + 1)]
        assert t_stat[n] > stats.t.ppf(0.95, n - 1)
        if n > 2:
            assert t_stat[n - 1] <= stats.t.ppf(0.95, n - 2)
    assert seeds_needed(0.001, 0.05) is None  # past the cap of 1000 seeds
    assert seeds_needed(-0.01, 0.01) is None and seeds_needed(0.0, 0.01) is None


def _law(heldout_mre: float, train_mre: float = 0.004, converged: bool = True) -> dict:
    from mixsampler.laws.fitted import FittedLaw

    params = {"E": 1.0, "C_a": 1.0, "C_b": 0.5, "gamma_a": 0.5, "gamma_b": 0.5}
    params |= {"A": 0.2, "alpha": 0.3, "B": 0.5, "beta": 0.3}
    fit = {"converged": converged, "train_mre": train_mre, "heldout": {"n": {"mre": heldout_mre}}}
    return {"a": FittedLaw("additive", ("a", "b"), "a", params, fit=fit)}


def _decide(heldout_mre: float, train_mre: float = 0.004, converged: bool = True) -> Any:
    from mixsampler import laws

    return laws.decide(
        _law(heldout_mre, train_mre, converged),
        model_size=1e9,
        n_tokens=1e10,
        natural={"a": 3.0, "b": 1.0},
        trust_region="none",
        allow_untrusted_law=True,
        allow_unconverged=True,
    )


BASE_WEIGHTS = {"uniform": {"a": 0.5, "b": 0.5}, "natural": {"a": 0.75, "b": 0.25}}


def test_decision_statement_is_laws_decide_on_the_mixtures_the_baselines_train() -> None:
    dec = _decide(0.01)  # trusted; the law resolves 1 % of the predicted loss
    st = decisions_before_main({"avg": dec}, BASE_WEIGHTS)["avg"]
    for base in ("uniform", "natural"):
        b = dec.baselines[base]
        assert st[base].predicted_gain == b["gain"]
        assert st[base].predicted_gain_pct == pytest.approx(b["gain"] / b["loss"] * 100)
        assert st[base].resolution == dec.resolution
        assert st[base].resolution_source == "held-out n error"
        assert st[base].verdict == b["verdict"] and st[base].refused == ()
        # decide's rule: a gain beyond the resolution, in nats
        assert st[base].distinguishable == (b["gain"] > dec.resolution)
    assert st["uniform"].distinguishable and "distinguishable" in st["uniform"].text
    assert decision_statement("avg", "uniform", dec, BASE_WEIGHTS["uniform"]) == st["uniform"]


def test_decision_statement_makes_no_claim_within_the_error_or_when_the_tool_refuses() -> None:
    within = _decide(0.04, train_mre=0.03)  # trusted, but 4 % of ~2.3 nats > the gain
    st = decision_statement("avg", "uniform", within, BASE_WEIGHTS["uniform"])
    assert within.issues == [] and within.baselines["uniform"]["gain"] > 0
    assert not st.distinguishable and st.refused == ()
    assert "not a claim: below what the law can resolve" in st.text
    # the same resolvable gain from a law check_trusted refuses (its fit did not converge):
    # a user gets no weights without --allow-untrusted-law, so no claim
    refused = _decide(0.01, converged=False)
    st = decision_statement("avg", "uniform", refused, BASE_WEIGHTS["uniform"])
    assert refused.baselines["uniform"]["verdict"].startswith("resolvable")
    assert not st.distinguishable and st.refused == tuple(refused.issues) != ()
    assert "refuses this decision" in st.text


def test_decision_statement_refuses_a_baseline_other_than_the_one_trained() -> None:
    with pytest.raises(ValueError, match="natural mixture .* is not the one the natural runs"):
        decision_statement("avg", "natural", _decide(0.01), {"a": 0.7, "b": 0.3})


def _statements(distinguishable: bool) -> dict:
    return {
        "avg": {
            base: DecisionStatement(
                "avg",
                base,
                0.1,
                5.0,
                0.02 if distinguishable else 0.2,
                "held-out n error",
                "resolvable" if distinguishable else "below what the law can resolve",
                (),
                distinguishable,
                "",
            )
            for base in ("uniform", "natural")
        }
    }


def test_judge_decisions_passes_only_claimed_gains_positive_on_every_seed_and_significant() -> None:
    win = _main([2.00, 2.01, 2.005], [2.10, 2.115, 2.10], [2.20, 2.22, 2.21])
    checks, v = judge_decisions(win, _statements(True))
    assert v == "PASS" and checks["avg"]["uniform"].outcome == "PASS"
    assert checks["avg"]["uniform"].test.gains == pytest.approx((0.1, 0.105, 0.095))
    # one seed lost: a claimed gain that fails, whatever the mean
    lost = _main([2.00, 2.00, 2.00], [2.50, 2.50, 1.99], [2.5, 2.5, 2.5])
    checks, v = judge_decisions(lost, _statements(True))
    assert v == "FAIL" and checks["avg"]["uniform"].outcome == "FAIL"
    assert checks["avg"]["natural"].outcome == "PASS"
    # positive on every seed but not significant: FAIL when claimed
    noisy = _main([2.00, 2.05, 2.02], [2.01, 2.20, 2.03], [2.20, 2.22, 2.21])
    checks, v = judge_decisions(noisy, _statements(True))
    assert checks["avg"]["uniform"].test.positive_every_seed
    assert not checks["avg"]["uniform"].test.significant and v == "FAIL"
    # the same runs when the tool called the gains within its error: reported, not judged
    checks, v = judge_decisions(lost, _statements(False))
    assert v == "NOT JUDGED" and {c.outcome for c in checks["avg"].values()} == {"not judged"}


def test_random_mixtures_are_fixed_by_the_seed_and_respect_the_floor() -> None:
    a = random_mixtures(["a", "b", "c", "d"], 6, min_weight=0.02, seed=1)
    assert a == random_mixtures(["a", "b", "c", "d"], 6, min_weight=0.02, seed=1)
    assert a != random_mixtures(["a", "b", "c", "d"], 6, min_weight=0.02, seed=2)
    for m in a:
        assert sum(m.values()) == pytest.approx(1.0, abs=1e-12)
        assert min(m.values()) >= 0.02 - 1e-4


def test_random_mixtures_stay_under_the_repetition_caps() -> None:
    domains = ["a", "b", "c", "d"]
    free = random_mixtures(domains, 6, min_weight=0.02, seed=1)
    # Caps that never bind leave the draws (hence the default demo's mixtures) as they were.
    assert random_mixtures(domains, 6, min_weight=0.02, seed=1, caps=[1.0] * 4) == free
    capped = random_mixtures(domains, 6, min_weight=0.02, seed=1, caps=[1.0, 1.0, 0.1, 1.0])
    assert max(m["c"] for m in free) > 0.1  # the cap binds on these draws
    assert all(m["c"] <= 0.1 for m in capped)
    assert all(sum(m.values()) == pytest.approx(1.0, abs=1e-12) for m in capped)
    with pytest.raises(ValueError, match="no mixture in 10,000 draws"):
        random_mixtures(domains, 1, min_weight=0.02, seed=1, caps=[0.03] * 4)


def test_proxy_plan_caps_a_small_domain_by_its_bytes(tmp_path) -> None:
    from demo_config import FULL, scaled
    from demo_sweep import make_proxy_plan

    data = DemoData(
        domains={
            "big": DomainData("big", "", "tb", "vb", train_bytes=10_000_000),
            "small": DomainData("small", "", "ts", "vs", train_bytes=100_000),
            "mid": DomainData("mid", "", "tm", "vm", train_bytes=2_000_000),
        },
        origin="test",
    )
    cfg = scaled(FULL, proxy_tokens=1_000_000, main_tokens=1_000_000)
    specs = make_proxy_plan(cfg, data, tmp_path)
    # At most max_repeat (4) epochs of 100 KB in a 1M-byte run: weight 0.4.
    worst = max(s.weights["small"] for s in specs)
    assert worst <= 4 * 100_000 / 1_000_000 + 1e-9
    uncapped = make_proxy_plan(
        scaled(cfg, max_repeat=1e9), replace_sizes(data, small=10_000_000), tmp_path / "u"
    )
    assert max(s.weights["small"] for s in uncapped) > worst  # the cap is what bound it


def replace_sizes(data: DemoData, **sizes: int) -> DemoData:
    from dataclasses import replace

    return DemoData(
        {n: replace(d, train_bytes=sizes.get(n, d.train_bytes)) for n, d in data.domains.items()},
        data.origin,
    )


def test_fingerprints_change_with_the_bytes_and_the_weights() -> None:
    from demo_optimize import weights_fingerprint

    def data(val_sha: str) -> DemoData:
        return DemoData({"a": DomainData("a", "s", "t", "v", val_sha256=val_sha)}, "x")

    assert data("1").fingerprint() == data("1").fingerprint() != data("2").fingerprint()
    w = {"a": 0.25, "b": 0.75}
    assert weights_fingerprint(w) == weights_fingerprint(dict(reversed(w.items())))
    assert weights_fingerprint(w) != weights_fingerprint({"a": 0.25 + 1e-12, "b": 0.75 - 1e-12})


def test_load_user_data_reads_a_shard_layout(tmp_path) -> None:
    from mixsampler import write_shards

    text = tmp_path / "t.txt"
    text.write_text("some text for a domain " * 40)
    for dom, splits in (("web", ("train", "val")), ("code", ("train", "val")), ("qa", ("val",))):
        for split in splits:
            write_shards([str(text)], tmp_path / "data" / dom / split, domain=dom, chunk_tokens=65)
    data = load_user_data(tmp_path / "data")
    assert data.train_domains == ("code", "web")
    assert data.targets == ("qa",)
    assert data.natural_weights() == {"code": 0.5, "web": 0.5}


@pytest.mark.parametrize(
    ("make", "name"),
    [(lambda: GPTConfig(n_layer=True), "n_layer"), (lambda: DataConfig(seq_len=True), "seq_len")],
)
def test_demo_sizes_refuse_a_bool(make: Callable[[], object], name: str) -> None:
    with pytest.raises(ValueError, match=rf"^{name} must be an integer >= 1, got True$"):
        make()
