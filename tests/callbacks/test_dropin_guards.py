"""Every set-up that used to give an empty, duplicated or silently other result: a clear error."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from plain_lm import PlainLM
from tiny_lm import QUIET_TRAINER, write_domain_shards

from mixsampler import MixtureDataModule
from mixsampler.callbacks import DomainLossLogger, MixtureWeights
from mixsampler.callbacks._batches import val_parts


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return write_domain_shards(tmp_path_factory.mktemp("guards"), 24)


def _dm(shards: dict[str, str], val: bool = True) -> MixtureDataModule:
    return MixtureDataModule(
        shards,
        val={"a": shards["a"]} if val else None,
        batch_size=2,
        val_batch_size=8,
        collate_fn="plain_lm.collate",
    )


def _fit(shards, tmp_path, callbacks, model=None, dm=None, ckpt=None, **kw) -> pl.Trainer:
    defaults = {"max_steps": 2, "val_check_interval": 2, "limit_val_batches": 1}
    trainer = pl.Trainer(
        **{**QUIET_TRAINER, "enable_checkpointing": False, **defaults, **kw},
        callbacks=callbacks,
        default_root_dir=tmp_path,
    )
    trainer.fit(model or PlainLM(), datamodule=dm or _dm(shards), ckpt_path=ckpt)
    return trainer


def test_an_endless_loader_without_val_check_interval_is_refused(shards, tmp_path) -> None:
    logger = DomainLossLogger(tmp_path / "runs.csv")
    with pytest.raises(ValueError, match=r"endless.*Trainer\(val_check_interval=N\)"):
        _fit(shards, tmp_path, [logger], val_check_interval=None)


def test_a_model_without_validation_step_is_refused(shards, tmp_path) -> None:
    class NoVal(PlainLM):
        validation_step = pl.LightningModule.validation_step

    with pytest.raises(ValueError, match="NoVal has no validation_step.*write none"):
        _fit(shards, tmp_path, [DomainLossLogger(tmp_path / "runs.csv")], model=NoVal())


@pytest.mark.parametrize("how", ["no val data", "limit_val_batches=0"])
def test_no_validation_data_is_refused(shards, tmp_path, how: str) -> None:
    kw = {"limit_val_batches": 0} if how != "no val data" else {}
    dm = _dm(shards, val=how != "no val data")
    with pytest.raises(ValueError, match="no validation data"):
        _fit(shards, tmp_path, [DomainLossLogger(tmp_path / "runs.csv")], dm=dm, **kw)


def test_two_loggers_coexist_with_their_own_files_and_collide_on_one(shards, tmp_path) -> None:
    one = DomainLossLogger(tmp_path / "1.csv")
    two = DomainLossLogger(tmp_path / "2.csv", prefix="val2")  # metrics apart, states apart
    ck = ModelCheckpoint(dirpath=tmp_path / "ck")
    _fit(shards, tmp_path, [one, two, ck], enable_checkpointing=True)
    rows = [list(csv.DictReader(open(tmp_path / f"{i}.csv"))) for i in (1, 2)]
    assert rows[0] == rows[1] and len(rows[0]) == 1
    # N both ways, whatever model_size says.
    assert int(rows[0][0]["model_size_total"]) == sum(p.numel() for p in PlainLM().parameters())
    assert int(rows[0][0]["model_size_non_embedding"]) == 8 * 256 + 256
    states = torch.load(next((tmp_path / "ck").glob("*.ckpt")), weights_only=False)["callbacks"]
    assert len([k for k in states if k.startswith("DomainLossLogger")]) == 2
    same = [DomainLossLogger(tmp_path / "3.csv"), DomainLossLogger(tmp_path / "3.csv", prefix="x")]
    with pytest.raises(ValueError, match="two DomainLossLoggers write.*3.csv"):
        _fit(shards, tmp_path, same)


def test_two_mixture_weights_are_refused(shards, tmp_path) -> None:
    # Say a planned config's and one added by hand. (With one filename, Lightning itself refuses
    # two states under one key.)
    both = [MixtureWeights({"a": 1, "b": 0}), MixtureWeights({"a": 0, "b": 1}, filename="w.json")]
    with pytest.raises(ValueError, match="2 MixtureWeights callbacks"):
        _fit(shards, tmp_path, both, limit_val_batches=0)


def test_mixture_weights_says_what_it_set_and_writes_beside_the_run(
    shards, tmp_path, caplog, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path / "..")
    caplog.set_level(logging.INFO)
    _fit(shards, tmp_path / "run", [MixtureWeights({"a": 3, "b": 1})], limit_val_batches=0)
    assert "MixtureWeights: training mixture a 0.75, b 0.25 (from weights)" in caplog.text
    assert (tmp_path / "run" / "mixture_weights.json").is_file()  # logger=False: root dir
    assert not (tmp_path / ".." / "mixture_weights.json").exists()


def _weights(path: Path, weights: dict, **extra) -> Path:
    path.write_text(json.dumps({"weights": weights, **extra}))
    return path


def test_unconverged_weights_are_refused_unless_allowed(tmp_path) -> None:
    path = _weights(tmp_path / "W.json", {"a": 0.5, "b": 0.5}, success=False, message="gap 0.05")
    with pytest.raises(ValueError, match="did not converge.*allow_unconverged=True"):
        MixtureWeights(weights_file=path)
    assert MixtureWeights(weights_file=path, allow_unconverged=True).state_dict()["weights"]


def test_resume_with_other_weights_is_an_error_unless_chosen(shards, tmp_path) -> None:
    old = _weights(tmp_path / "old.json", {"a": 1.0, "b": 0.0})
    new = _weights(tmp_path / "new.json", {"a": 0.0, "b": 1.0})
    ck = ModelCheckpoint(dirpath=tmp_path / "ck", every_n_train_steps=1, save_top_k=-1)
    kw = {"limit_val_batches": 0, "enable_checkpointing": True}
    _fit(shards, tmp_path, [MixtureWeights(weights_file=old), ck], max_steps=1, **kw)
    ckpt = str(tmp_path / "ck" / "epoch=0-step=1.ckpt")
    with pytest.raises(ValueError, match=r"trained on \{a: 1, b: 0\}.*on_resume='checkpoint'"):
        _fit(shards, tmp_path, [MixtureWeights(weights_file=new)], ckpt=ckpt, limit_val_batches=0)

    for mode, first in (("checkpoint", "a"), ("new", "b")):
        model, dm = PlainLM(), _dm(shards)
        cb = MixtureWeights(weights_file=new, on_resume=mode)
        _fit(shards, tmp_path / mode, [cb], model=model, dm=dm, ckpt=ckpt, limit_val_batches=0)
        assert dm.weights[first] == 1.0
        assert bool((model.seen[0] >= ord("a")).all()) == (first == "a")  # a: "ab", b: digits
        saved = json.loads((tmp_path / mode / "mixture_weights.json").read_text())
        # The file names where its weights came from, never one file beside another's weights.
        assert saved["source"] == f"weights_file {old if first == 'a' else new}"


def test_a_scalar_loss_over_mixed_domains_is_refused_and_unknown_lengths_warn() -> None:
    with pytest.raises(ValueError, match=r"one scalar loss for a batch of domains \['a', 'b'\]"):
        val_parts(torch.tensor(1.0), ("a", "b"), (4, 4), None)
    with pytest.raises(ValueError, match="samples and tokens are not known"):
        val_parts(torch.tensor(1.0), None, None, "a")
    with pytest.warns(UserWarning, match="weighted by their samples"):
        name, loss_sum, n = val_parts(torch.tensor(2.0), ("a", "a", "a"), None, None, set())
    assert (name, float(loss_sum), float(n)) == ("a", 6.0, 3.0)


def test_a_batch_limit_below_one_per_domain_is_refused(shards, tmp_path) -> None:
    # limit_val_batches is spread over the domains (tests/callbacks/test_dropin_limits.py);
    # 1 batch cannot be shared by 2 domains, so it is refused before a row is written.
    dm = MixtureDataModule(
        shards, val=shards, batch_size=2, val_batch_size=8, collate_fn="plain_lm.collate"
    )
    with pytest.raises(ValueError, match=r"limit_val_batches=1 is fewer than the 2 validation"):
        _fit(shards, tmp_path, [DomainLossLogger(tmp_path / "runs.csv")], dm=dm)
