"""Drop-in: a model written the common way trains on a mixture with the README's changes only.

``plain_lm.PlainLM`` takes ``(inputs, target)`` tuples, returns a scalar validation loss and
imports nothing of mixsampler. The changes are the README's: a datamodule with its collate, the
two callbacks, and ``val_check_interval``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from plain_lm import PlainLM
from tiny_lm import QUIET_TRAINER, text, write_tar_shards
from torch.nn import functional as F

from mixsampler import MixtureDataModule
from mixsampler.callbacks import DomainLossLogger, MixtureWeights

STEPS, EVERY, BATCH, LENGTH = 7, 3, 4, 16


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dropin")
    for d in "ab":
        write_tar_shards(root / d, d, 48, per_shard=8)
    write_tar_shards(root / "val_a", "a", 9, per_shard=4)  # 3 batches of 4, 4, 1
    write_tar_shards(root / "val_c", "c", 6, per_shard=6)  # a held-out target
    return root


def _fit(root: Path, out: Path, workers: int, max_steps: int, ckpt: Path | None = None):
    dm = MixtureDataModule(
        {"a": str(root / "a"), "b": str(root / "b")},
        val={"a": str(root / "val_a"), "c": str(root / "val_c")},
        batch_size=BATCH,
        num_workers=workers,
        collate_fn="plain_lm.collate",
    )
    model = PlainLM()
    callbacks = [
        MixtureWeights({"a": 0.75, "b": 0.25}),
        DomainLossLogger(out / "runs.csv", run="r"),
        ModelCheckpoint(dirpath=out / "ck", every_n_train_steps=2, save_top_k=-1),
    ]
    trainer = pl.Trainer(
        max_steps=max_steps,
        val_check_interval=EVERY,
        default_root_dir=out,
        callbacks=callbacks,
        **QUIET_TRAINER,
    )
    trainer.fit(model, datamodule=dm, ckpt_path=str(ckpt) if ckpt else None)
    return model


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _direct_loss(model: PlainLM, domain: str, n: int) -> float:
    x = torch.tensor([list(text(domain, i, LENGTH)) for i in range(n)])
    with torch.no_grad():
        return float(F.cross_entropy(model(x[:, :-1]).transpose(1, 2), x[:, 1:]))


@pytest.mark.parametrize("workers", [0, 2])
def test_a_plain_model_gets_exact_rows(data: Path, tmp_path: Path, workers: int) -> None:
    pl.seed_everything(0)
    model = _fit(data, tmp_path, workers, STEPS)
    rows = _rows(tmp_path / "runs.csv")
    # One row per validation, and one more at the last step (7 is not a multiple of 3).
    assert [int(r["step"]) for r in rows] == [3, 6, 7]
    assert [int(r["n_tokens"]) for r in rows] == [s * BATCH * LENGTH for s in (3, 6, 7)]
    # Realized shares: the domains of the batches the model really trained on, told apart by
    # their alphabets (a: "ab", b: digits).
    fed = torch.cat(model.seen)
    assert len(fed) == STEPS * BATCH
    is_a = (fed[:, 0] == ord("a")) | (fed[:, 0] == ord("b"))
    assert float(rows[-1]["realized_a"]) == pytest.approx(float(is_a.float().mean()), abs=1e-12)
    assert abs(float(rows[-1]["realized_a"]) - 0.75) <= 1 / (STEPS * BATCH) + 1e-12
    # The scalar batch means, weighted by tokens, are the loss over the whole set (exact for
    # fixed-length samples; val_a's last batch holds 1 sample, not 4).
    assert float(rows[-1]["a_loss"]) == pytest.approx(_direct_loss(model, "a", 9), rel=1e-6)
    assert float(rows[-1]["c_loss"]) == pytest.approx(_direct_loss(model, "c", 6), rel=1e-6)

    # Resume from step 4, older than the last row: rows after it are replaced, not added.
    pl.seed_everything(0)
    _fit(data, tmp_path, workers, STEPS, ckpt=tmp_path / "ck" / "epoch=0-step=4.ckpt")
    again = _rows(tmp_path / "runs.csv")
    assert [(r["run"], int(r["step"])) for r in again] == [("r", 3), ("r", 6), ("r", 7)]
    for col in ("n_tokens", "realized_a", "weight_a"):
        assert [r[col] for r in again] == [r[col] for r in rows]
