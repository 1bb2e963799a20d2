"""An image classifier written the common way, over webdataset shards of ``npy`` + ``cls``.

The data code is webdataset's usual ``.decode().to_tuple("npy", "cls")`` plus a random
augmentation, as a ``transform`` on MixtureDataModule's resumable path; the model takes
``(images, labels)`` tuples and returns a scalar loss, and imports nothing of mixsampler.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from mixsampler.transforms import Compose, Decode, ToTuple

SIDE, CLASSES = 4, 3


class ImageClassifier(pl.LightningModule):
    """Linear classifier on tiny single-channel images; records the inputs it trained on."""

    def __init__(self, side: int = SIDE, classes: int = CLASSES) -> None:
        super().__init__()
        self.head = nn.Linear(side * side, classes)
        self.seen: list[torch.Tensor] = []

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        images, labels = batch
        self.seen.append(images.detach().cpu().clone())
        return F.cross_entropy(self.head(images.flatten(1)), labels)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        images, labels = batch
        return F.cross_entropy(self.head(images.flatten(1)), labels)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def jitter(sample: tuple[np.ndarray, int]) -> tuple[torch.Tensor, int]:
    """A random augmentation drawing from numpy's and torch's global generators."""
    image, label = sample
    x = torch.from_numpy(np.asarray(image, dtype=np.float32)).clone()
    x = x + 0.1 * torch.randn_like(x) + float(np.random.uniform(-0.5, 0.5))
    return x, int(label)


# Named by dotted path in MixtureDataModule(transform="image_model.train_transform").
train_transform = Compose([Decode(), ToTuple("npy", "cls"), jitter])
val_transform = Compose([Decode(), ToTuple("npy", "cls")])


def write_image_shards(
    folder: Path, domain: str, n: int, *, per_shard: int = 8, offset: float = 0.0
) -> list[str]:
    """Shards of ``npy`` (a SIDE x SIDE float32 image) and ``cls`` (its label, ASCII digits)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(list(domain.encode()))
    paths = []
    for s in range(0, n, per_shard):
        path = folder / f"{domain}-{s // per_shard:06d}.tar"
        with tarfile.open(path, "w") as tf:
            for i in range(s, min(n, s + per_shard)):
                label = i % CLASSES
                image = (rng.normal(size=(SIDE, SIDE)) + label + offset).astype(np.float32)
                buf = io.BytesIO()
                np.save(buf, image)
                members: dict[str, Any] = {"npy": buf.getvalue(), "cls": str(label).encode()}
                for ext, data in members.items():
                    info = tarfile.TarInfo(f"{domain}{i:05d}.{ext}")
                    info.size = len(data)
                    tf.addfile(info, io.BytesIO(data))
        paths.append(str(path))
    return paths
