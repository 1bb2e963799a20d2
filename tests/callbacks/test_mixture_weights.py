"""MixtureWeights: the mixture reaches the first batch, follows a schedule, survives a resume."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from tiny_lm import QUIET_TRAINER, TinyLM, collate_bytes, write_domain_shards
from torch.utils.data import DataLoader

from mixsampler import MixtureDataModule, MixtureDataset, laws
from mixsampler.callbacks import DomainLossLogger, MixtureWeights
from mixsampler.callbacks._common import count_parameters


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return write_domain_shards(tmp_path_factory.mktemp("mw_shards"), 64)


def _dm(shards: dict[str, str], num_workers: int = 0, batch_size: int = 4) -> MixtureDataModule:
    # The datamodule's own weights are the opposite of what the callbacks set.
    return MixtureDataModule(
        shards,
        {"a": 1.0, "b": 0.0},
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn="tiny_lm.collate_bytes",
    )


@pytest.mark.parametrize("num_workers", [0, 2])
def test_weights_file_reaches_the_first_batch(
    shards: dict[str, str], tmp_path: Path, num_workers: int
) -> None:
    path = tmp_path / "WEIGHTS.json"
    path.write_text(json.dumps({"weights": {"a": 0.0, "b": 1.0}, "predicted_loss": {}}))
    model = TinyLM()
    trainer = pl.Trainer(
        max_steps=2,
        default_root_dir=tmp_path,
        enable_checkpointing=False,
        callbacks=[MixtureWeights(weights_file=path)],
        **QUIET_TRAINER,
    )
    trainer.fit(model, datamodule=_dm(shards, num_workers))
    assert model.train_domains[0] == ["b"] * 4
    assert float(trainer.callback_metrics["mix/weight/b"]) == 1.0
    saved = json.loads((tmp_path / "mixture_weights.json").read_text())
    assert saved["weights"] == {"a": 0.0, "b": 1.0}
    assert saved["source"] == f"weights_file {path}"


def test_weights_reach_a_plain_dataloader_over_a_mixture_dataset(shards: dict[str, str]) -> None:
    # No datamodule: the callback finds the sampler behind the loader passed to fit().
    ds = MixtureDataset(shards, {"a": 1.0, "b": 0.0})
    loader = DataLoader(ds, batch_size=4, num_workers=2, collate_fn=collate_bytes)
    model = TinyLM()
    trainer = pl.Trainer(
        max_steps=1,
        enable_checkpointing=False,
        callbacks=[MixtureWeights({"a": 0.0, "b": 1.0}, filename=None)],
        **QUIET_TRAINER,
    )
    trainer.fit(model, loader)
    assert model.train_domains[0] == ["b"] * 4


def test_law_file_is_solved_at_this_runs_n_and_d(shards: dict[str, str], tmp_path: Path) -> None:
    # An additive law for target "a" that rewards domain b's data too, so the optimum is interior.
    params = {
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
    law = laws.FittedLaw("additive", ("a", "b"), "a", params)
    law_path = tmp_path / "LAW.json"
    laws.save_laws(law_path, {"a": law})
    model = TinyLM()
    fast = {"n_starts": 2}  # passed through to laws.optimize
    cb = MixtureWeights(
        law_file=law_path, planned_tokens=1e6, min_weight=0.05, optimize_kwargs=fast
    )
    trainer = pl.Trainer(
        max_steps=1,
        default_root_dir=tmp_path,
        enable_checkpointing=False,
        callbacks=[cb],
        **QUIET_TRAINER,
    )
    dm = _dm(shards, batch_size=8)
    trainer.fit(model, datamodule=dm)

    expected = laws.optimize(
        {"a": law}, model_size=count_parameters(model), n_tokens=1e6, min_weight=0.05, **fast
    ).weights
    assert 0.1 < expected["b"] < 0.9
    assert dm.weights == pytest.approx(expected, abs=1e-9)
    n_b = Counter(model.train_domains[0])["b"]
    assert abs(n_b - 8 * expected["b"]) <= 1  # the sampler keeps every prefix within 1 sample
    saved = json.loads((tmp_path / "mixture_weights.json").read_text())
    assert saved["solved"]["model_size"] == count_parameters(model)
    assert saved["solved"]["n_tokens"] == 1e6


def test_schedule_switches_at_the_step_and_survives_a_resume(
    shards: dict[str, str], tmp_path: Path
) -> None:
    torch.set_num_threads(1)
    schedule = [{"step": 0, "weights": {"a": 1, "b": 0}}, {"step": 3, "weights": {"a": 0, "b": 1}}]

    def cbs() -> list:
        return [
            MixtureWeights(schedule=schedule),
            DomainLossLogger(None, run="r", domains=["a"]),  # counts D, writes no rows
        ]

    full = TinyLM()
    pl.Trainer(
        max_steps=7,
        enable_checkpointing=False,
        default_root_dir=tmp_path / "full",
        callbacks=cbs(),
        **QUIET_TRAINER,
    ).fit(full, datamodule=_dm(shards))
    assert [set(b) for b in full.train_domains] == [{"a"}] * 3 + [{"b"}] * 4

    first, rest = TinyLM(), TinyLM()
    ck = ModelCheckpoint(dirpath=tmp_path / "ck", every_n_train_steps=5, save_top_k=-1)
    pl.Trainer(
        max_steps=5, default_root_dir=tmp_path / "run", callbacks=[*cbs(), ck], **QUIET_TRAINER
    ).fit(first, datamodule=_dm(shards))
    ckpt = tmp_path / "ck" / "epoch=0-step=5.ckpt"
    state = torch.load(ckpt, weights_only=False)["callbacks"]
    (mw_state,) = [v for k, v in state.items() if k.startswith("MixtureWeights")]
    assert mw_state["weights"] == {"a": 0.0, "b": 1.0} and mw_state["schedule_applied"] == 2

    resumed = cbs()
    dm = _dm(shards)
    pl.Trainer(
        max_steps=7,
        default_root_dir=tmp_path / "run",
        enable_checkpointing=False,
        callbacks=resumed,
        val_check_interval=2,
        limit_val_batches=0,
        **QUIET_TRAINER,
    ).fit(rest, datamodule=dm, ckpt_path=str(ckpt))
    assert first.train_keys + rest.train_keys == full.train_keys
    assert dm.weights == {"a": 0.0, "b": 1.0}
    # D keeps counting across the restart: the logger's restored counts plus the new batches.
    assert resumed[1].state_dict()["tokens"] == {"a": 3 * 4 * 16.0, "b": 4 * 4 * 16.0}


def test_schedule_with_workers_switches_at_the_exact_step(
    shards: dict[str, str], tmp_path: Path
) -> None:
    schedule = [{"step": 0, "weights": {"a": 1, "b": 0}}, {"step": 4, "weights": {"a": 0, "b": 1}}]
    model = TinyLM()
    dm = MixtureDataModule(
        shards, batch_size=4, num_workers=2, prefetch_factor=2, collate_fn="tiny_lm.collate_bytes"
    )
    pl.Trainer(
        max_steps=12,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
        callbacks=[MixtureWeights(schedule=schedule)],
        **QUIET_TRAINER,
    ).fit(model, datamodule=dm)
    kinds = [set(b) for b in model.train_domains]
    # The sampler switches at the exact sample: batch 4 is the first of the new mixture,
    # whatever the workers had prefetched.
    assert kinds == [{"a"}] * 4 + [{"b"}] * (12 - 4)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "give weights, weights_file or law_file"),
        (
            {"weights": {"a": 1}, "weights_file": "w.json"},
            r"give one of .*\['weights', 'weights_file'\]",
        ),
        ({"weights_file": "missing.json"}, "missing.json does not exist"),
        ({"weights": {"a": float("nan")}}, r"weights\['a'\] must be a finite number >= 0, got nan"),
        ({"law_file": "x.json"}, "planned_tokens must be a positive number"),
        (
            {
                "weights": {"a": 1},
                "schedule": [{"step": 2, "weights": {"a": 1}}, {"step": 2, "weights": {"a": 1}}],
            },
            "schedule steps must increase, got 2 after 2",
        ),
        ({"weights": {"a": 1}, "objective": {"a": 1.0}}, "objective is only used with law_file"),
        ({"weights": {"a": 1}, "model_size": "all"}, "model_size can be non_embedding, total"),
    ],
)
def test_constructor_validates(kwargs: dict, match: str) -> None:
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        MixtureWeights(**kwargs)


def test_malformed_weights_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "W.json"
    path.write_text(json.dumps({"a": 1.0}))
    with pytest.raises(ValueError, match=r"W.json: a weights file must hold .*'a'"):
        MixtureWeights(weights_file=path)
