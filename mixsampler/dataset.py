"""MixtureDataset: an exact, resumable, rank-aware weighted mixture of data domains.

Each DataLoader worker on each rank (a *slot*) runs its own largest-deficit schedule over the
full weight vector (:mod:`mixsampler.schedule`) and reads its own disjoint part of every domain
(:mod:`mixsampler.sources`). Weights and consumption counters live in shared-memory tensors
created in ``__init__``, so ``set_weights`` in the main process reaches worker processes and
``counts()`` in the main process sees what the workers produced.

How it fits torchdata's ``StatefulDataLoader`` (the loader Lightning checkpoints): with workers,
the loader calls ``state_dict()`` inside each worker after each batch and keeps, per worker, the
state that came with the last batch it handed out; on resume it gives each worker its own state
back through ``load_state_dict`` before calling ``iter``. Prefetched batches therefore never leak
into a checkpoint. ``counts()`` is different: workers update the shared counters when they
produce a sample, so during training it runs ahead of what the model consumed by at most
``prefetch_factor * num_workers`` batches; the counts inside the saved state are exact.

**Slots.** A *slot* is one DataLoader worker on one rank. Design decisions, and why:

- One schedule per slot over the full weight vector, not one global sequence cut into strides:
  striding aliases (weights 1/2, 1/2 over two workers hand each worker one domain), while
  per-slot schedules keep every worker's batches at the target composition and the global
  stream within a constant of exact (a sum of exact streams). Tie-breaking is a seeded
  permutation rotated by the slot, so slots do not all open with the same domain.
- A resume must land on the same layout (world size, workers per rank): a slot's state
  describes its own share of every pass, and re-splitting a half-read pass over a new layout
  would repeat or skip samples. A different layout raises; it never duplicates silently.
- A slot reads the shared tick (below) at each sample and records in its
  state where it adopted new weights. On resume a slot continues with the weights in its
  state, unless ``set_weights`` was called on the new dataset before the first sample, which
  then wins.
- Each slot maps a scheduled switch's ``n`` (a sample of the rank's stream in DataLoader order)
  to a sample of its own stream with :func:`schedule.local_index`, and runs its per-sample loop
  only up to the next switch, so the switch costs nothing per sample and lands exactly.
  Pending switches are part of the state.
- Corrupt tar members are warned about with ``warnings.warn`` on the rank that reads them
  rather than ``rank_zero_warn``: a shard belongs to one rank only.

**Shared memory.** The main process writes weights and switches; every slot reads
them, and writes its own row of counters, which ``counts()`` sums.

- Weights are a seqlock in shared memory (version odd while written) behind a tick that every
  ``set_weights`` moves; a slot reads the tick at each sample (one memory read) and looks at
  anything else only when it moved.
- A switch scheduled with ``set_weights(..., at_sample=n)`` sits in a shared append-only table
  of at most ``_MAX_SCHEDULED`` rows ``(at_sample, batch_size, w_1..w_k)``.

Example:
    >>> import itertools
    >>> ds = MixtureDataset(
    ...     {"code": [{"x": 1}] * 10, "web": [{"x": 2}] * 10}, {"code": 0.25, "web": 0.75}
    ... )
    >>> [s["__domain__"] for s in itertools.islice(ds, 4)]
    ['web', 'web', 'code', 'web']
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch.utils.data import IterableDataset, get_worker_info

from mixsampler import schedule
from mixsampler.checks import check_int
from mixsampler.readers import END, ReaderContext
from mixsampler.sources import Source, source_spec
from mixsampler.tario import CorruptShardError
from mixsampler.transforms import sample_seed, with_seed

log = logging.getLogger(__name__)

__all__ = ["EXHAUSTION_MODES", "ON_CORRUPT_MODES", "UNITS", "MixtureDataset", "CorruptShardError"]


# Rows of the shared counter tensor: samples, tokens, corrupt members.
_SAMPLES, _TOKENS, _CORRUPT = 0, 1, 2
# Room for scheduled switches (set_weights(at_sample=...)) in shared memory, per dataset.
_MAX_SCHEDULED = 4096
# Shared weights: [tick, version, w_1..w_k]. The tick changes after every set_weights, so a
# slot reads one number per sample; the version is a seqlock of the weights (odd while written).
_TICK, _VERSION, _W = 0, 1, 2


class _SharedState:
    """MixtureDataset's methods on its shared tensors, for the main process.

    MixtureDataset makes ``_shared_weights``, ``_shared_counts`` and ``_shared_schedule`` in its
    ``__init__``; these methods read and write them.
    """

    def _shared(self) -> tuple[Any, Any, Any]:
        # numpy views of the shared tensors: scalar access costs ~100 ns instead of ~1 us.
        if self._views is None:
            self._views = (
                self._shared_weights.numpy(),
                self._shared_counts.numpy(),
                self._shared_schedule.numpy(),
            )
        return self._views

    @property
    def weights(self) -> dict[str, float]:
        """The weights last set in the main process without ``at_sample`` (or the initial)."""
        w = self._shared()[0]
        return {d: float(w[_W + i]) for i, d in enumerate(self.domain_names)}

    @property
    def scheduled(self) -> list[tuple[int, dict[str, float]]]:
        """The switches scheduled in this process, ``(at_sample, weights)`` in call order."""
        table = self._shared()[2]
        k = len(self.domain_names)
        rows = (table[1 + r * (2 + k) : 1 + (r + 1) * (2 + k)] for r in range(int(table[0])))
        names = self.domain_names
        return [(int(r[0]), dict(zip(names, map(float, r[2:]), strict=True))) for r in rows]

    def set_weights(
        self,
        weights: Mapping[str, float],
        *,
        at_sample: int | None = None,
        at_step: int | None = None,
        batch_size: int | None = None,
    ) -> None:
        """Change the mixture now, or schedule the change at an exact sample of this rank.

        Without ``at_sample``/``at_step`` every worker adopts the weights at the next sample it
        produces; samples already waiting in the loader's prefetch queue keep the old weights,
        so the change reaches training within ``prefetch_factor * num_workers`` batches.

        With ``at_sample=n`` the change lands exactly: the ``n``-th sample (from 0) of this
        rank's stream, in the order the DataLoader hands samples to training, and every later
        one are drawn with the new weights, whatever the number of workers. ``n`` counts every
        sample this rank's loader has delivered since the run began, across resumes (it is
        restored from the state), not per epoch and not across ranks: each rank schedules its
        own stream, and at equal ``n`` on every rank the switch lands at the same step
        everywhere. With workers, the loader deals whole batches in turn (batch ``b`` comes
        from worker ``b % num_workers``), so placing ``n`` needs the loader's batch size (the
        constructor's ``batch_size`` or this call's). ``at_step=s`` is ``at_sample=s *
        batch_size``: a step is one batch of this loader (with gradient accumulation, an
        optimizer step is ``accumulate_grad_batches`` of them). Schedule at least
        ``prefetch_factor`` batches per worker ahead of training: a worker that has already
        produced its sample adopts the weights at once and warns that the switch is late.
        Switches are kept in the state, so a resumed run honours them; scheduling the same
        switch again after a resume (a callback re-applying its schedule) changes nothing, and
        a second call for the same ``n`` replaces the first.

        Args:
            weights: domain name -> non-negative weight for every domain.
            at_sample: the rank sample at which the weights take effect (default: now).
            at_step: the loader batch at which they take effect (needs a batch size).
            batch_size: the loader's batch size, if not given to the constructor.

        Raises:
            ValueError: bad weights, a negative or non-integer ``at_sample``/``at_step``, both
                given, ``at_step`` without a batch size, or more than 4096 scheduled switches.

        Example:
            >>> import itertools
            >>> ds = MixtureDataset({"a": range(9), "b": range(9)}, {"a": 1, "b": 0})
            >>> ds.set_weights({"a": 0, "b": 1}, at_sample=3)
            >>> [s["__domain__"] for s in itertools.islice(ds, 5)]
            ['a', 'a', 'a', 'b', 'b']
        """
        w = schedule.normalize_weights(weights, self.domain_names)
        shared, _, table = self._shared()
        if at_sample is None and at_step is None:
            version = shared[_VERSION]
            shared[_VERSION] = version + 1
            shared[_W:] = w
            shared[_VERSION] = version + 2
            shared[_TICK] += 1
            return
        if at_sample is not None and at_step is not None:
            raise ValueError(
                f"give at_sample or at_step, not both (got at_sample={at_sample!r}, "
                f"at_step={at_step!r})"
            )
        size = self.batch_size if batch_size is None else check_int("batch_size", batch_size, low=1)
        if at_step is not None:
            check_int("at_step", at_step, low=0)
            if size is None:
                raise ValueError(
                    f"set_weights(at_step={at_step}) needs the loader's batch size: pass "
                    "batch_size= here or to MixtureDataset"
                )
            at_sample = at_step * size
        check_int("at_sample", at_sample, low=0)
        k = len(self.domain_names)
        row = int(table[0])
        if row >= _MAX_SCHEDULED:
            raise ValueError(
                f"at most {_MAX_SCHEDULED} scheduled switches fit in a MixtureDataset; "
                f"at_sample={at_sample} is one too many"
            )
        start = 1 + row * (2 + k)
        table[start : start + 2 + k] = [at_sample, size or 0, *w]
        table[0] = row + 1
        shared[_TICK] += 1

    def counts(self) -> dict[str, dict[str, int]]:
        """Samples, tokens and corrupt tar members consumed per domain, over this rank's workers.

        Readable from the main process during training. With workers it includes samples
        still in the prefetch queue (see the module docstring).

        Example:
            >>> ds = MixtureDataset({"a": [1], "b": [2]}, {"a": 1, "b": 1})
            >>> ds.counts()["samples"]
            {'a': 0, 'b': 0}
        """
        total = self._shared()[1].sum(axis=0)
        return {
            key: {d: int(total[row, i]) for i, d in enumerate(self.domain_names)}
            for key, row in (("samples", _SAMPLES), ("tokens", _TOKENS), ("corrupt", _CORRUPT))
        }


# Version of a MixtureDataset state.
_FORMAT = 1
# Keep at most this many weight changes in the state: a schedule that moves the weights at
# every step must not make each per-batch snapshot grow without bound.
_MAX_HISTORY = 4096
# A sample index no run reaches: "no scheduled switch pending".
_NEVER = 1 << 62


class _Run:
    """One slot's stream: schedule state, domain readers and the shared-memory bookkeeping."""

    def __init__(
        self,
        ds: MixtureDataset,
        worker: int,
        num_workers: int,
        state: dict[str, Any] | None,
        *,
        in_main: bool,
    ) -> None:
        self.ds = ds
        self.worker = worker
        self.num_workers = num_workers
        self.slots = ds.world_size * num_workers
        self.slot = ds.rank * num_workers + worker
        k = len(ds.domain_names)
        self.rank_order = schedule.priority(ds.seed, self.slot, k)
        weights_view, counts_view, self.table = ds._shared()
        self.shared = weights_view
        # Flat memoryviews: an element update costs half of a numpy scalar update, and this
        # runs for every sample. Counter c of domain i is at c * k + i.
        self.counts_row = memoryview(counts_view[worker]).cast("B").cast("q")
        self.tick = memoryview(weights_view).cast("B").cast("d")
        self.weights = tuple(float(x) for x in weights_view[_W:])
        self.seen_tick = -1.0  # shared tick last handled; -1 polls at the first sample
        self.seen_version = -1.0  # weights version last adopted; -1 adopts the shared weights
        self.read_rows = 0  # scheduled switches read from the shared table
        self.pending: dict[int, list[Any]] = {}  # local sample -> [at_sample, batch, weights]
        self.next_at = _NEVER
        self.history: list[list[Any]] = []
        self.corrupt = [0] * k
        self._warned: set[str] = set()
        self.sched = schedule.new_state(self.weights)
        self.readers = [
            src.reader(
                ReaderContext(
                    seed=ds.seed,
                    domain=i,
                    slot=self.slot,
                    slots=self.slots,
                    shuffle_buffer=ds.shuffle_buffer,
                    on_corrupt=self._corrupt_handler(i),
                )
            )
            for i, src in enumerate(ds._sources)
        ]
        if state is not None:
            self._load(state, weights_view, in_main)
        self.effective = schedule.effective_weights(self.weights, self.sched.active)
        self._publish()

    @property
    def n(self) -> int:
        """Samples this slot has produced since the run began (kept equal by construction)."""
        return sum(self.sched.samples)

    # -- state ---------------------------------------------------------------------------

    def _where(self) -> str:
        return (
            f"slot {self.slot} of {self.slots} (rank {self.ds.rank} of {self.ds.world_size}, "
            f"worker {self.worker} of {self.num_workers})"
        )

    def state(self) -> dict[str, Any]:
        ds = self.ds
        return {
            "format": _FORMAT,
            "domains": list(ds.domain_names),
            "unit": ds.unit,
            "seed": ds.seed,
            "rank": ds.rank,
            "world_size": ds.world_size,
            "num_workers": self.num_workers,
            "slot": self.slot,
            "slots": self.slots,
            "sizes": [src.size for src in ds._sources],
            "n": self.n,
            "weights": list(self.weights),
            "history": [[at, list(w)] for at, w in self.history],
            "scheduled": [[at, size, list(w)] for _, (at, size, w) in sorted(self.pending.items())],
            "active": list(self.sched.active),
            "deficit": list(self.sched.deficit),
            "samples": list(self.sched.samples),
            "tokens": list(self.sched.tokens),
            "corrupt": list(self.corrupt),
            "readers": [r.state() for r in self.readers],
        }

    def _load(self, state: dict[str, Any], weights_view: Any, in_main: bool) -> None:
        ds = self.ds
        saved = (state.get("world_size"), state.get("num_workers"), state.get("rank"))
        if saved != (ds.world_size, self.num_workers, ds.rank):
            raise ValueError(
                "cannot resume a MixtureDataset with a different layout: the state was saved by "
                f"slot {state.get('slot')} of {state.get('slots')} (rank {saved[2]} of world size "
                f"{saved[0]}, worker of {saved[1]} workers; num_workers=0 counts as 1), this is "
                f"{self._where()}. Continuing would repeat or skip samples within a pass; resume "
                "with the same world size and num_workers."
            )
        sizes = [src.size for src in ds._sources]
        if list(state.get("sizes", sizes)) != sizes:
            raise ValueError(
                f"cannot resume: the domains' sizes (shards or samples) were "
                f"{state.get('sizes')} when the state was saved and are {sizes} now"
            )
        k = len(ds.domain_names)
        self.weights = tuple(float(x) for x in state.get("weights", self.weights))
        self.history = [[int(at), [float(x) for x in w]] for at, w in state.get("history", [])]
        self.sched = schedule.ScheduleState(
            deficit=[float(x) for x in state.get("deficit", [0.0] * k)],
            samples=[int(x) for x in state.get("samples", [0] * k)],
            tokens=[int(x) for x in state.get("tokens", [0] * k)],
            active=[bool(x) for x in state.get("active", [True] * k)],
        )
        self.corrupt = [int(x) for x in state.get("corrupt", [0] * k)]
        for at, size, w in state.get("scheduled", []):
            self._schedule(int(at), int(size), tuple(float(x) for x in w))
        # The state's weights continue unless set_weights was called on this dataset since it
        # was built (a callback re-applying its schedule on resume): then those win, recorded
        # in the history at this sample. Constructor weights alone do not override the state.
        if float(weights_view[_VERSION]) == 0:
            self.seen_version = 0.0
            if in_main:
                # Same process as set_weights, so no race: `.weights` shows what is in force.
                weights_view[_W:] = self.weights
        for reader, rstate in zip(self.readers, state.get("readers", []), strict=False):
            reader.load(rstate)

    def _publish(self) -> None:
        k = len(self.corrupt)
        for c, values in (
            (_SAMPLES, self.sched.samples),
            (_TOKENS, self.sched.tokens),
            (_CORRUPT, self.corrupt),
        ):
            for i, v in enumerate(values):
                self.counts_row[c * k + i] = v

    # -- events ----------------------------------------------------------------------------

    def _corrupt_handler(self, i: int) -> Callable[[str, str], None]:
        name = self.ds.domain_names[i]

        def handle(url: str, message: str) -> None:
            self.corrupt[i] += 1
            self.counts_row[_CORRUPT * len(self.corrupt) + i] += 1
            text = f"domain {name!r}: corrupt tar data in shard {url}: {message}"
            if self.ds.on_corrupt == "raise":
                raise CorruptShardError(text)
            if url not in self._warned:
                self._warned.add(url)
                # warnings, not rank_zero_warn: a shard is read by one rank only, and the rank
                # that reads the bad shard is the one that has to say so.
                warnings.warn(
                    f"{text}; skipping it (warned once per shard, counted in counts()['corrupt'])",
                    stacklevel=2,
                )

        return handle

    def _adopt(self, new: tuple[float, ...], why: str) -> None:
        n = self.n
        if new != self.weights:
            self.weights = new
            self.history.append([n, list(new)])
            del self.history[:-_MAX_HISTORY]
            self.effective = schedule.effective_weights(new, self.sched.active)
            log.debug("%s adopted weights %s at sample %d (%s)", self._where(), new, n, why)
        elif not self.history:
            self.history.append([n, list(new)])

    def _poll(self) -> None:
        """Take in what set_weights changed since the last poll (called when the tick moved)."""
        view = self.shared
        tick = float(view[_TICK])
        version = float(view[_VERSION])
        if version % 2:
            return  # a write is in progress; the next sample looks again
        if version != self.seen_version:
            new = tuple(float(x) for x in view[_W:])
            if float(view[_VERSION]) != version:
                return  # torn read: look again at the next sample
            self.seen_version = version
            self._adopt(new, "set_weights")
        table = self.table
        k = len(self.weights)
        while self.read_rows < int(table[0]):
            start = 1 + self.read_rows * (2 + k)
            row = table[start : start + 2 + k]
            self._schedule(int(row[0]), int(row[1]), tuple(float(x) for x in row[2:]))
            self.read_rows += 1
        self.seen_tick = tick

    def _schedule(self, at: int, size: int, new: tuple[float, ...]) -> None:
        """Place a switch at rank sample ``at`` in this worker's own stream."""
        if self.num_workers > 1 and size <= 0:
            raise ValueError(
                f"set_weights(at_sample={at}) with {self.num_workers} DataLoader workers needs "
                "the loader's batch size to find the sample in each worker's stream: pass "
                "batch_size= to MixtureDataset or to set_weights"
            )
        local = schedule.local_index(at, size, self.worker, self.num_workers)
        n = self.n
        if local >= n:
            self.pending[local] = [at, size, new]
            self.next_at = min(self.pending)
            return
        in_force = next((w for m, w in reversed(self.history) if m <= local), None)
        if in_force is not None and tuple(in_force) == new:
            return  # already applied before a resume (a callback scheduling it again)
        warnings.warn(
            f"set_weights(at_sample={at}) came late on {self._where()}: it had already "
            f"produced its sample {local} (it is at {n}), so the weights take effect now. "
            "Schedule switches at least prefetch_factor batches per worker ahead of training.",
            stacklevel=2,
        )
        self._adopt(new, f"late switch for sample {at}")

    def _switch(self) -> None:
        """Adopt the scheduled switch due at this sample."""
        at, _, new = self.pending.pop(self.next_at)
        self.next_at = min(self.pending, default=_NEVER)
        self._adopt(new, f"scheduled at sample {at}")

    def _exhausted(self, i: int) -> bool:
        """Apply domain ``i``'s exhaustion policy; False when the stream has to end."""
        ds = self.ds
        name = ds.domain_names[i]
        reader = self.readers[i]
        policy = ds._exhaustion[i]
        finished = reader.pass_ - 1
        if policy == "error":
            raise RuntimeError(
                f"domain {name!r} is exhausted (exhaustion='error') after pass {finished} on "
                f"{self._where()}, having given {self.sched.samples[i]} samples"
            )
        if policy == "stop":
            self.sched.active[i] = False
            self.effective = schedule.effective_weights(self.weights, self.sched.active)
            left = [d for d, a in zip(ds.domain_names, self.sched.active, strict=True) if a]
            log.info(
                "domain %r exhausted on %s after %d samples; it leaves the mixture, %s",
                name,
                self._where(),
                self.sched.samples[i],
                f"the others renormalize: {left}" if left else "no domain is left",
            )
            return any(w > 0 for w in self.effective)
        if reader.last_emitted == 0 and getattr(reader, "one_shot", False) and finished > 0:
            raise ValueError(
                f"domain {name!r} is a one-shot iterator (iter() returns itself), so it cannot "
                "start a new pass; give a re-iterable (a list, a Dataset, an object whose "
                "__iter__ starts over) or exhaustion='stop'"
            )
        if reader.last_emitted == 0:
            raise ValueError(
                f"domain {name!r} gave no samples in pass {finished} on {self._where()}: it is "
                f"empty, or it has fewer samples than the {self.slots} slots that split it"
            )
        return True

    # -- the stream ------------------------------------------------------------------------

    def generate(self) -> Iterator[dict[str, Any]]:
        ds = self.ds
        names = ds.domain_names
        k = len(names)
        tokens_unit = ds.unit == "tokens"
        length_fn = ds.length_fn
        transform = ds.transform
        seed, slot = ds.seed, self.slot
        sched = self.sched
        rank = self.rank_order
        row = self.counts_row
        tick = self.tick
        nexts = [r.next for r in self.readers]
        owns = [r.owns_samples for r in self.readers]
        tie = schedule.TIE
        while True:
            # Events (set_weights, a scheduled switch, a domain leaving) are handled here, out
            # of the per-sample loop, which only runs until the next one.
            if tick[0] != self.seen_tick:
                self._poll()
            while self.next_at <= self.n:
                self._switch()
            weights = self.effective
            live = [(j, w) for j, w in enumerate(weights) if w > 0]
            if not live:
                log.info("no domain with positive weight is left on %s; stopping", self._where())
                return
            deficit, samples, tokens = sched.deficit, sched.samples, sched.tokens
            seen = self.seen_tick
            for _ in range(self.next_at - self.n):
                if tick[0] != seen:
                    break
                if tokens_unit:
                    i = schedule.pick_tokens(sched, weights, rank)
                else:
                    # schedule.pick_samples inlined: this runs for every sample.
                    i, best = -1, -math.inf
                    for j, w in live:
                        d = deficit[j] + w
                        if d > best + tie or (d > best - tie and rank[j] < rank[i]):
                            i, best = j, d
                sample = nexts[i]()
                if sample is END:
                    if not self._exhausted(i):
                        return
                    break
                if isinstance(sample, dict):
                    out = sample if owns[i] else dict(sample)
                    ntok = sample.get("ntok") if length_fn is None else None
                else:
                    out = {"sample": sample}
                    ntok = None
                if length_fn is not None:
                    length = int(length_fn(sample))
                elif ntok is not None:
                    try:
                        length = int(ntok)
                    except (TypeError, ValueError):
                        raise ValueError(
                            f"domain {names[i]!r}: the 'ntok' field must be a whole number,"
                            f" got {ntok!r} ({_where_sample(sample)})"
                        ) from None
                elif tokens_unit:
                    raise ValueError(
                        f"unit='tokens' needs each sample's length: domain {names[i]!r} gave a "
                        f"sample without an 'ntok' field ({_where_sample(sample)}); pass "
                        "length_fn=, or write the shards with mixsampler.write_shards (which "
                        "records ntok)"
                    )
                else:
                    length = 0
                if tokens_unit:
                    schedule.book(sched, weights, i, length, tokens=True)
                else:
                    # schedule.book inlined (samples unit).
                    for j, w in live:
                        deficit[j] += w
                    deficit[i] -= 1
                    samples[i] += 1
                    if length:
                        tokens[i] += length
                if transform is not None:
                    # Seeded by the sample's place in this slot's stream: row[i] is part of
                    # the checkpointed counts, so a resume repeats the same augmentations.
                    made = with_seed(transform, out, sample_seed(seed, slot, i, row[i]))
                    out = made if isinstance(made, dict) else {"sample": made}
                row[i] += 1  # _SAMPLES row
                if length:
                    row[k + i] += length  # _TOKENS row
                out["__domain__"] = names[i]
                yield out

    def __repr__(self) -> str:
        return f"_Run({self._where()}, n={self.n})"


