"""A resume from a checkpoint older than the run table's last row replaces rows, never adds."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning.pytorch as pl
import pytest
from lightning.pytorch.callbacks import ModelCheckpoint
from tiny_lm import QUIET_TRAINER, TinyLM, write_domain_shards

from mixsampler import MixtureDataModule, laws
from mixsampler.callbacks import DomainLossLogger


def _dm(shards: dict[str, str]) -> MixtureDataModule:
    return MixtureDataModule(
        shards,
        {"a": 0.75, "b": 0.25},
        val={"a": shards["a"]},
        batch_size=4,
        collate_fn="tiny_lm.collate_bytes",
    )


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _trainer(tmp_path: Path, path: Path, max_steps: int, **kw) -> pl.Trainer:
    ck = ModelCheckpoint(dirpath=tmp_path / "ck", every_n_train_steps=2, save_top_k=-1)
    return pl.Trainer(
        max_steps=max_steps,
        val_check_interval=1,
        limit_val_batches=2,
        callbacks=[DomainLossLogger(path, run="r"), ck],
        default_root_dir=tmp_path,
        **{**QUIET_TRAINER, **kw},
    )


def test_resume_from_an_older_checkpoint_replaces_the_later_rows(tmp_path: Path) -> None:
    shards = write_domain_shards(tmp_path / "data", 40)
    ref_path, path = tmp_path / "ref.csv", tmp_path / "runs.csv"
    pl.seed_everything(0)
    _trainer(tmp_path / "ref", ref_path, 6).fit(TinyLM(), datamodule=_dm(shards))
    pl.seed_everything(0)
    _trainer(tmp_path, path, 6).fit(TinyLM(), datamodule=_dm(shards))
    assert [r["step"] for r in _rows(path)] == [str(s) for s in range(1, 7)]

    # Back to step 2: rows 3..6 are measured again, and replace the first ones.
    pl.seed_everything(0)
    ckpt = tmp_path / "ck" / "epoch=0-step=2.ckpt"
    _trainer(tmp_path, path, 6).fit(TinyLM(), datamodule=_dm(shards), ckpt_path=str(ckpt))
    rows = _rows(path)
    assert [(r["run"], r["step"]) for r in rows] == [("r", str(s)) for s in range(1, 7)]
    # The data after the resume is exactly the uninterrupted run's: same D, same shares.
    ref = _rows(ref_path)
    for col in ("n_tokens", "realized_a", "model_size"):
        assert [r[col] for r in rows] == [r[col] for r in ref]
    assert len(laws.load_runs([str(path)]).n_tokens) == 6


def test_a_fresh_run_under_a_name_the_table_holds_is_refused(tmp_path: Path) -> None:
    shards = write_domain_shards(tmp_path / "data", 16)
    path = tmp_path / "runs.csv"
    _trainer(tmp_path, path, 1).fit(TinyLM(), datamodule=_dm(shards))
    with pytest.raises(ValueError, match=r"already holds 1 rows of run 'r'.*ckpt_path"):
        _trainer(tmp_path, path, 1).fit(TinyLM(), datamodule=_dm(shards))
