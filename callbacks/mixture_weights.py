"""Set the training mixture of a run: fixed, from WEIGHTS.json, or solved from a fitted law.

The weights take effect before the first training batch. Lightning builds the train loader and
starts its workers before ``on_train_start``, so this callback sets them in ``setup``: after the
datamodule's ``setup`` (where :class:`~mixsampler.MixtureDataModule` builds its sampler) and
before any loader exists. ``MixtureDataset.set_weights`` writes to shared memory, so worker
processes started later (fork or spawn) and ones already running both see it. Under any strategy
each rank sets the same weights: a law is solved on rank zero and the result broadcast.

The weights are saved in the callback's state; on resume they are set again before the loader
is rebuilt, so a restarted run keeps its mixture (and schedule position). A resume whose
arguments give other weights (another WEIGHTS.json, a re-solved law) is an error by default;
``on_resume="checkpoint"`` keeps the checkpoint's, ``on_resume="new"`` trains on the new ones
from the restored step on. They are printed on the console, logged as ``mix/weight/<domain>``
and written to ``mixture_weights.json`` in the trainer's log folder (``default_root_dir`` with
``logger=False``), whose ``source`` always names where the weights in it came from.

Unconverged weights are refused: a WEIGHTS.json with ``success: false`` (read by
``laws.weightsfile.read_weights``) or a law whose optimum did not converge, unless
``allow_unconverged=True``. A law is solved through the same path as ``mixsampler optimize``
(``laws.decision.decide``): an untrusted law (unconverged fit, runs that never learned,
held-out error above 5 %) is refused unless ``allow_untrusted_law=True``. Weights from a
WEIGHTS.json solved for an N or D more than 2x away from this run's are warned about
(``size_mismatch="error"`` refuses them).

This module owns the callback (hooks, state, resume); the mixtures themselves (schedule,
files, solving, comparing) are in ``callbacks._mixtures``, setting them in ``callbacks._sampler``.

A schedule ``[{"step": s, "weights": {...}}, ...]`` changes the mixture during training: the
batches of optimizer step ``s`` onward are drawn with the new weights. The schedule is handed
to the sampler (``MixtureDataset.set_weights(..., at_step=)``), which switches at the exact
sample with any number of workers and across a resume. Only a sampler that cannot schedule
(no batch size known) gets the weights when the step starts, and with workers the batches
already prefetched then keep the old weights (up to ``num_workers x prefetch_factor``).

Example:
    >>> cb = MixtureWeights({"web": 0.6, "code": 0.4})
    >>> cb.state_dict()["weights"]
    {'web': 0.6, 'code': 0.4}
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from typing_extensions import override

from mixsampler.callbacks._common import (
    check_model_size,
    check_weights,
    count_parameters,
)
from mixsampler.callbacks._mixtures import (
    OnResume,
    SizeMismatch,
    check_run_size,
    check_schedule,
    fmt_weights,
    read_weights_file,
    same_schedule,
    same_weights,
    solve_law,
    write_json,
)
from mixsampler.callbacks._sampler import apply_weights, schedule_exactly

__all__ = ["MixtureWeights"]

log = logging.getLogger(__name__)


class MixtureWeights(Callback):
    """Give a run its data mixture before the first batch, keep it across restarts.

    Exactly one source of the initial weights (or a schedule starting at step 0):

    Args:
        weights: domain -> weight (normalized).
        weights_file: a WEIGHTS.json (``{"weights": {domain: weight}, ...}``, as written by
            ``mixsampler optimize``).
        law_file: a LAW.json (``laws.save_laws``); the weights minimizing ``objective`` are
            solved for this run's own N (counted from the model) and ``planned_tokens``.
        objective: target -> weight of its predicted loss (``law_file`` only); default equal
            weights over the targets that are training domains (held-out targets only when
            named).
        planned_tokens: D the run will train on (required with ``law_file``; with
            ``weights_file`` it is compared with the D the weights were solved for).
        model_size: N for solving the law: ``"non_embedding"`` (default, matching
            ``DomainLossLogger``'s rows), ``"total"``, or an explicit count.
        min_weight: lower bound per domain for the law's optimum (one number or per domain).
        schedule: ``[{"step": s, "weights": {...}}, ...]`` (or ``(s, weights)`` pairs), steps
            increasing; each entry applies from optimizer step ``s`` on.
        filename: name of the JSON written in the trainer's log folder (None: none).
        optimize_kwargs: further arguments of ``laws.optimize`` (``max_weight``,
            ``available``, ``max_repeat``, ``trust_region``, ``trust_margin``, ``natural``,
            ``seed``, ``n_starts``, ``max_iter``, ...).
        allow_unconverged: accept weights whose optimum did not converge (``success: false``
            in WEIGHTS.json, or the law's optimum); refused by default.
        allow_untrusted_law: solve ``law_file`` even when its fit is untrusted (see
            ``laws.decision.check_trusted``); refused by default.
        size_mismatch: ``"warn"`` (default), ``"error"`` or ``"ignore"``: what happens when
            ``weights_file`` was solved for an N (this model's parameter count) or D
            (``planned_tokens``) more than 2x away from this run's.
        on_resume: ``"error"`` (default), ``"checkpoint"`` or ``"new"``: what a resume does
            when these arguments give other weights than the checkpoint was trained on.

    Example:
        >>> cb = MixtureWeights(weights_file="WEIGHTS.json")  # doctest: +SKIP
        >>> cb = MixtureWeights(law_file="LAW.json", planned_tokens=2e9,
        ...                     objective={"openhermes": 1.0})  # doctest: +SKIP
    """

    def __init__(
        self,
        weights: Mapping[str, float] | None = None,
        *,
        weights_file: str | os.PathLike[str] | None = None,
        law_file: str | os.PathLike[str] | None = None,
        objective: Mapping[str, float] | None = None,
        planned_tokens: float | None = None,
        model_size: int | str = "non_embedding",
        min_weight: float | Mapping[str, float] = 0.0,
        schedule: Sequence[Mapping[str, Any] | tuple[int, Mapping[str, float]]] | None = None,
        filename: str | None = "mixture_weights.json",
        optimize_kwargs: Mapping[str, Any] | None = None,
        allow_unconverged: bool = False,
        on_resume: str = "error",
        allow_untrusted_law: bool = False,
        size_mismatch: str = "warn",
    ) -> None:
        given = [
            n
            for n, v in (
                ("weights", weights),
                ("weights_file", weights_file),
                ("law_file", law_file),
            )
            if v is not None
        ]
        if len(given) > 1:
            raise ValueError(f"give one of weights, weights_file, law_file; got {given}")
        self.schedule = check_schedule(schedule)
        if not given and not (self.schedule and self.schedule[0][0] == 0):
            raise ValueError(
                "give weights, weights_file or law_file, or a schedule whose first step is 0;"
                " got none"
            )
        try:
            self.on_resume = OnResume(on_resume)
        except ValueError:
            options = ", ".join(m.value for m in OnResume)
            raise ValueError(f"on_resume can be {options}, got {on_resume!r}") from None
        self.allow_unconverged = bool(allow_unconverged)
        self.allow_untrusted_law = bool(allow_untrusted_law)
        try:
            self.size_mismatch = SizeMismatch(size_mismatch)
        except ValueError:
            options = ", ".join(m.value for m in SizeMismatch)
            raise ValueError(f"size_mismatch can be {options}, got {size_mismatch!r}") from None
        self.law_file = Path(law_file) if law_file is not None else None
        self.weights_file = Path(weights_file) if weights_file is not None else None
        self.objective = dict(objective) if objective is not None else None
        self.planned_tokens = planned_tokens
        self.model_size = check_model_size(model_size)
        self.min_weight = min_weight
        self.filename = filename
        if optimize_kwargs is not None and not isinstance(optimize_kwargs, Mapping):
            raise ValueError(f"optimize_kwargs must be a mapping, got {optimize_kwargs!r}")
        reserved = {"model_size", "n_tokens", "objective", "min_weight"} & set(
            optimize_kwargs or {}
        )
        if reserved:
            raise ValueError(
                f"optimize_kwargs cannot set {sorted(reserved)}: they are MixtureWeights arguments"
            )
        self.optimize_kwargs = dict(optimize_kwargs or {})
        if objective is not None and law_file is None:
            raise ValueError(f"objective is only used with law_file, got objective={objective!r}")
        if law_file is not None:
            if (
                planned_tokens is None
                or isinstance(planned_tokens, bool)
                or not (
                    isinstance(planned_tokens, (int, float))
                    and planned_tokens > 0
                    and math.isfinite(planned_tokens)
                )
            ):
                raise ValueError(
                    "planned_tokens must be a positive number (the D the run will train on) when"
                    f" law_file is given, got {planned_tokens!r}"
                )
            if not self.law_file.is_file():
                raise FileNotFoundError(f"law_file {str(self.law_file)!r} does not exist")
        self._weights_record: Any = None
        if (
            planned_tokens is not None
            and law_file is None
            and (
                isinstance(planned_tokens, bool)
                or not isinstance(planned_tokens, (int, float))
                or not (planned_tokens > 0 and math.isfinite(planned_tokens))
            )
        ):
            raise ValueError(f"planned_tokens must be a positive number, got {planned_tokens!r}")
        if weights_file is not None:
            weights, self._weights_record = read_weights_file(
                self.weights_file, self.allow_unconverged
            )
        if weights is not None:
            weights = check_weights(weights, "weights")
        elif self.schedule and self.schedule[0][0] == 0 and law_file is None:
            weights = self.schedule[0][1]
        self._weights: dict[str, float] | None = dict(weights) if weights is not None else None
        self._source = (
            f"weights_file {self.weights_file}"
            if self.weights_file is not None
            else f"law_file {self.law_file}"
            if self.law_file is not None
            else "weights"
            if given
            else "schedule"
        )
        self._applied = 0  # schedule entries in force
        self._exact = False  # the sampler switches at the exact sample (see _schedule_exactly)
        self._restored = False
        self._solved: dict[str, Any] = {}
        self._trainer: pl.Trainer | None = None
        self._set_before_start = False
        self._folder: Path | None = None

    @property
    @override
    def state_key(self) -> str:
        # Not the source: a resume with another weights file must find (and check) this state.
        return self._generate_state_key(filename=self.filename)

    # ------------------------------------------------------------------ hooks

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        others = [
            cb for cb in trainer.callbacks if isinstance(cb, MixtureWeights) and cb is not self
        ]
        if others:
            raise ValueError(
                f"this Trainer has {len(others) + 1} MixtureWeights callbacks: each would set the"
                " one training mixture over the others; keep one (a schedule= changes the"
                " weights during training)"
            )
        self._trainer = trainer
        # Trainer.log_dir broadcasts from rank zero: every rank has to ask, and only here.
        self._folder = Path(trainer.log_dir or trainer.default_root_dir)
        if trainer.world_size > 1:
            # Every rank logs the same weights; there is nothing to sync.
            warnings.filterwarnings(
                "ignore", message=r"It is recommended to use `self\.log\('mix/weight/"
            )
        if self.law_file is not None and not self._restored:
            self._weights = self._solve(trainer, pl_module)
        if self._weights_record is not None and not self._restored:
            wf = self._weights_record
            check_run_size(
                self.weights_file,
                (wf.model_size, wf.n_tokens),
                (count_parameters(pl_module, self.model_size), self.planned_tokens),
                self.size_mismatch,
                wf.n_tokens_unit or "tokens",
            )
        if self.schedule and self.schedule[0][0] == 0 and self._applied == 0:
            self._weights = dict(self.schedule[0][1])
            self._applied = 1
        self._set_before_start = self._apply(trainer, warn_late=False)
        self._exact = self._schedule_exactly(trainer)
        self._write_json(trainer)
        self._announce(trainer)

    def _schedule_exactly(self, trainer: pl.Trainer) -> bool:
        """Hand the rest of the schedule to the sampler (see :func:`schedule_exactly`)."""
        return schedule_exactly(trainer, self.schedule[self._applied :])

    def _announce(self, trainer: pl.Trainer) -> None:
        if self._weights is None:
            return
        shares = ", ".join(f"{d} {w:.4g}" for d, w in self._normalized().items())
        where = (
            f"; written to {self._folder or trainer.default_root_dir}/{self.filename}"
            if self.filename
            else ""
        )
        rank_zero_info(f"MixtureWeights: training mixture {shares} (from {self._source}){where}")

    def _solve(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, float]:
        n = count_parameters(pl_module, self.model_size)
        weights: dict[str, float] | None = None
        info: dict[str, Any] = {}
        if trainer.is_global_zero:
            weights, info = solve_law(
                self.law_file,
                n,
                self.planned_tokens,
                self.objective,
                self.min_weight,
                self.optimize_kwargs,
                self.allow_unconverged,
                self.allow_untrusted_law,
            )
            log.info(
                "MixtureWeights: solved %s at N=%d, D=%g: %s",
                self.law_file,
                n,
                self.planned_tokens,
                weights,
            )
        # Every rank must train on the same mixture: solve once, broadcast.
        weights, info = trainer.strategy.broadcast((weights, info), src=0)
        self._solved = info
        return weights

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._set_before_start and not self._apply(trainer, warn_late=True):
            raise ValueError(
                "MixtureWeights found no mixture sampler to set: train with"
                " mixsampler.MixtureDataModule or a DataLoader over a MixtureDataset"
            )

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._applied < len(self.schedule):
            # The loader is one batch ahead of training (Lightning's lookahead): the next batch
            # it draws is number ready + 1, which belongs to step (ready + 1) // accumulation.
            ready = trainer.fit_loop.epoch_loop.batch_progress.total.ready
            next_step = (ready + 1) // max(1, trainer.accumulate_grad_batches)
            changed = False
            while (
                self._applied < len(self.schedule) and self.schedule[self._applied][0] <= next_step
            ):
                self._weights = dict(self.schedule[self._applied][1])
                self._applied += 1
                changed = True
            if changed:
                if not self._exact:  # else the sampler already switched at the exact sample
                    self._apply(trainer, warn_late=False)
                log.info("MixtureWeights: step %d on: %s", next_step, self._weights)
                self._write_json(trainer)
        if self._weights:
            for d, w in self._normalized().items():
                pl_module.log(f"mix/weight/{d}", w, on_step=True, on_epoch=False, sync_dist=False)

    # ------------------------------------------------------------------ applying

    def _normalized(self) -> dict[str, float]:
        weights = self._weights or {}
        total = sum(weights.values())
        return {d: w / total for d, w in weights.items()}

    def _apply(self, trainer: pl.Trainer, *, warn_late: bool) -> bool:
        """Set the weights on the datamodule / sampler; False when there is none yet."""
        return apply_weights(trainer, self._weights, warn_late=warn_late)

    def _write_json(self, trainer: pl.Trainer) -> None:
        if self.filename is None or not trainer.is_global_zero or self._weights is None:
            return
        content = {
            "weights": self._normalized(),
            "source": self._source,
            "step": trainer.global_step,
            "schedule": [{"step": s, "weights": w} for s, w in self.schedule],
            "schedule_applied": self._applied,
        }
        if self._solved:
            content["solved"] = self._solved
        write_json(self._folder or Path(trainer.default_root_dir), self.filename, content)

    # ------------------------------------------------------------------ state

    @override
    def state_dict(self) -> dict[str, Any]:
        return {
            "weights": dict(self._weights) if self._weights is not None else None,
            "schedule_applied": self._applied,
            "source": self._source,
            "schedule": [[s, dict(w)] for s, w in self.schedule],
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        weights = state_dict.get("weights")
        saved = {str(d): float(w) for d, w in weights.items()} if weights else None
        applied = int(state_dict.get("schedule_applied", self._applied))
        # What these arguments would train on at the checkpoint's schedule position.
        mine = dict(self.schedule[applied - 1][1]) if self.schedule and applied else self._weights
        saved_schedule = [(int(s), dict(w)) for s, w in state_dict.get("schedule", [])]
        changed = (saved is not None and mine is not None and not same_weights(saved, mine)) or (
            "schedule" in state_dict and not same_schedule(saved_schedule, self.schedule)
        )
        if changed and self.on_resume is OnResume.ERROR:
            raise ValueError(
                f"resuming a run trained on {fmt_weights(saved)} (from "
                f"{state_dict.get('source')}), but"
                f" MixtureWeights now gives {fmt_weights(mine)} (from {self._source}); pass"
                " on_resume='checkpoint' to keep the checkpoint's mixture, or on_resume='new' to"
                " train on the new one from the restored step"
            )
        if changed and self.on_resume is OnResume.NEW:
            if self._trainer is not None:
                self._set_before_start = self._apply(self._trainer, warn_late=False)
                self._write_json(self._trainer)
                self._announce(self._trainer)
            rank_zero_warn(
                f"MixtureWeights: resumed with new weights {fmt_weights(mine)} "
                f"(from {self._source});"
                f" the checkpoint was trained on {fmt_weights(saved)}"
            )
            return
        if saved:
            self._weights = saved
            self._restored = True
            # mixture_weights.json must name where these weights came from, not this run's file.
            self._source = str(state_dict.get("source", self._source))
        if saved_schedule:
            self.schedule = saved_schedule
        self._applied = applied
        if self._trainer is not None:
            # Restored after setup, before the train loader is built: still before batch one.
            self._set_before_start = self._apply(self._trainer, warn_late=False)
            self._write_json(self._trainer)
            self._announce(self._trainer)
