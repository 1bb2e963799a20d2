"""The shared-memory side of a MixtureDataset: weights, scheduled switches and counters.

The main process writes weights and switches here; every slot (:mod:`mixsampler.slot`) reads
them, and writes its own row of counters, which ``counts()`` sums.

- Weights are a seqlock in shared memory (version odd while written) behind a tick that every
  ``set_weights`` moves; a slot reads the tick at each sample (one memory read) and looks at
  anything else only when it moved.
- A switch scheduled with ``set_weights(..., at_sample=n)`` sits in a shared append-only table
  of at most ``_MAX_SCHEDULED`` rows ``(at_sample, batch_size, w_1..w_k)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mixsampler import schedule

# Rows of the shared counter tensor: samples, tokens, corrupt members.
_SAMPLES, _TOKENS, _CORRUPT = 0, 1, 2
# Room for scheduled switches (set_weights(at_sample=...)) in shared memory, per dataset.
_MAX_SCHEDULED = 4096
# Shared weights: [tick, version, w_1..w_k]. The tick changes after every set_weights, so a
# slot reads one number per sample; the version is a seqlock of the weights (odd while written).
_TICK, _VERSION, _W = 0, 1, 2


def _check_count(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


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
        size = self.batch_size if batch_size is None else _check_count("batch_size", batch_size, 1)
        if at_step is not None:
            _check_count("at_step", at_step, 0)
            if size is None:
                raise ValueError(
                    f"set_weights(at_step={at_step}) needs the loader's batch size: pass "
                    "batch_size= here or to MixtureDataset"
                )
            at_sample = at_step * size
        _check_count("at_sample", at_sample, 0)
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
