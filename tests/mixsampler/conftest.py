"""Tiny webdataset shards for the sampler tests."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
import torch
import webdataset as wds

torch.set_num_threads(1)


def _write_domain(
    folder: os.PathLike | str,
    name: str,
    shards: int,
    per_shard: int,
    length: Callable[[int], int] = lambda i: 1 + i % 7,
) -> list[str]:
    """Write ``shards`` tar files of ``per_shard`` samples; sample ``i`` has ``length(i)`` bytes."""
    paths = []
    index = 0
    for s in range(shards):
        path = os.path.join(os.fspath(folder), f"{name}-{s:06d}.tar")
        with wds.TarWriter(path) as sink:
            for _ in range(per_shard):
                n = length(index)
                sink.write(
                    {
                        "__key__": f"{name}{index:06d}",
                        "bin": bytes([index % 256]) * n,
                        "ntok": str(n).encode(),
                    }
                )
                index += 1
        paths.append(path)
    return paths


@pytest.fixture
def shards(tmp_path):
    """Factory: ``shards(name, n_shards, per_shard)`` -> list of shard paths in tmp_path."""

    def make(name: str, n: int, per_shard: int, **kwargs) -> list[str]:
        return _write_domain(tmp_path, name, n, per_shard, **kwargs)

    return make


@pytest.fixture
def write_domain():
    """The shard writer itself, for tests that pick their own folder (hypothesis examples)."""
    return _write_domain
