"""The reader of a shard domain for one slot (:class:`TarReader`), by sample position."""

from __future__ import annotations

import bisect
import contextlib
from itertools import islice
from typing import Any, BinaryIO

from mixsampler.index import load_index, shard_info
from mixsampler.readers import BLOCK, END, SHARD_ORDER, ReaderContext, ShardList
from mixsampler.tario import is_local, iter_tar, local_path

# Version of the shard reader's state: 2 splits passes by sample position (see TarReader).
_LAYOUT = 2


class TarReader:
    """One slot's reader of a shard domain: its own equal share of every pass, by position.

    A pass lays the domain's shards end to end in a seeded order (``rng(SHARD_ORDER,
    pass)``), numbering its samples ``0 .. total - 1`` (counts come from the shards' indexes,
    :mod:`mixsampler.index`). Slot ``s`` of ``S`` owns the positions ``[s * total // S,
    (s + 1) * total // S)``: a contiguous run, so it touches one or two shards, and every slot
    gets the same number of samples within one, whatever the ratio of shards to slots. Its
    run is cut into blocks of ``shuffle_buffer`` positions; block ``b`` is emitted in the
    order ``rng(BLOCK, pass, first position of b).permutation``, and a local sample is read
    (one seek, one read) only when it is emitted, so the first sample costs one read, not a
    block. The state is ``(pass, emitted)``: a resume is O(1).

    Shards without random access (``pipe:`` and remote URLs) give the same stream at a cost:
    each process streams every shard once to index it, and each block is read by streaming
    its shard from the start, skipping the bytes before the block.
    """

    owns_samples = True

    def __init__(self, source: ShardList, ctx: ReaderContext) -> None:
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
        order = self.ctx.rng(SHARD_ORDER, self.pass_).permutation(len(urls)).tolist()
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
        return self.ctx.rng(BLOCK, self.pass_, start).permutation(n).tolist() if n > 1 else [0]

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
        remote = any(not is_local(urls[self._order[k]]) for k in ks)
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
            held = self._files[idx.url] = (idx, open(local_path(idx.url), "rb", buffering=0))
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
            if is_local(idx.url):
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
