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

Example:
    >>> spec = source_spec("web", ["a.tar"], check=False)
    >>> type(spec).__name__
    'ShardSource'
"""

from __future__ import annotations

import bisect
import contextlib
import os
import re
import warnings
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any, BinaryIO

import numpy as np

from mixsampler.index import load_index, shard_info
from mixsampler.tario import _is_local, _local_path, check_shards, expand_shards, iter_tar

# Returned by a reader at the end of a pass (None is a legitimate sample of an iterable).
END = object()

# The next block is read this many samples at a time while the current one is emitted: small
# enough that a DataLoader worker never stalls its turn for long (64 samples are a few ms),
# large enough to keep reading one tar stream at a time (switching streams at every sample
# cost about 15% more CPU in benchmarks/bench_sampler.py).
_READ_CHUNK = 64

# Keeps the per-domain RNG streams of shard order, block shuffles and permutations apart.
_SHARD_ORDER, _BLOCK, _PERM = 1, 2, 3
# Version of the shard reader's state: 2 splits passes by sample position (see TarReader).
_LAYOUT = 2


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
                if _is_local(url):
                    shard_info(url)
        streams = [u for u in urls if not _is_local(u)]
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
            order = self.ctx.rng(_BLOCK, self.pass_, shard, block).permutation(len(pend))
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


class TarReader:
    """One slot's reader of a shard domain: its own equal share of every pass, by position.

    A pass lays the domain's shards end to end in a seeded order (``rng(_SHARD_ORDER,
    pass)``), numbering its samples ``0 .. total - 1`` (counts come from the shards' indexes,
    :mod:`mixsampler.index`). Slot ``s`` of ``S`` owns the positions ``[s * total // S,
    (s + 1) * total // S)``: a contiguous run, so it touches one or two shards, and every slot
    gets the same number of samples within one, whatever the ratio of shards to slots. Its
    run is cut into blocks of ``shuffle_buffer`` positions; block ``b`` is emitted in the
    order ``rng(_BLOCK, pass, first position of b).permutation``, and a local sample is read
    (one seek, one read) only when it is emitted, so the first sample costs one read, not a
    block. The state is ``(pass, emitted)``: a resume is O(1).

    Shards without random access (``pipe:`` and remote URLs) give the same stream at a cost:
    each process streams every shard once to index it, and each block is read by streaming
    its shard from the start, skipping the bytes before the block.
    """

    owns_samples = True

    def __init__(self, source: ShardSource, ctx: ReaderContext) -> None:
        self.source = source
        self.ctx = ctx
        self.name = source.name
        self.pass_ = 0
        self.emitted = 0  # samples this slot has emitted in the current pass
        self.last_emitted = 0  # samples emitted in the pass that ended last
        self.samples_read = 0  # what this reader fetched, for tests and benchmarks
        self.bytes_read = 0
        infos = [shard_info(url) for url in source.urls]
        self._counts = [c for c, _ in infos]
        self._events = [e for _, e in infos]
        self.total = sum(self._counts)
        self._files: dict[str, tuple[Any, BinaryIO]] = {}  # url -> (its index, open file)
        self._start_pass()

    # -- layout of a pass ------------------------------------------------------------------

    def _start_pass(self) -> None:
        urls = self.source.urls
        order = self.ctx.rng(_SHARD_ORDER, self.pass_).permutation(len(urls)).tolist()
        self._order = order
        cum = [0]
        for j in order:
            cum.append(cum[-1] + self._counts[j])
        self._cum = cum
        total, slot, slots = self.total, self.ctx.slot, self.ctx.slots
        self._lo, self._hi = slot * total // slots, (slot + 1) * total // slots
        self._perm: list[int] | None = None
        self._bstart = self._lo
        self._pre: dict[int, dict[str, Any]] | None = None
        self._cur: tuple[int, int, int, Any] = (-1, 0, 0, None)  # k, first, end, index
        # Corrupt data met while indexing is reported by the slot owning the sample after it.
        self._ev: dict[int, list[tuple[str, str]]] = {}
        for k, j in enumerate(order):
            for i, message in self._events[j]:
                pos = min(cum[k] + i, total - 1)
                if self._lo <= pos < self._hi:
                    self._ev.setdefault(pos, []).append((urls[j], message))

    def _shard_at(self, pos: int) -> int:
        return bisect.bisect_right(self._cum, pos) - 1

    # -- reading ---------------------------------------------------------------------------

    def next(self) -> Any:
        e = self.emitted
        if e >= self._hi - self._lo:
            self.last_emitted, self.emitted = e, 0
            self.pass_ += 1
            self._close()
            self._start_pass()
            return END
        k = e % self.ctx.shuffle_buffer
        if k == 0 or self._perm is None:
            self._begin_block(self._lo + e - k)
        pos = self._bstart + self._perm[k]
        sample = self._pre.pop(pos) if self._pre is not None else self._read(pos)
        events = self._ev.pop(pos, None)
        if events:
            for url, message in events:
                self.ctx.on_corrupt(url, message)
        self.emitted = e + 1
        return sample

    def _block_perm(self, start: int) -> list[int]:
        """The emission order of the block starting at pass position ``start``."""
        n = min(self.ctx.shuffle_buffer, self._hi - start)
        return self.ctx.rng(_BLOCK, self.pass_, start).permutation(n).tolist() if n > 1 else [0]

    def locate(self, pos: int) -> tuple[str, int]:
        """``(shard, sample number in it)`` of position ``pos`` of the current pass."""
        k = self._shard_at(pos)
        return self.source.urls[self._order[k]], pos - self._cum[k]

    def pass_plan(self) -> list[tuple[str, int]]:
        """What this slot emits in the current pass, in order, as :meth:`locate` pairs.

        Computed from the indexes' counts alone, without reading a sample, so a test can check
        the assignment of thousands of slots.
        """
        out = []
        for start in range(self._lo, self._hi, self.ctx.shuffle_buffer):
            out.extend(self.locate(start + k) for k in self._block_perm(start))
        return out

    def _begin_block(self, start: int) -> None:
        self._bstart = start
        self._perm = self._block_perm(start)
        n = len(self._perm)
        urls = self.source.urls
        ks = range(self._shard_at(start), self._shard_at(start + n - 1) + 1)
        remote = any(not _is_local(urls[self._order[k]]) for k in ks)
        # Look the index up again at each block (one stat): a shard rewritten during the run
        # is caught within a block instead of being read through a stale index.
        self._cur = (-1, 0, 0, None)
        self._pre = self._prefetch(start, start + n) if remote else None

    def _index(self, k: int) -> Any:
        j = self._order[k]
        idx = load_index(self.source.urls[j])
        if idx.count != self._counts[j]:
            raise ValueError(
                f"domain {self.name!r}: shard {idx.url} changed while it was read (it had "
                f"{self._counts[j]} samples when this slot started and has {idx.count} now); "
                "restart from a checkpoint once the data is final"
            )
        return idx

    def _read(self, pos: int) -> dict[str, Any]:
        k, first, end, idx = self._cur
        if not first <= pos < end:
            k = self._shard_at(pos)
            idx = self._index(k)
            first, end = self._cum[k], self._cum[k + 1]
            self._cur = (k, first, end, idx)
        held = self._files.get(idx.url)
        if held is None or held[0] is not idx:  # a rebuilt index: the file may be a new one
            if len(self._files) >= 2 or held is not None:
                self._close()
            # Unbuffered: a sample costs its own bytes, not a read-ahead buffer's.
            held = self._files[idx.url] = (idx, open(_local_path(idx.url), "rb", buffering=0))
        f = held[1]
        i = pos - first
        sample, nbytes = idx.read_counted(i, f)
        self.samples_read += 1
        self.bytes_read += nbytes
        return sample

    def _prefetch(self, start: int, stop: int) -> dict[int, dict[str, Any]]:
        """Samples ``start .. stop - 1`` of the pass, streaming the shards that cannot seek."""
        out: dict[int, dict[str, Any]] = {}
        pos = start
        while pos < stop:
            k = self._shard_at(pos)
            idx = self._index(k)
            i0, take = pos - self._cum[k], min(stop, self._cum[k + 1]) - pos
            if _is_local(idx.url):
                for t in range(take):
                    out[pos + t] = self._read(pos + t)
            else:
                it = iter_tar(idx.url, int(idx.arrays["starts"][i0]), _ignore)
                got = 0
                ends = [0]
                with contextlib.closing(it):
                    for got, (sample, end) in enumerate(islice(it, take), 1):
                        out[pos + got - 1] = sample
                        ends[0] = end
                self.bytes_read += ends[0]  # a stream reads the shard from its first byte
                if got != take:
                    raise ValueError(
                        f"domain {self.name!r}: shard {idx.url} gave {got} of the {take} "
                        f"samples its index lists from sample {i0}: it changed"
                    )
                self.samples_read += take
            pos += take
        return out

    def _close(self) -> None:
        for _, f in self._files.values():
            f.close()
        self._files.clear()

    # -- state -----------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "layout": _LAYOUT,
            "pass": self.pass_,
            "emitted": self.emitted,
            "total": self.total,
        }

    def load(self, state: dict[str, Any]) -> None:
        if state.get("layout") != _LAYOUT:
            raise ValueError(
                f"cannot resume domain {self.name!r}: its reader state was saved by an older "
                "mixsampler that split passes by whole shards; this one splits them by "
                "samples, so continuing would repeat or skip samples. Resume with the version "
                "that saved the checkpoint, or start the run over"
            )
        if int(state.get("total", -1)) != self.total:
            raise ValueError(
                f"cannot resume domain {self.name!r}: its shards held {state.get('total')} "
                f"samples when the state was saved and hold {self.total} now: the data changed"
            )
        self._close()
        self.pass_ = int(state.get("pass", 0))
        self.emitted = int(state.get("emitted", 0))
        self._start_pass()
        if self.emitted > self._hi - self._lo:
            raise ValueError(
                f"cannot resume domain {self.name!r}: the state has {self.emitted} samples "
                f"emitted in pass {self.pass_}, more than this slot's {self._hi - self._lo}"
            )


def _ignore(url: str, message: str) -> None:
    """Corrupt data in a stream was met when indexing it and is reported from the index."""


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
