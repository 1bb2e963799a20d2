"""One slot's stream of a MixtureDataset: its schedule, its readers and its bookkeeping.

A *slot* is one DataLoader worker on one rank. Design decisions, and why:

- One schedule per slot over the full weight vector, not one global sequence cut into strides:
  striding aliases (weights 1/2, 1/2 over two workers hand each worker one domain), while
  per-slot schedules keep every worker's batches at the target composition and the global
  stream within a constant of exact (a sum of exact streams). Tie-breaking is a seeded
  permutation rotated by the slot, so slots do not all open with the same domain.
- A resume must land on the same layout (world size, workers per rank): a slot's state
  describes its own share of every pass, and re-splitting a half-read pass over a new layout
  would repeat or skip samples. A different layout raises; it never duplicates silently.
- A slot reads the shared tick (:mod:`mixsampler.shared`) at each sample and records in its
  state where it adopted new weights. On resume a slot continues with the weights in its
  state, unless ``set_weights`` was called on the new dataset before the first sample, which
  then wins.
- Each slot maps a scheduled switch's ``n`` (a sample of the rank's stream in DataLoader order)
  to a sample of its own stream with :func:`schedule.local_index`, and runs its per-sample loop
  only up to the next switch, so the switch costs nothing per sample and lands exactly.
  Pending switches are part of the state.
- Corrupt tar members are warned about with ``warnings.warn`` on the rank that reads them
  rather than ``rank_zero_warn``: a shard belongs to one rank only.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from mixsampler import schedule
from mixsampler.readers import END, ReaderContext
from mixsampler.shared import _CORRUPT, _SAMPLES, _TICK, _TOKENS, _VERSION, _W
from mixsampler.tario import CorruptShardError
from mixsampler.transforms import sample_seed, with_seed

if TYPE_CHECKING:
    from mixsampler.dataset import MixtureDataset

# The dataset's logger: what a slot logs is configured as MixtureDataset's.
log = logging.getLogger("mixsampler.dataset")

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
