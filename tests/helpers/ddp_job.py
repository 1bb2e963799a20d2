"""One training run for the DDP test: `python ddp_job.py DEVICES OUT DATA` (Lightning re-runs
this file for rank 1), or `run(...)` in-process for the single-process reference.

Run as a script, its folder (tests/helpers) is first on the import path, so ``tiny_lm`` imports.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from tiny_lm import TinyLM

from mixsampler import MixtureDataModule
from mixsampler.callbacks import DomainLossLogger, MixtureWeights


def run(devices: int, out: Path, root: Path) -> None:
    torch.set_num_threads(1)
    pl.seed_everything(0)
    model = TinyLM(lr=0.0)  # identical weights in both runs: only the evaluation split differs
    dm = MixtureDataModule(
        {"a": str(root / "a"), "b": str(root / "b")},
        val={d: str(root / f"val_{d}") for d in "abc"},
        batch_size=2,
        val_batch_size=3,
        collate_fn="tiny_lm.collate_bytes",
    )
    callbacks = [
        MixtureWeights(weights_file=str(root / "WEIGHTS.json")),
        DomainLossLogger(str(out / "runs.csv"), run=f"ddp{devices}"),
        ModelCheckpoint(dirpath=str(out / "ck"), every_n_train_steps=2),
    ]
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        max_steps=2,
        val_check_interval=2,
        logger=False,
        # Without it the callbacks' files land in the working directory (the repo in CI).
        default_root_dir=str(out),
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=callbacks,
    )
    trainer.fit(model, datamodule=dm)
    (out / f"rank{trainer.global_rank}.json").write_text(
        json.dumps(
            {
                "val_keys": model.val_keys,
                "train_keys": model.train_keys,
                "train_domains": model.train_domains,
            }
        )
    )


if __name__ == "__main__":
    run(int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