def _where_sample(sample: Any) -> str:
    """Where a sample came from, for errors: its shard and key when it has them."""
    if isinstance(sample, dict) and "__key__" in sample:
        return f"shard {sample.get('__url__', '?')}, key {sample['__key__']!r}"
    return "not from a shard"


# The valid option values, also checked early by MixtureDataModule.
UNITS = ("samples", "tokens")
EXHAUSTION_MODES = ("repeat", "stop", "error")
ON_CORRUPT_MODES = ("warn", "raise")


def _default_rank() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if "RANK" not in os.environ and world_size > 1:
        warnings.warn(
            f"WORLD_SIZE={world_size} but RANK is not set and torch.distributed is not "
            "initialized: MixtureDataset assumes rank 0, so every rank would read the same data. "
            "Create the dataset after the process group is up, or pass rank= and world_size=.",
            stacklevel=3,
        )
    return int(os.environ.get("RANK", "0")), world_size


class MixtureDataset(_SharedState, IterableDataset):
    """Samples from several domains in exact, changeable proportions, resumably.

    Args:
        domains: domain name -> data. Data is a webdataset shard spec (a brace pattern such as
            ``"web-{000000..000031}.tar"``, a glob, a folder of ``.tar`` files, or a list of
            ``.tar`` paths or URLs), a map-style ``Dataset`` (``__len__`` + ``__getitem__``;
            a list of texts counts as one), or any other iterable or ``IterableDataset``
            (re-iterated for each pass).
        weights: domain name -> non-negative weight for every domain; normalized, and a zero
            switches a domain off.
        seed: seeds shard order, shuffles and tie-breaking; identical seeds give identical
            streams.
        unit: ``"samples"``: weights are shares of samples; ``"tokens"``: shares of tokens.
        length_fn: tokens in a sample, called on the sample as the domain gives it (before it
            is wrapped or tagged). Without it the length is the ``ntok`` field written by
            :func:`mixsampler.write_shards`; required for ``unit="tokens"`` on other data.
            Counted in ``counts()["tokens"]`` in either unit when available.
        transform: called on each sample after its length is counted, in the worker,
            with the global RNGs seeded from the sample's place in the stream (exact on
            resume; see :mod:`mixsampler.transforms`). May return any object.
        rank: this process's rank; default torch.distributed, then ``RANK``, then 0. Captured
            here, not in workers (Lightning's launcher sets WORLD_SIZE but not RANK there).
        world_size: number of ranks; default torch.distributed, then ``WORLD_SIZE``, then 1.
        shuffle_buffer: samples per shuffled block of shard and iterable domains; a resume
            re-reads at most one block per domain. Map-style domains are fully permuted.
        exhaustion: what a slot does at the end of a pass over a domain: ``"repeat"`` (a new
            pass in a new seeded order), ``"stop"`` (the domain leaves, the rest renormalize;
            the stream ends when no domain is left) or ``"error"``. One policy, or a mapping
            domain -> policy.
        on_corrupt: ``"warn"``: skip a corrupt tar member, count it and warn once per shard;
            ``"raise"``: raise :class:`CorruptShardError`.
        max_workers: DataLoader workers per rank the shared counters have room for.
        check_shards: check at construction that every local shard file exists.
        batch_size: the DataLoader's batch size. Needed only to place a scheduled switch
            (``set_weights(..., at_sample=n)``) exactly when the loader has more than one
            worker, because the loader deals whole batches to its workers in turn.

    Raises:
        ValueError: bad weights (negative, NaN, all zero, unknown or missing domains), an empty
            domain, or an invalid option (the message lists the valid ones).
        FileNotFoundError: a missing shard, named.

    Example:
        >>> import itertools
        >>> ds = MixtureDataset({"a": range(100), "b": range(100)}, {"a": 1, "b": 1}, seed=0)
        >>> sorted(s["__domain__"] for s in itertools.islice(ds, 4))
        ['a', 'a', 'b', 'b']
    """

    def __init__(
        self,
        domains: Mapping[str, Any],
        weights: Mapping[str, float],
        *,
        seed: int = 0,
        unit: str = "samples",
        length_fn: Callable[[Any], int] | None = None,
        transform: Callable[[Any], Any] | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        shuffle_buffer: int = 1000,
        exhaustion: str | Mapping[str, str] = "repeat",
        on_corrupt: str = "warn",
        max_workers: int = 64,
        check_shards: bool = True,
        batch_size: int | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(domains, Mapping) or not domains:
            raise ValueError(f"domains must be a non-empty mapping name -> data, got {domains!r}")
        for name in domains:
            if not isinstance(name, str) or not name:
                raise ValueError(f"domain names must be non-empty strings, got {name!r}")
        self.domain_names: tuple[str, ...] = tuple(domains)
        self._initial = schedule.normalize_weights(weights, self.domain_names)
        check_int("seed", seed, low=0)
        if unit not in UNITS:
            raise ValueError(f"unit can be {', '.join(UNITS)}, got {unit!r}")
        if length_fn is not None and not callable(length_fn):
            raise ValueError(f"length_fn must be callable or None, got {length_fn!r}")
        if transform is not None and not callable(transform):
            raise ValueError(f"transform must be callable or None, got {transform!r}")
        check_int("shuffle_buffer", shuffle_buffer, low=1)
        if on_corrupt not in ON_CORRUPT_MODES:
            raise ValueError(f"on_corrupt can be {', '.join(ON_CORRUPT_MODES)}, got {on_corrupt!r}")
        check_int("max_workers", max_workers, low=1)
        if batch_size is not None:
            check_int("batch_size", batch_size, low=1)
        self._exhaustion = self._parse_exhaustion(exhaustion)
        if rank is None or world_size is None:
            default_rank, default_world = _default_rank()
            rank = default_rank if rank is None else rank
            world_size = default_world if world_size is None else world_size
        check_int("world_size", world_size, low=1)
        check_int("rank", rank, low=0, high=world_size - 1)

        self.seed = seed
        self.unit = unit
        self.length_fn = length_fn
        self.transform = transform
        self.rank = rank
        self.world_size = world_size
        self.shuffle_buffer = shuffle_buffer
        self.on_corrupt = on_corrupt
        self.max_workers = max_workers
        self.batch_size = batch_size
        self._sources: tuple[Source, ...] = tuple(
            source_spec(name, data, check=check_shards) for name, data in domains.items()
        )

        k = len(self.domain_names)
        self._shared_weights = torch.zeros(_W + k, dtype=torch.float64).share_memory_()
        self._shared_weights[_W:] = torch.tensor(self._initial, dtype=torch.float64)
        # Scheduled switches: [count, then rows of (at_sample, batch_size, w_1..w_k)], appended
        # by the main process only; a row is complete before the count (and the tick) moves.
        self._shared_schedule = torch.zeros(
            1 + _MAX_SCHEDULED * (2 + k), dtype=torch.float64
        ).share_memory_()
        # One row per worker of this rank, each written only by its worker.
        self._shared_counts = torch.zeros(max_workers, 3, k, dtype=torch.int64).share_memory_()
        self._views: tuple[Any, Any] | None = None
        self._run: _Run | None = None
        self._pending: dict[str, Any] | None = None  # loaded, not yet iterated
        self._starting: dict[str, Any] | None = None  # iterated, first sample not yet drawn

    def _parse_exhaustion(self, exhaustion: str | Mapping[str, str]) -> tuple[str, ...]:
        if isinstance(exhaustion, str):
            exhaustion = dict.fromkeys(self.domain_names, exhaustion)
        if not isinstance(exhaustion, Mapping):
            raise ValueError(f"exhaustion must be a policy or a mapping, got {exhaustion!r}")
        unknown = sorted(set(exhaustion) - set(self.domain_names))
        if unknown:
            raise ValueError(
                f"exhaustion names unknown domains {unknown}; the domains are "
                f"{list(self.domain_names)}"
            )
        out = []
        for name in self.domain_names:
            policy = exhaustion.get(name, "repeat")
            if policy not in EXHAUSTION_MODES:
                raise ValueError(
                    f"exhaustion[{name!r}] can be {', '.join(EXHAUSTION_MODES)}, got {policy!r}"
                )
            out.append(policy)
        return tuple(out)

    # -- shared memory (its methods are in _SharedState above) ------------------

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_views"] = None  # numpy views would be pickled as copies
        state["_run"] = state["_starting"] = None
        return state

    # -- state ---------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The state of this process's stream as plain numbers, strings and lists.

        Inside a DataLoader worker this is the worker's own stream; StatefulDataLoader collects
        one per worker. Before any iteration it marks a fresh start.
        """
        if self._run is not None:
            return self._run.state()
        if self._starting is not None:
            return dict(self._starting)  # iter() called, first sample not yet drawn
        if self._pending is not None:
            return dict(self._pending)
        return {
            "format": _FORMAT,
            "fresh": True,
            "domains": list(self.domain_names),
            "unit": self.unit,
            "seed": self.seed,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state`` at the next ``iter()`` (checked against this dataset then).

        The stream continues with the weights saved in the state, unless ``set_weights`` has
        been called on this dataset since it was created: those weights then take effect at
        once (and enter the history), so a callback that re-applies its schedule on resume
        is obeyed.

        Raises:
            ValueError: a state of another format, domain list, unit or seed.
        """
        if not isinstance(state, Mapping) or state.get("format") != _FORMAT:
            raise ValueError(
                f"not a MixtureDataset state (format {_FORMAT}): "
                f"{state.get('format') if isinstance(state, Mapping) else state!r}"
            )
        for key, mine in (
            ("domains", list(self.domain_names)),
            ("unit", self.unit),
            ("seed", self.seed),
        ):
            if state.get(key) != mine:
                raise ValueError(
                    f"cannot resume: the state has {key}={state.get(key)!r}, this dataset "
                    f"has {key}={mine!r}"
                )
        self._run = self._starting = None
        self._pending = None if state.get("fresh") else dict(state)

    # -- iteration -----------------------------------------------------------------------

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        if info is None:
            return self._iter_slot(0, 1, in_main=True)
        return self._iter_slot(info.id, info.num_workers, in_main=False)

    def _iter_slot(
        self, worker: int, num_workers: int, *, in_main: bool = False
    ) -> Iterator[dict[str, Any]]:
        """The stream of DataLoader worker ``worker`` of ``num_workers`` on this rank.

        ``__iter__`` calls it with the real worker; tests call it directly to simulate workers
        without starting processes.
        """
        if not 0 <= worker < num_workers:
            raise ValueError(f"worker must be in [0, {num_workers}), got {worker}")
        if num_workers > self.max_workers:
            raise ValueError(
                f"num_workers={num_workers} exceeds max_workers={self.max_workers}; "
                "raise max_workers"
            )
        pending, self._pending = self._pending, None
        self._run = None
        self._starting = pending
        return self._generate(worker, num_workers, pending, in_main)

    def _generate(
        self, worker: int, num_workers: int, pending: dict[str, Any] | None, in_main: bool
    ) -> Iterator[dict[str, Any]]:
        # Built at the first next(), not in iter(): StatefulDataLoader calls iter() while it
        # starts a worker, and an error raised there leaves workers it takes seconds to reap;
        # raised from next(), a bad resume reaches the caller through the normal path.
        run = _Run(self, worker, num_workers, pending, in_main=in_main)
        self._run, self._starting = run, None
        yield from run.generate()

    def __repr__(self) -> str:
        w = ", ".join(f"{d}={x:.4g}" for d, x in self.weights.items())
        return (
            f"MixtureDataset({w}; unit={self.unit}, seed={self.seed}, "
            f"rank={self.rank}/{self.world_size})"
        )
