"""The deterministic domain schedule behind :class:`mixsampler.MixtureDataset`, as plain functions.

Every DataLoader worker on every rank (a *slot*) runs its own largest-deficit schedule over the
full weight vector. Each slot's stream therefore stays within about one sample of ``w_i * n`` at
every prefix, and the global stream, a sum of exact streams, is off by at most a constant times
the number of slots, however long training runs. Striding one global sequence across slots
would alias instead: weights 1/2, 1/2 give ``ABAB...`` and two workers would each see one domain.

The deficit of domain ``i`` is what it is owed minus what it got, where what it is owed
accumulates the weight in force at each step (``w_i`` per sample, or ``w_i * length`` when
weights are token shares). Accumulating instead of using ``w_i * n`` lets weights change mid-run
without a jump: what a domain owes carries over to the new weights.

Example:
    >>> weights = normalize_weights({"a": 1, "b": 1}, ("a", "b"))
    >>> "".join("ab"[i] for i in simulate(weights, 6, slot=0))
    'bababa'
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

# Deficits equal up to this much count as a tie (floating sums of thirds are never exactly
# equal); ties then go by the slot's seeded priority, never by float noise.
TIE = 1e-9


def normalize_weights(
    weights: Mapping[str, float], domains: Sequence[str], *, name: str = "weights"
) -> tuple[float, ...]:
    """Validate a weight mapping and return it normalized, in ``domains`` order.

    Args:
        weights: domain name -> non-negative finite number; zero switches a domain off.
        domains: the known domain names, in the order of the returned tuple.
        name: the argument name used in error messages.

    Returns:
        The weights divided by their sum.

    Raises:
        ValueError: unknown or missing domains, negative, NaN or infinite values, or all zero.

    Example:
        >>> normalize_weights({"a": 3, "b": 1}, ("a", "b"))
        (0.75, 0.25)
    """
    if not isinstance(weights, Mapping):
        raise ValueError(f"{name} must map domain names to numbers, got {type(weights).__name__}")
    unknown = sorted(set(weights) - set(domains))
    if unknown:
        raise ValueError(
            f"{name} has weights for unknown domains {unknown}; the domains are {list(domains)}"
        )
    missing = [d for d in domains if d not in weights]
    if missing:
        raise ValueError(
            f"{name} has no weight for domains {missing}; give every domain a weight "
            f"(0 switches one off); the domains are {list(domains)}"
        )
    values = []
    for d in domains:
        try:
            w = float(weights[d])
        except (TypeError, ValueError):
            raise ValueError(f"{name}[{d!r}] must be a number, got {weights[d]!r}") from None
        if not math.isfinite(w) or w < 0:
            raise ValueError(f"{name}[{d!r}] must be a finite number >= 0, got {weights[d]!r}")
        values.append(w)
    total = sum(values)
    if total <= 0:
        raise ValueError(f"{name} must have at least one positive weight, got {dict(weights)}")
    return tuple(v / total for v in values)


def priority(seed: int, slot: int, k: int) -> tuple[int, ...]:
    """Rank of each domain when deficits tie, for one slot.

    A seeded permutation rotated by the slot index: slots do not all open with the same domain,
    so even the first samples of the global stream are balanced.

    Example:
        >>> sorted(priority(0, 3, 4))
        [0, 1, 2, 3]
    """
    order = np.random.default_rng([seed, 0x5EED]).permutation(k)
    order = np.roll(order, -(slot % k))
    rank = [0] * k
    for r, d in enumerate(order.tolist()):
        rank[d] = r
    return tuple(rank)


@dataclass
class ScheduleState:
    """Deficit bookkeeping of one slot; plain numbers so it round-trips through a state dict.

    Attributes:
        deficit: per domain, what it should have received so far minus what it received
            (samples, or tokens in tokens unit). Kept instead of the target itself so the
            numbers stay of order one sample however long the run: a float target of 1e9
            would leave only 1e-7 of precision for the comparisons.
        samples: per domain, samples emitted.
        tokens: per domain, tokens emitted (0 when lengths are unknown in samples unit).
        active: per domain, False once it has left (exhaustion policy "stop").
    """

    deficit: list[float]
    samples: list[int]
    tokens: list[int]
    active: list[bool] = field(default_factory=list)


def new_state(weights: Sequence[float]) -> ScheduleState:
    """A fresh schedule state for ``len(weights)`` domains."""
    k = len(weights)
    return ScheduleState([0.0] * k, [0] * k, [0] * k, [True] * k)


def effective_weights(weights: Sequence[float], active: Sequence[bool]) -> tuple[float, ...]:
    """Weights with departed domains removed and the rest renormalized (all zero if none left)."""
    total = sum(w for w, a in zip(weights, active, strict=True) if a)
    if total <= 0:
        return tuple(0.0 for _ in weights)
    return tuple(w / total if a else 0.0 for w, a in zip(weights, active, strict=True))


def _argmax(
    deficit: list[float], weights: Sequence[float], rank: Sequence[int], ahead: float
) -> int:
    # The hot loop of every sample: no temporary lists.
    best = -1
    best_d = -math.inf
    for i, w in enumerate(weights):
        if w <= 0:
            continue
        d = deficit[i] + w * ahead
        if d > best_d + TIE or (d > best_d - TIE and rank[i] < rank[best]):
            best, best_d = i, d
    return best


def pick_samples(state: ScheduleState, weights: Sequence[float], rank: Sequence[int]) -> int:
    """Pick the next domain when weights are shares of samples (book it with :func:`book`).

    Megatron's rule: the largest deficit *after* this step, ``deficit_i + w_i``; ties go to the
    lower ``rank``. Returns -1 when no domain has positive weight.
    """
    return _argmax(state.deficit, weights, rank, 1.0)


def pick_tokens(state: ScheduleState, weights: Sequence[float], rank: Sequence[int]) -> int:
    """Pick the next domain when weights are shares of tokens (book it with :func:`book`).

    The length of the next sample is unknown until it is read, so the rule takes the deficit
    after a step of the mean length seen so far, ``deficit_i + w_i * mean`` (with unit lengths
    this is exactly :func:`pick_samples`). Measured on random lengths, every domain stays
    within about one maximum sample length of its share; the plain current deficit drifts to
    about 1.5 lengths.
    """
    n = sum(state.samples)
    mean = sum(state.tokens) / n if n else 0.0
    return _argmax(state.deficit, weights, rank, mean)


def book(
    state: ScheduleState, weights: Sequence[float], i: int, length: int, *, tokens: bool
) -> None:
    """Book one sample of ``length`` tokens from domain ``i``.

    Every domain is owed its weight times one sample (or times ``length`` when weights are
    token shares); domain ``i`` is paid that sample.
    """
    step = length if tokens else 1
    deficit = state.deficit
    for j, w in enumerate(weights):
        if w:
            deficit[j] += w * step
    deficit[i] -= step
    state.samples[i] += 1
    state.tokens[i] += length


def simulate(
    weights: Sequence[float],
    n: int,
    *,
    seed: int = 0,
    slot: int = 0,
    lengths: Sequence[Sequence[int]] | None = None,
) -> list[int]:
    """The domain sequence one slot would produce over ``n`` samples (tests and benchmarks).

    Args:
        weights: normalized weights.
        n: number of samples.
        seed: the dataset seed (tie-breaking).
        slot: global slot index (tie-breaking).
        lengths: per domain, lengths of its successive samples (cycled); switches to tokens unit.

    Example:
        >>> simulate((0.5, 0.25, 0.25), 4)
        [0, 1, 2, 0]
    """
    rank = priority(seed, slot, len(weights))
    state = new_state(weights)
    out = []
    pos = [0] * len(weights)
    for _ in range(n):
        if lengths is None:
            i = pick_samples(state, weights, rank)
            book(state, weights, i, 0, tokens=False)
        else:
            i = pick_tokens(state, weights, rank)
            seq = lengths[i]
            book(state, weights, i, int(seq[pos[i] % len(seq)]), tokens=True)
            pos[i] += 1
        out.append(i)
    return out


def local_index(at: int, batch_size: int, worker: int, num_workers: int) -> int:
    """The first sample of worker ``worker``'s own stream at or after rank sample ``at``.

    A DataLoader with ``num_workers`` workers hands out whole batches round robin: batch ``b``
    of the rank's stream is local batch ``b // num_workers`` of worker ``b % num_workers``. So
    sample ``at`` is sample ``at % batch_size`` of batch ``at // batch_size``; a worker that
    does not produce that batch starts its first batch after it.

    Example:
        >>> [local_index(7, 5, w, 2) for w in range(2)]  # batch 1 is worker 1's first batch
        [5, 2]
    """
    if num_workers <= 1:
        return at
    batch, offset = divmod(at, batch_size)
    local = -((worker - batch) // num_workers)  # ceil((batch - worker) / num_workers) >= 0
    if local * num_workers + worker == batch:
        return local * batch_size + offset
    return local * batch_size
