"""MixtureWeights decides through laws.decision: untrusted laws refused, sizes compared."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import lightning.pytorch as pl
import pytest
from tiny_lm import QUIET_TRAINER, TinyLM, write_domain_shards

from mixsampler import MixtureDataModule, laws
from mixsampler.callbacks import MixtureWeights
from mixsampler.callbacks._common import count_parameters
from mixsampler.laws.decision import UntrustedLawError

PARAMS = {
    "E": 1.0,
    "C_a": 2.0,
    "C_b": 1.5,
    "gamma_a": 0.4,
    "gamma_b": 0.5,
    "A": 0.3,
    "alpha": 0.3,
    "B": 0.4,
    "beta": 0.3,
}


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return write_domain_shards(tmp_path_factory.mktemp("mwd_shards"), 64)


def _fit(tmp_path: Path, cb: MixtureWeights, shards: dict[str, str]) -> pl.Trainer:
    dm = MixtureDataModule(
        shards, {"a": 1.0, "b": 0.0}, batch_size=4, collate_fn="tiny_lm.collate_bytes"
    )
    trainer = pl.Trainer(
        max_steps=1,
        default_root_dir=tmp_path,
        enable_checkpointing=False,
        callbacks=[cb],
        **QUIET_TRAINER,
    )
    trainer.fit(TinyLM(), datamodule=dm)
    return trainer


def _law_file(tmp_path: Path, **fit: object) -> Path:
    law = laws.FittedLaw("additive", ("a", "b"), "a", PARAMS).with_fit_info(**fit)
    path = tmp_path / "LAW.json"
    laws.save_laws(path, {"a": law})
    return path


def test_untrusted_law_is_refused_unless_allowed(shards: dict[str, str], tmp_path: Path) -> None:
    path = _law_file(tmp_path, converged=False, train_mre=0.3)
    cb = MixtureWeights(law_file=path, planned_tokens=1e6, optimize_kwargs={"n_starts": 2})
    with pytest.raises(UntrustedLawError, match="did not converge.*allow_untrusted_law=True"):
        _fit(tmp_path, cb, shards)
    cb = MixtureWeights(
        law_file=path,
        planned_tokens=1e6,
        optimize_kwargs={"n_starts": 2},
        allow_untrusted_law=True,
    )
    _fit(tmp_path, cb, shards)
    saved = json.loads((tmp_path / "mixture_weights.json").read_text())
    assert any("did not converge" in s for s in saved["solved"]["decision"]["issues"])


def test_law_file_decision_matches_the_cli_path(shards: dict[str, str], tmp_path: Path) -> None:
    path = _law_file(tmp_path, converged=True, train_mre=0.01, heldout={"n": {"mre": 0.02}})
    cb = MixtureWeights(law_file=path, planned_tokens=1e6)
    _fit(tmp_path, cb, shards)
    saved = json.loads((tmp_path / "mixture_weights.json").read_text())
    n = count_parameters(TinyLM())
    dec = laws.decision.decide(laws.load_laws(path), model_size=n, n_tokens=1e6)
    assert saved["weights"] == pytest.approx(dec.result.weights, abs=1e-9)
    assert saved["solved"]["decision"]["baselines"]["uniform"]["gain"] == pytest.approx(
        dec.baselines["uniform"]["gain"]
    )


def _weights_file(tmp_path: Path, n: float, d: float) -> Path:
    path = tmp_path / "WEIGHTS.json"
    wf = laws.WeightsFile({"a": 0.3, "b": 0.7}, model_size=n, n_tokens=d)
    laws.write_weights(path, wf)
    return path


def test_weights_solved_for_another_size_warn_or_raise(
    shards: dict[str, str], tmp_path: Path
) -> None:
    n = count_parameters(TinyLM())
    far = _weights_file(tmp_path, 30 * n, 4800)
    with pytest.warns(UserWarning, match=r"solved for N = .*30x.*D = 4.8e\+03 tokens"):
        _fit(tmp_path, MixtureWeights(weights_file=far, planned_tokens=320), shards)
    cb = MixtureWeights(weights_file=far, planned_tokens=320, size_mismatch="error")
    with pytest.raises(ValueError, match="solved for N = .*size_mismatch='warn'"):
        _fit(tmp_path, cb, shards)
    near = _weights_file(tmp_path, 1.5 * n, 500)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*solved for.*")
        _fit(tmp_path, MixtureWeights(weights_file=near, planned_tokens=320), shards)
    with pytest.raises(ValueError, match="size_mismatch can be warn, error, ignore, got 'x'"):
        MixtureWeights(weights_file=near, size_mismatch="x")
