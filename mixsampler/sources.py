"""Reading one domain for one slot: webdataset shards, map-style datasets and plain iterables.

A *slot* is one DataLoader worker on one rank (``rank * num_workers + worker``) out of
``slots = world_size * num_workers``. For each pass over a domain, the slots together see every
sample exactly once:

- shards: the shard order of pass ``p`` is a permutation seeded by ``(seed, domain, p)``; with
  at least as many shards as slots, slot ``s`` reads shards ``order[s::slots]``, otherwise every
  slot reads every shard and keeps the samples whose index in the pass is ``s`` modulo
  ``slots``. Samples are shuffled in blocks of ``shuffle_buffer`` (a block never spans two
  shards), each block permuted by an RNG seeded from ``(seed, domain, pass, shard, block)``.
  The reader state is ``(pass, shard, block, byte offset of the block, offset in the block)``,
  so a resume seeks into the tar file and re-reads at most one block.
- map-style datasets: a full permutation of ``range(len(ds))`` per pass, slot ``s`` takes
  ``perm[s::slots]``; the state is ``(pass, position)``.
- other iterables: every slot iterates the whole iterable and keeps every ``slots``-th item,
  block-shuffled like shards; a resume re-iterates the current pass up to the block start,
  because a generic iterable cannot seek. Re-iterable sources (``iter()`` gives a fresh
  iterator) are needed for more than one pass.

Example:
    >>> spec = source_spec("web", ["a.tar"], check=False)
    >>> type(spec).__name__
    'ShardSource'
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any

import numpy as np

from mixsampler.tario import check_shards, expand_shards, iter_tar

# Returned by a reader at the end of a pass (None is a legitimate sample of an iterable).
END = object()

# Keeps the per-domain RNG streams of shard order, block shuffles and permutations apart.
_SHARD_ORDER, _BLOCK, _PERM = 1, 2, 3


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


class ReaderContext:
    """What every reader of one slot needs to know."""

    def __init__(
        self,
        *,
        seed: int,
        domain: int,
        slot: int,
        slots: int,
        shuffle_buffer: int,
        on_corrupt: Callable[[str, str], None],
    ) -> None:
        self.seed = seed
        self.domain = domain
        self.slot = slot
        self.slots = slots
        self.shuffle_buffer = shuffle_buffer
        self.on_corrupt = on_corrupt

    def rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.domain, *key])


class _BlockReader:
    """Shared machinery of the block-shuffled readers (shards, iterables)."""

    owns_samples = False  # True when samples are fresh dicts the dataset may tag in place

    def __init__(self, ctx: ReaderContext) -> None:
        self.ctx = ctx
        self.pass_ = 0
        self.emitted = 0  # samples this slot has emitted in the current pass
        self.last_emitted = 0  # samples emitted in the pass that ended last
        self._block: list[Any] | None = None
        self._k = 0

    def _permute(self, block: list[Any], *key: int) -> list[Any]:
        if len(block) < 2:
            return block
        order = self.ctx.rng(_BLOCK, self.pass_, *key).permutation(len(block))
        return [block[i] for i in order]


class TarReader(_BlockReader):
    """One slot's reader of a shard domain (see the module docstring)."""

    owns_samples = True

    def __init__(self, source: ShardSource, ctx: ReaderContext) -> None:
        super().__init__(ctx)
        self.source = source
        self.shard = 0  # index into this pass's shard list of this slot
        self.block_no = 0
        self.block_at = 0  # byte offset where the current block starts in its shard
        self.raw_at = 0  # index in the pass of the first sample read for the current block
        self._next_at = 0  # byte offset after the current block
        self._next_raw = 0
        self._it: Iterator[tuple[dict[str, Any], int]] | None = None
        self._shards = self._pass_shards()

    def _pass_shards(self) -> list[str]:
        urls = self.source.urls
        order = self.ctx.rng(_SHARD_ORDER, self.pass_).permutation(len(urls))
        ordered = [urls[i] for i in order]
        if len(urls) >= self.ctx.slots:
            return ordered[self.ctx.slot :: self.ctx.slots]
        return ordered

    @property
    def _split_samples(self) -> bool:
        return len(self.source.urls) < self.ctx.slots

    def _fill(self) -> bool:
        """Read the block that starts at ``(shard, block_at)``; False at the end of the pass."""
        ctx = self.ctx
        while self.shard < len(self._shards):
            url = self._shards[self.shard]
            if self._it is None:
                self._it = iter_tar(url, self.block_at, ctx.on_corrupt)
            block: list[Any] = []
            raw = self.raw_at
            end = self.block_at
            size = ctx.shuffle_buffer
            split = self._split_samples
            slots, slot = ctx.slots, ctx.slot
            for sample, end_of_sample in self._it:
                end = end_of_sample
                keep = not split or raw % slots == slot
                raw += 1
                if keep:
                    block.append(sample)
                    if len(block) == size:
                        break
            if block:
                self._block = self._permute(block, self.shard, self.block_no)
                self._k = 0
                self._next_at, self._next_raw = end, raw
                return True
            # shard done: the next one starts at byte 0; the raw index runs on across shards
            self._it = None
            self.shard += 1
            self.block_no = 0
            self.block_at = 0
            self.raw_at = raw
        return False

    def next(self) -> Any:
        if self._block is None and not self._fill():
            self._new_pass()
            return END
        sample = self._block[self._k]
        self._k += 1
        self.emitted += 1
        if self._k == len(self._block):
            self._block = None
            self.block_no += 1
            self.block_at, self.raw_at = self._next_at, self._next_raw
        return sample

    def _new_pass(self) -> None:
        self.last_emitted = self.emitted
        self.pass_ += 1
        self.emitted = 0
        self.shard = self.block_no = self.block_at = self.raw_at = 0
        self._block, self._it = None, None
        self._shards = self._pass_shards()

    def state(self) -> dict[str, Any]:
        return {
            "pass": self.pass_,
            "emitted": self.emitted,
            "shard": self.shard,
            "block": self.block_no,
            "block_at": self.block_at,
            "raw_at": self.raw_at,
            "offset": self._k if self._block is not None else 0,
        }

    def load(self, state: dict[str, Any]) -> None:
        self.pass_ = int(state.get("pass", 0))
        self.emitted = int(state.get("emitted", 0))
        self.shard = int(state.get("shard", 0))
        self.block_no = int(state.get("block", 0))
        self.block_at = int(state.get("block_at", 0))
        self.raw_at = int(state.get("raw_at", 0))
        self._shards = self._pass_shards()
        self._block, self._it = None, None
        offset = int(state.get("offset", 0))
        if offset:
            # Re-read the current block, and skip what was emitted from it.
            if not self._fill():
                raise ValueError(
                    f"domain {self.source.name!r}: cannot resume inside block {self.block_no} of "
                    f"shard {self.shard} of pass {self.pass_}: the shards changed"
                )
            self._k = offset


