"""Images through the drop-in path: decode + augmentation hook, D in samples, exact resume.

``image_model`` is an image classifier written the common way over ``npy`` + ``cls`` shards;
its transform is webdataset's decode / to_tuple plus a random jitter drawn from numpy's and
torch's global generators.
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from image_model import ImageClassifier, write_image_shards
from lightning.pytorch.callbacks import ModelCheckpoint
from tiny_lm import QUIET_TRAINER

from mixsampler import MixtureDataModule
from mixsampler.callbacks import DomainLossLogger, MixtureWeights

BATCH, STEPS, EVERY = 4, 6, 3


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("images")
    write_image_shards(root / "cats", "cats", 40, offset=0.0)
    write_image_shards(root / "dogs", "dogs", 40, offset=2.0)
    write_image_shards(root / "val_cats", "cats", 8, offset=0.0)
    write_image_shards(root / "val_dogs", "dogs", 8, offset=2.0)
    return root


def _dm(root: Path, workers: int) -> MixtureDataModule:
    return MixtureDataModule(
        {"cats": str(root / "cats"), "dogs": str(root / "dogs")},
        val={"cats": str(root / "val_cats"), "dogs": str(root / "val_dogs")},
        batch_size=BATCH,
        num_workers=workers,
        unit="samples",
        transform="image_model.train_transform",
        val_transform="image_model.val_transform",
    )


def _fit(root, out, workers, max_steps, ckpt=None, every=None):
    model = ImageClassifier()
    callbacks = [
        MixtureWeights({"cats": 0.75, "dogs": 0.25}),
        DomainLossLogger(out / "runs.csv", run="r"),
    ]
    if every:
        callbacks.append(
            ModelCheckpoint(dirpath=out / "ck", every_n_train_steps=every, save_top_k=-1)
        )
    trainer = pl.Trainer(
        max_steps=max_steps,
        val_check_interval=EVERY,
        limit_val_batches=2,
        default_root_dir=out,
        callbacks=callbacks,
        **QUIET_TRAINER,
    )
    pl.seed_everything(0)
    trainer.fit(model, datamodule=_dm(root, workers), ckpt_path=str(ckpt) if ckpt else None)
    return model


def _rows(out: Path) -> list[dict]:
    with open(out / "runs.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_transform_resolve_by_dotted_path_and_validate() -> None:
    with pytest.raises(ValueError, match="transform='image_model.nope' cannot be imported"):
        MixtureDataModule({"a": [1]}, transform="image_model.nope")


@pytest.mark.parametrize("workers", [0, 2])
def test_image_rows_have_exact_d_and_no_text_warnings(data: Path, tmp_path: Path, workers) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = _fit(data, tmp_path, workers, STEPS)
    texts = [str(w.message) for w in caught if "DomainLossLogger" in str(w.message)]
    assert texts == []
    rows = _rows(tmp_path)
    assert [int(r["step"]) for r in rows] == [3, 6]
    for r in rows:
        assert r["n_tokens_unit"] == "samples"
        # D in samples, exactly the samples trained on (no prefetched batch counted).
        assert int(r["n_tokens"]) == int(r["step"]) * BATCH
        assert float(r["realized_cats"]) + float(r["realized_dogs"]) == pytest.approx(1.0)
        assert float(r["realized_cats"]) == pytest.approx(0.75, abs=1 / (int(r["step"]) * 4))
        assert (int(r["val_batches_cats"]), int(r["val_batches_dogs"])) == (1, 1)
        assert float(r["cats_loss"]) > 0 and float(r["dogs_loss"]) > 0
    # The augmentation ran: decoded float images, jittered (not the stored values).
    assert model.seen[0].dtype == torch.float32 and model.seen[0].shape == (BATCH, 4, 4)


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_repeats_the_same_augmentations(data: Path, tmp_path: Path, workers) -> None:
    full = _fit(data, tmp_path / "full", workers, STEPS)
    first = _fit(data, tmp_path / "first", workers, 3, every=3)
    rest = _fit(
        data, tmp_path / "rest", workers, STEPS, ckpt=tmp_path / "first/ck/epoch=0-step=3.ckpt"
    )
    assert len(full.seen) == STEPS
    got = first.seen + rest.seen
    assert len(got) == STEPS
    for a, b in zip(full.seen, got, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # And the augmentation is random, not a no-op: two draws of one sample differ.
    assert not torch.equal(full.seen[0], full.seen[1])
