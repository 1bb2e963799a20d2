"""limit_val_batches, the usual way to keep validation short, spread over the validation domains.

MixtureDataModule's one validation loader reads the domains in turn; Lightning's own cut (the
first L batches) would validate the first domains only. The datamodule gives each domain its
share instead, and the run table says how many batches each domain's loss averages.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import lightning.pytorch as pl
import pytest
from plain_lm import PlainLM
from tiny_lm import QUIET_TRAINER, write_tar_shards

from mixsampler import MixtureDataModule
from mixsampler.callbacks import DomainLossLogger, MixtureWeights

BATCH = 4
# Validation batches per domain at batch size 4: a 3 (4, 4, 1), b 3, c 4.
VAL_SIZES = {"a": 9, "b": 12, "c": 16}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("limits")
    for d in "ab":
        write_tar_shards(root / d, d, 32, per_shard=8)
    for d, n in VAL_SIZES.items():
        write_tar_shards(root / f"val_{d}", d, n, per_shard=4)
    return root


def _fit(root: Path, out: Path, limit: int | float | None, workers: int = 0) -> list[dict]:
    dm = MixtureDataModule(
        {"a": str(root / "a"), "b": str(root / "b")},
        val={d: str(root / f"val_{d}") for d in VAL_SIZES},
        batch_size=BATCH,
        num_workers=workers,
        collate_fn="plain_lm.collate",
    )
    kw = {} if limit is None else {"limit_val_batches": limit}
    trainer = pl.Trainer(
        max_steps=4,
        val_check_interval=2,
        default_root_dir=out,
        callbacks=[
            MixtureWeights({"a": 0.5, "b": 0.5}),
            DomainLossLogger(out / "runs.csv", run="r"),
        ],
        **{**QUIET_TRAINER, **kw},
    )
    pl.seed_everything(0)
    trainer.fit(PlainLM(), datamodule=dm)
    with open(out / "runs.csv", newline="") as f:
        return list(csv.DictReader(f))


def _batches(row: dict) -> dict[str, int]:
    return {d: int(row[f"val_batches_{d}"]) for d in VAL_SIZES}


def test_no_limit_counts_every_batch(data: Path, tmp_path: Path) -> None:
    rows = _fit(data, tmp_path, None)
    assert [int(r["step"]) for r in rows] == [2, 4]
    assert all(_batches(r) == {"a": 3, "b": 3, "c": 4} for r in rows)


@pytest.mark.parametrize("workers", [0, 2])
def test_int_limit_gives_each_domain_its_share(data: Path, tmp_path: Path, workers: int) -> None:
    full = _fit(data, tmp_path / "full", None)
    rows = _fit(data, tmp_path / "lim", 7, workers)  # 7 // 3 = 2 batches per domain
    assert [int(r["step"]) for r in rows] == [2, 4]
    for row, ref in zip(rows, full, strict=True):
        assert _batches(row) == {"a": 2, "b": 2, "c": 2}
        for d in VAL_SIZES:
            assert math.isfinite(float(row[f"{d}_loss"]))
        # Same training (same seed, data, weights): training is untouched by the limit...
        assert row["realized_a"] == ref["realized_a"]
        # ...and b's first 2 batches (8 of 12 samples) are not its whole set.
        assert float(row["b_loss"]) != pytest.approx(float(ref["b_loss"]), rel=1e-9)


def test_limit_covering_a_domain_leaves_its_loss_unchanged(data: Path, tmp_path: Path) -> None:
    # 12 // 3 = 4 batches per domain: a and b (3 batches) are read whole, c (4) too.
    full = _fit(data, tmp_path / "full", None)
    rows = _fit(data, tmp_path / "lim", 12)
    for row, ref in zip(rows, full, strict=True):
        assert _batches(row) == _batches(ref)
        for d in VAL_SIZES:
            assert float(row[f"{d}_loss"]) == pytest.approx(float(ref[f"{d}_loss"]), rel=1e-6)


def test_fraction_is_per_domain(data: Path, tmp_path: Path) -> None:
    rows = _fit(data, tmp_path, 0.5)  # a: int(3 * .5) = 1, b: 1, c: int(4 * .5) = 2
    assert [int(r["step"]) for r in rows] == [2, 4]
    assert all(_batches(r) == {"a": 1, "b": 1, "c": 2} for r in rows)


def test_fewer_batches_than_domains_is_refused(data: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"limit_val_batches=2 is fewer than the 3 validation"):
        _fit(data, tmp_path, 2)