class MapReader:
    """One slot's reader of a map-style domain: a full seeded permutation per pass."""

    owns_samples = False

    def __init__(self, source: MapSource, ctx: ReaderContext) -> None:
        self.source = source
        self.ctx = ctx
        self.pass_ = 0
        self.pos = 0
        self.last_emitted = 0
        self._mine: list[int] | None = None

    @property
    def emitted(self) -> int:
        return self.pos

    def next(self) -> Any:
        mine = self._mine
        if mine is None:
            perm = self.ctx.rng(_PERM, self.pass_).permutation(len(self.source.data))
            mine = self._mine = perm[self.ctx.slot :: self.ctx.slots].tolist()
        if self.pos >= len(mine):
            self.pass_ += 1
            self.last_emitted, self.pos = self.pos, 0
            self._mine = None
            return END
        i = mine[self.pos]
        self.pos += 1
        return self.source.data[i]

    def state(self) -> dict[str, Any]:
        return {"pass": self.pass_, "emitted": self.pos}

    def load(self, state: dict[str, Any]) -> None:
        self.pass_ = int(state.get("pass", 0))
        self.pos = int(state.get("emitted", 0))
        self._mine = None


class IterReader(_BlockReader):
    """One slot's reader of an iterable: every ``slots``-th item, block-shuffled."""

    def __init__(self, source: IterSource, ctx: ReaderContext) -> None:
        super().__init__(ctx)
        self.source = source
        self.block_no = 0
        self.raw_at = 0  # items of the iterable consumed before the current block
        self._next_raw = 0
        self._it: Iterator[Any] | None = None
        self.one_shot = False  # iter() gave the object itself: it cannot start a new pass

    def _fill(self) -> bool:
        ctx = self.ctx
        if self._it is None:
            it = iter(self.source.data)
            self.one_shot = it is self.source.data
            self._it = islice(it, self.raw_at, None)
        block: list[Any] = []
        raw = self.raw_at
        for item in self._it:
            keep = raw % ctx.slots == ctx.slot
            raw += 1
            if keep:
                block.append(item)
                if len(block) == ctx.shuffle_buffer:
                    break
        if not block:
            return False
        self._block = self._permute(block, self.block_no)
        self._k = 0
        self._next_raw = raw
        return True

    def next(self) -> Any:
        if self._block is None and not self._fill():
            self.pass_ += 1
            self.last_emitted, self.emitted = self.emitted, 0
            self.block_no = self.raw_at = 0
            self._it = None
            return END
        sample = self._block[self._k]
        self._k += 1
        self.emitted += 1
        if self._k == len(self._block):
            self._block = None
            self.block_no += 1
            self.raw_at = self._next_raw
        return sample

    def state(self) -> dict[str, Any]:
        return {
            "pass": self.pass_,
            "emitted": self.emitted,
            "block": self.block_no,
            "raw_at": self.raw_at,
            "offset": self._k if self._block is not None else 0,
        }

    def load(self, state: dict[str, Any]) -> None:
        self.pass_ = int(state.get("pass", 0))
        self.emitted = int(state.get("emitted", 0))
        self.block_no = int(state.get("block", 0))
        self.raw_at = int(state.get("raw_at", 0))
        self._block, self._it = None, None
        offset = int(state.get("offset", 0))
        if offset:
            if not self._fill():
                raise ValueError(
                    f"domain {self.source.name!r}: cannot resume inside block {self.block_no} "
                    f"of pass {self.pass_}: the iterable is shorter than when the state was saved"
                )
            self._k = offset
