"""Errors about a sample's token count name the shard and the sample's key."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from image_model import write_image_shards

from mixsampler import MixtureDataset


def _bad_ntok_shard(folder: Path) -> Path:
    folder.mkdir(parents=True)
    path = folder / "t-000000.tar"
    with tarfile.open(path, "w") as tf:
        for ext, data in (("bin", b"hello"), ("ntok", b"five")):
            info = tarfile.TarInfo(f"doc00007.{ext}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def test_missing_ntok_in_tokens_unit_names_shard_and_key(tmp_path: Path) -> None:
    write_image_shards(tmp_path / "img", "img", 4)
    ds = MixtureDataset({"img": str(tmp_path / "img")}, {"img": 1.0}, unit="tokens", rank=0,
                        world_size=1)  # fmt: skip
    with pytest.raises(ValueError, match=r"without an 'ntok' field \(shard .*img-000000\.tar"):
        next(iter(ds))
    with pytest.raises(ValueError, match=r"key 'img0000[0-3]'"):
        next(iter(ds))


def test_a_bad_ntok_names_the_value_shard_and_key(tmp_path: Path) -> None:
    path = _bad_ntok_shard(tmp_path / "t")
    ds = MixtureDataset({"t": str(tmp_path / "t")}, {"t": 1.0}, rank=0, world_size=1)
    with pytest.raises(ValueError, match=r"'ntok' field must be a whole number, got b'five'") as e:
        next(iter(ds))
    assert str(path) in str(e.value) and "'doc00007'" in str(e.value)
