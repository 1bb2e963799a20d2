"""Reading one domain for one slot: webdataset shards, map-style datasets and plain iterables.

A *slot* is one DataLoader worker on one rank (``rank * num_workers + worker``) out of
``slots = world_size * num_workers``. For each pass over a domain, the slots together see every
sample exactly once:

- shards: each shard has an index of its samples' byte offsets (:mod:`mixsampler.index`,
  built once and cached beside it). Pass ``p`` lays the shards end to end in an order seeded
  by ``(seed, domain, p)`` and gives slot ``s`` the positions ``[s * n // slots, (s + 1) * n //
  slots)`` of its ``n`` samples: every slot gets an equal share (within one sample) of every
  pass, whatever the ratio of shards to slots, and reads only those samples. Samples are
  shuffled in blocks of ``shuffle_buffer`` positions, each permuted by an RNG seeded from
  ``(seed, domain, pass, block start)``, and read one seek each as they are emitted, so the
  first sample does not wait for a block. The state is ``(pass, emitted)``: a resume is O(1).
  ``pipe:`` and remote URLs cannot seek: they give the same stream, but every process streams
  each shard once to index it and each block is read by streaming its shard up to it (a
  warning says so).
- map-style datasets: a full permutation of ``range(len(ds))`` per pass, slot ``s`` takes
  ``perm[s::slots]``; the state is ``(pass, position)``.
- other iterables: every slot iterates the whole iterable and keeps every ``slots``-th item,
  block-shuffled like shards; a resume re-iterates the current pass up to the block start,
  because a generic iterable cannot seek. Re-iterable sources (``iter()`` gives a fresh
  iterator) are needed for more than one pass.

The readers are in :mod:`mixsampler.readers` and :mod:`mixsampler.tarreader` (their names are
importable from here too).

Example:
    >>> spec = source_spec("web", ["a.tar"], check=False)
    >>> type(spec).__name__
    'ShardSource'
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterable
from typing import Any

from mixsampler.index import shard_info
from mixsampler.readers import END as END
from mixsampler.readers import IterReader, MapReader, ReaderContext
from mixsampler.tario import check_shards, expand_shards, is_local
from mixsampler.tarreader import TarReader

_SHARD_NAME = re.compile(r"(\.tar|\.tgz|\.tar\.gz)$|\{.*\}|^pipe:|://", re.IGNORECASE)


def _looks_like_shards(source: Any) -> bool:
    """A string is always a shard spec; a list only if every item names shards.

    So a list of texts (``["some text", ...]``) is data, not a list of missing files.
    """
    if isinstance(source, (str, os.PathLike)):
        return True
    if isinstance(source, (list, tuple)) and source:
        return all(
            isinstance(x, os.PathLike)
            or (isinstance(x, str) and (_SHARD_NAME.search(x) or os.path.isdir(x)))
            for x in source
        )
    return False


def _is_map_style(source: Any) -> bool:
    from torch.utils.data import IterableDataset

    if isinstance(source, IterableDataset):
        return False
    return hasattr(source, "__getitem__") and hasattr(source, "__len__")


class ShardSource:
    """Webdataset tar shards of one domain."""

    kind = "shards"

    def __init__(self, name: str, urls: list[str]) -> None:
        self.name = name
        self.urls = urls

    @property
    def size(self) -> int:
        """Number of shards; part of the state so a resume onto other data is caught."""
        return len(self.urls)

    def reader(self, ctx: ReaderContext) -> TarReader:
        return TarReader(self, ctx)


class MapSource:
    """A map-style dataset (``__len__`` and ``__getitem__``)."""

    kind = "map"

    def __init__(self, name: str, data: Any) -> None:
        self.name = name
        self.data = data

    @property
    def size(self) -> int:
        return len(self.data)

    def reader(self, ctx: ReaderContext) -> MapReader:
        return MapReader(self, ctx)


class IterSource:
    """Any other iterable, including a torch ``IterableDataset``."""

    kind = "iterable"
    size = -1  # unknown

    def __init__(self, name: str, data: Iterable[Any]) -> None:
        self.name = name
        self.data = data

    def reader(self, ctx: ReaderContext) -> IterReader:
        return IterReader(self, ctx)


Source = ShardSource | MapSource | IterSource


def source_spec(name: str, source: Any, *, check: bool = True) -> Source:
    """Classify a domain's data (see the module docstring) and validate what can be validated.

    Raises:
        FileNotFoundError: a missing local shard (named).
        ValueError: an empty map-style dataset, an empty shard list, or an unusable object.
    """
    if _looks_like_shards(source):
        urls = expand_shards(source, name)
        if check:
            check_shards(urls, name)
            # Index missing local shards here, in the main process, so that DataLoader workers
            # find them on disk instead of each walking every shard on the first start.
            for url in urls:
                if is_local(url):
                    shard_info(url)
        streams = [u for u in urls if not is_local(u)]
        if streams:
            warnings.warn(
                f"domain {name!r}: {len(streams)} of its {len(urls)} shards ({streams[0]} ...) "
                "cannot seek (pipe: or remote URLs), so slots cannot read only their own "
                "samples: every DataLoader worker first streams each of these shards once to "
                "index it, and reads each block by streaming its shard from the start, so a "
                "slot reads on average half of each shard it takes samples from, at any world "
                "size. For large jobs put the shards on a file system (local or mounted).",
                stacklevel=3,
            )
        return ShardSource(name, urls)
    if _is_map_style(source):
        if len(source) == 0:
            raise ValueError(f"domain {name!r} is empty: its dataset has length 0")
        return MapSource(name, source)
    if isinstance(source, Iterable):
        if type(source).__module__.split(".")[0] == "webdataset":
            warnings.warn(
                f"domain {name!r} is a webdataset pipeline: it splits shards across workers "
                "itself, so each worker would see only part of its share, and it cannot resume "
                "without replay. Pass its shard spec (brace pattern, list or folder) instead.",
                stacklevel=3,
            )
        return IterSource(name, source)
    raise ValueError(
        f"domain {name!r}: data must be a shard spec (brace pattern, glob, folder or list of "
        f".tar paths), a map-style Dataset or an iterable, got {type(source).__name__}"
    )
