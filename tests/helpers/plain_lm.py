"""A model written the common way, with no mixsampler import: tuple batches, scalar losses.

Its ``collate`` is the one line of data code a user adds: shard samples (``bin`` = the text's
bytes) to the ``(inputs, target)`` tuple the model already takes.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torch.nn import functional as F


class PlainLM(pl.LightningModule):
    """Byte bigram LM; records the inputs it trained on so tests can check what it was fed."""

    def __init__(self, dim: int = 8, vocab: int = 256) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.head = nn.Linear(dim, vocab)
        self.seen: list[torch.Tensor] = []

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.head(self.emb(inputs))

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        inputs, target = batch
        return F.cross_entropy(self(inputs).transpose(1, 2), target)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        self.seen.append(batch[0].detach().cpu())
        return self.loss(batch)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        return self.loss(batch)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05)


def collate(samples: list[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed-length byte sequences to ``(inputs, target)``, shifted by one."""
    x = torch.tensor([list(bytes(s["bin"])) for s in samples], dtype=torch.long)
    return x[:, :-1], x[:, 1:]
