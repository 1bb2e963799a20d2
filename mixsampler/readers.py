"""The readers of one slot: their context, and the readers of map-style and iterable domains.

A reader gives one slot's share of one domain, pass after pass, one sample per ``next()`` and
:data:`END` at the end of a pass, and saves and loads its place as a small state. Shard domains
have their own reader, :class:`mixsampler.tarreader.TarReader`; how each kind is split across
slots is in :mod:`mixsampler.sources`.

This module is the bottom of the three: it imports neither of the others. What a reader needs
of its domain is a Protocol here (:class:`MapData`, :class:`IterData`, :class:`ShardList`),
which the sources of :mod:`mixsampler.sources` satisfy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any, Protocol

import numpy as np

__all__ = [
    "END",
    "SHARD_ORDER",
    "BLOCK",
    "PERM",
    "ReaderContext",
    "MapData",
    "IterData",
    "ShardList",
    "MapReader",
    "IterReader",
]

# Returned by a reader at the end of a pass (None is a legitimate sample of an iterable).
END = object()

# The next block is read this many samples at a time while the current one is emitted: small
# enough that a DataLoader worker never stalls its turn for long (64 samples are a few ms),
# large enough to keep reading one tar stream at a time (switching streams at every sample
# cost about 15% more CPU in benchmarks/bench_sampler.py).
_READ_CHUNK = 64

# Keeps the per-domain RNG streams of shard order, block shuffles and permutations apart
# (the first key after the domain in ReaderContext.rng; shared with mixsampler.tarreader).
SHARD_ORDER, BLOCK, PERM = 1, 2, 3


class MapData(Protocol):
    """A map-style domain: its name and data with ``__len__`` and ``__getitem__``."""

    name: str
    data: Any


class IterData(Protocol):
    """An iterable domain: its name and the iterable."""

    name: str
    data: Any


class ShardList(Protocol):
    """A shard domain: its name and its shard URLs."""

    name: str
    urls: list[str]


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
    """Block shuffling with double buffering, for iterables (which cannot seek).

    Written over *units* (an iterable is one unit; shard domains have :class:`TarReader`,
    which seeks to each sample as it is emitted). Samples are read in blocks of
    ``shuffle_buffer`` kept samples (a block never spans two units); each block is permuted by
    an RNG seeded from ``(seed, domain, pass, unit, block)``, so a block is a pure function of
    where it starts. While the current block is emitted, the next one is read ``_READ_CHUNK``
    samples after every ``_READ_CHUNK`` emitted: reading is spread evenly instead of arriving
    in bursts of a whole block. Bursts would serialize DataLoader workers, because a loader
    delivers batches in worker order and lets a worker run only ``prefetch_factor`` batches
    ahead while another one reads a block.

    A block is described by ``(unit, block, at, raw)``: its unit in this pass's list, its
    number within the unit, where it starts (unused for iterables) and the index within the
    pass of its first raw sample. The state is the current block's description plus the
    offset into it.
    """

    owns_samples = False  # True when samples are fresh dicts the dataset may tag in place

    def __init__(self, ctx: ReaderContext) -> None:
        self.ctx = ctx
        self.pass_ = 0
        self.emitted = 0  # samples this slot has emitted in the current pass
        self.last_emitted = 0  # samples emitted in the pass that ended last
        self._start_pass()

    # -- hooks -------------------------------------------------------------------------------

    def _units(self) -> int:
        """Number of shards in this pass's list of this slot."""
        raise NotImplementedError

    def _open(self) -> Iterator[tuple[Any, int]]:
        """``(sample, position after it)`` from the cursor on, within the cursor's shard."""
        raise NotImplementedError

    def _keep(self, raw: int) -> bool:
        return raw % self.ctx.slots == self.ctx.slot

    # -- cursor and blocks ---------------------------------------------------------------------

    def _reset_cursor(self, shard: int, block: int, at: int, raw: int) -> None:
        self._c_shard, self._c_block, self._c_at, self._c_raw = shard, block, at, raw
        self._it: Iterator[tuple[Any, int]] | None = None
        self._shard_done = False
        self._block: list[Any] | None = None
        self._k = 0
        self._cur = (shard, block, at, raw)
        self._pend: list[Any] = []
        self._pend_full = False
        self._pend_desc: tuple[int, int, int, int] | None = None
        self._begin_pending()

    def _next_shard(self) -> None:
        self._c_shard += 1
        self._c_block = 0
        self._c_at = 0
        self._it = None
        self._shard_done = False

    def _begin_pending(self) -> None:
        if self._shard_done:
            self._next_shard()
        if self._c_shard >= self._units():
            self._pend_desc = None  # the pass is over
            return
        self._pend_desc = (self._c_shard, self._c_block, self._c_at, self._c_raw)
        self._c_block += 1

    def _read_kept(self) -> Any:
        """The next kept sample of the cursor's shard, or END at the end of the shard."""
        if self._it is None:
            self._it = self._open()
        for sample, at in self._it:
            raw = self._c_raw
            self._c_raw += 1
            self._c_at = at
            if self._keep(raw):
                return sample
        return END

    def _fill(self, limit: int) -> None:
        """Read up to ``limit`` samples into the pending block (-1: until it is complete)."""
        size = self.ctx.shuffle_buffer
        pend = self._pend
        while not self._pend_full and limit != 0 and self._pend_desc is not None:
            sample = self._read_kept()
            if sample is END:
                if pend:
                    self._pend_full = self._shard_done = True
                    return
                self._next_shard()  # an empty block moves to the next shard
                self._begin_pending()
                continue
            pend.append(sample)
            limit -= 1
            if len(pend) == size:
                self._pend_full = True

    def _promote(self) -> bool:
        """Make the pending block current; False at the end of the pass."""
        self._fill(-1)
        if not self._pend:
            return False
        self._cur = self._pend_desc
        shard, block = self._cur[0], self._cur[1]
        pend = self._pend
        if len(pend) > 1:
            order = self.ctx.rng(BLOCK, self.pass_, shard, block).permutation(len(pend))
            pend = [pend[i] for i in order.tolist()]
        self._block, self._k = pend, 0
        self._pend, self._pend_full = [], False
        self._begin_pending()
        return True

    def next(self) -> Any:
        if self._block is None and not self._promote():
            self.last_emitted, self.emitted = self.emitted, 0
            self.pass_ += 1
            self._start_pass()
            return END
        block = self._block
        sample = block[self._k]
        self._k += 1
        self.emitted += 1
        if self._k == len(block):
            self._block = None
        elif self._k % _READ_CHUNK == 0:
            self._fill(_READ_CHUNK)
        return sample

    def _start_pass(self) -> None:
        self._reset_cursor(0, 0, 0, 0)

    def state(self) -> dict[str, Any]:
        if self._block is not None:
            desc, offset = self._cur, self._k
        elif self._pend_desc is not None:
            desc, offset = self._pend_desc, 0
        else:
            desc, offset = (self._units(), 0, 0, self._c_raw), 0  # at the end of the pass
        shard, block, at, raw = desc
        return {
            "pass": self.pass_,
            "emitted": self.emitted,
            "shard": shard,
            "block": block,
            "block_at": at,
            "raw_at": raw,
            "offset": offset,
        }

    def load(self, state: dict[str, Any]) -> None:
        self.pass_ = int(state.get("pass", 0))
        self.emitted = int(state.get("emitted", 0))
        self._start_pass()
        self._reset_cursor(
            int(state.get("shard", 0)),
            int(state.get("block", 0)),
            int(state.get("block_at", 0)),
            int(state.get("raw_at", 0)),
        )
        offset = int(state.get("offset", 0))
        if offset:
            if not self._promote() or offset > len(self._block):
                raise ValueError(
                    f"domain {self.name!r}: cannot resume inside block {state.get('block')} of "
                    f"shard {state.get('shard')} of pass {self.pass_}: the data changed"
                )
            self._k = offset


class MapReader:
    """One slot's reader of a map-style domain: a full seeded permutation per pass."""

    owns_samples = False

    def __init__(self, source: MapData, ctx: ReaderContext) -> None:
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
            perm = self.ctx.rng(PERM, self.pass_).permutation(len(self.source.data))
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

    def __init__(self, source: IterData, ctx: ReaderContext) -> None:
        self.source = source
        self.name = source.name
        self.one_shot = False  # iter() gave the object itself: it cannot start a new pass
        super().__init__(ctx)

    def _units(self) -> int:
        return 1  # the whole iterable is one "shard"

    def _open(self) -> Iterator[tuple[Any, int]]:
        # A generic iterable cannot seek: skip to the cursor's raw index.
        it = iter(self.source.data)
        self.one_shot = it is self.source.data
        return ((item, 0) for item in islice(it, self._c_raw, None))
