"""A byte-level bigram LM and helpers, tiny enough for a real Trainer on CPU in tests."""

from __future__ import annotations

import io
import tarfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torch.nn import functional as F

# Each domain draws bytes from its own small alphabet, so the domains have different losses.
ALPHABETS = {"a": b"ab", "b": b"0123456789", "c": b"xyz .", "d": b"qwertyuiop"}


class TinyLM(pl.LightningModule):
    """Embedding + linear bigram model following the validation_step contract.

    It records the domains of each training batch and the keys of each validation sample, so
    tests can check what the model was fed.
    """

    def __init__(self, dim: int = 8, lr: float = 0.05, vocab: int = 256) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.head = nn.Linear(dim, vocab)
        self.lr = lr
        self.train_domains: list[list[str]] = []
        self.train_keys: list[list[str]] = []
        self.val_keys: list[str] = []

    def token_losses(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        x, mask = batch["x"], batch["mask"].float()
        logits = self.head(self.emb(x[:, :-1]))
        loss = F.cross_entropy(logits.transpose(1, 2), x[:, 1:], reduction="none")
        m = mask[:, 1:]
        return (loss * m).sum(1), m.sum(1)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        self.train_domains.append(list(batch["__domain__"]))
        if "__key__" in batch:
            self.train_keys.append(list(batch["__key__"]))
        loss_sum, n = self.token_losses(batch)
        return loss_sum.sum() / n.sum()

    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0):
        if "__key__" in batch:
            self.val_keys.extend(batch["__key__"])
        loss_sum, n = self.token_losses(batch)
        return {"loss_sum": loss_sum, "n_tokens": n}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def text(domain: str, i: int, length: int) -> bytes:
    """Deterministic bytes of sample i of a domain."""
    g = torch.Generator().manual_seed(zlib.crc32(f"{domain}/{i}".encode()))
    alpha = ALPHABETS[domain]
    idx = torch.randint(len(alpha), (length,), generator=g).tolist()
    return bytes(alpha[j] for j in idx)


def samples(domain: str, n: int, *, min_len: int = 4, max_len: int = 12) -> list[dict[str, Any]]:
    """Variable-length samples as tensors, so token weighting differs from a mean of batches."""
    out = []
    for i in range(n):
        length = min_len + (i * 7) % (max_len - min_len + 1)
        x = torch.zeros(max_len, dtype=torch.long)
        x[:length] = torch.tensor(list(text(domain, i, length)))
        mask = torch.zeros(max_len, dtype=torch.bool)
        mask[:length] = True
        out.append({"x": x, "mask": mask, "__domain__": domain, "__key__": f"{domain}{i}"})
    return out


def collate_bytes(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Pad the ``bin`` bytes of each sample into (B, T) ids and a mask; keep the string keys."""
    seqs = [bytes(s["bin"]) for s in batch]
    width = max(len(s) for s in seqs)
    x = torch.zeros(len(seqs), width, dtype=torch.long)
    mask = torch.zeros(len(seqs), width, dtype=torch.bool)
    for i, s in enumerate(seqs):
        x[i, : len(s)] = torch.tensor(list(s), dtype=torch.long)
        mask[i, : len(s)] = True
    out: dict[str, Any] = {"x": x, "mask": mask}
    for key in ("__domain__", "__key__"):
        if all(key in s for s in batch):
            out[key] = [s[key] for s in batch]
    return out


def write_tar_shards(
    folder: Path, domain: str, n: int, *, per_shard: int = 8, length: int = 16
) -> list[str]:
    """Webdataset shards of fixed-length samples with keys ``bin`` and ``ntok``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for s in range(0, n, per_shard):
        path = folder / f"{domain}-{s // per_shard:06d}.tar"
        with tarfile.open(path, "w") as tf:
            for i in range(s, min(n, s + per_shard)):
                for ext, data in (("bin", text(domain, i, length)), ("ntok", str(length).encode())):
                    info = tarfile.TarInfo(f"{domain}{i:05d}.{ext}")
                    info.size = len(data)
                    tf.addfile(info, io.BytesIO(data))
        paths.append(str(path))
    return paths


def write_domain_shards(
    root: Path, n: int, *, domains: str = "ab", per_shard: int = 8
) -> dict[str, str]:
    """One folder of :func:`write_tar_shards` per domain under ``root``; domain -> folder."""
    for d in domains:
        write_tar_shards(root / d, d, n, per_shard=per_shard)
    return {d: str(root / d) for d in domains}


# Trainer arguments of every test run: CPU, no logger, no progress output, no sanity check.
QUIET_TRAINER: dict[str, Any] = dict(
    accelerator="cpu",
    logger=False,
    enable_progress_bar=False,
    enable_model_summary=False,
    num_sanity_val_steps=0,
)

HERE_DIR = str(Path(__file__).resolve().parent)
