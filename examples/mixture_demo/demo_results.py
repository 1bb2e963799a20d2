"""The demo's results as frozen dataclasses: what ``results.json`` holds, typed and documented.

:func:`demo_pipeline.run_demo` returns a :class:`DemoResults`; the report, its tables
and figures read its attributes, so a misspelt name fails at once (and in a type checker)
instead of as a KeyError at the end of a long run. Field names are the keys of
``results.json``; :meth:`DemoResults.to_json` and :meth:`DemoResults.from_json` convert by the
fields' types, so the file round-trips exactly: ``DemoResults.load(path) == results``.

Units: losses are in nats per byte, errors (``*_pct``, ``*mre``, ``*bias``) in percent, model
sizes N in non-embedding parameters, D in training tokens (bytes), times in seconds. The
dataclasses are frozen (fields are never reassigned); treat their dicts as read-only too.

Example:
    >>> e = ErrorSummary(rows=4, mre=1.25, bias=-0.5)
    >>> e.to_json()
    {'rows': 4, 'mre': 1.25, 'bias': -0.5}
    >>> ErrorSummary.from_json(e.to_json()) == e
    True
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from demo_config import DemoConfig
from demo_data import DemoData

R = TypeVar("R", bound="Record")

BASELINES: tuple[str, ...] = ("uniform", "natural")
"""The mixtures every optimized mixture is compared against, seed by seed."""


class Record:
    """Base of the result dataclasses: ``to_json()`` gives plain data, ``from_json(d)`` the
    dataclass back, both driven by the fields' type hints (no per-field code to forget)."""

    def to_json(self) -> dict[str, Any]:
        """The fields as plain JSON data (dicts, lists, str, numbers, bools, None)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_json(cls: type[R], obj: Mapping[str, Any]) -> R:
        """The dataclass from :meth:`to_json`'s output; an unknown key is an error."""
        return _decode(cls, obj)


@dataclass(frozen=True)
class FitSummary(Record):
    """How one ``mixsampler.laws.fit`` call ended (one law, one target, one row subset)."""

    success: bool  # the optimizer reported convergence
    message: str  # what happened, in words
    fun: float  # the fit objective at the optimum (laws.fit's mean Huber loss on the raw loss)
    n_rows: int  # run-table rows the law was fitted on
    seconds: float  # wall time of the fit


@dataclass(frozen=True)
class LawReport(Record):
    """One law (additive or joint) fitted on the proxies and scored where it did not look.

    Every dict of errors maps a target (each training domain, then each held-out target) to a
    percentage: MRE = mean |predicted - measured| / measured, bias = the same mean signed
    (positive: the law is too high).
    """

    train_mre: dict[str, float]  # law fitted on every proxy row, on those rows
    heldout_train_mre: dict[str, float]  # law fitted below the largest proxy N, on its rows
    heldout_mre: dict[str, float]  # that law at the largest proxy N: extrapolation in N
    heldout_d_mre: dict[str, float]  # law fitted on D <= d_half, on the rows beyond: in D
    heldout_d_bias: dict[str, float]  # the signed error of that extrapolation in D
    d_half: float  # half the proxies' largest D (tokens): the held-out-D split
    fit: dict[str, FitSummary]  # per target, how the fit on every proxy row ended
    heldout_fit: dict[str, FitSummary]  # per target, how the fit below the largest N ended
    path: str  # LAW.json fitted on every row: laws/<law>.json
    heldout_path: str  # LAW.json fitted below the largest N: laws/<law>.heldout.json
    early_path: str  # LAW.json fitted on D <= d_half: laws/<law>.early.json


@dataclass(frozen=True)
class Mixture(Record):
    """One main-run mixture and its WEIGHTS.json; the optimizer's fields are None for the
    baselines (uniform, natural)."""

    name: str  # "optimized-<objective>", "uniform" or "natural"
    weights: dict[str, float]  # training domain -> weight, summing to 1
    file: str  # its WEIGHTS.json (weights/<name>.json), which the main runs read
    fingerprint: str  # SHA-256 (12 hex) of the weights as exact JSON: weights_fingerprint
    objective: dict[str, float] | None = None  # target -> weight it was optimized for
    success: bool | None = None  # laws.optimize certified the optimum
    message: str | None = None  # the optimizer's message
    gap: float | None = None  # Frank-Wolfe gap at the weights (nats/byte; 0 at a KKT point)
    predicted: float | None = None  # the law's objective at the planned main N, D (nats/byte)


@dataclass(frozen=True)
class RunSummary(Record):
    """One trained run (proxy or main), as :func:`demo_runs.train_run` reports it."""

    name: str  # the run's name: the run column of its rows
    stage: str  # "proxy" or "main"
    mixture: str  # the mixture's label: "mix03", "uniform", "optimized-avg", ...
    seed: int  # initialisation and data-order seed
    width: int  # d_model
    model_size: int  # non-embedding parameters N
    steps: int  # optimizer steps trained
    seconds: float  # wall time of the training
    metrics: dict[str, float]  # the trainer's last metrics: val/loss/<domain> in nats/byte, ...

    @classmethod
    def from_summary(cls, summary: Mapping[str, Any]) -> RunSummary:
        """From ``train_run``'s summary dict; keys this class does not know are left out.

        Example:
            >>> RunSummary.from_summary(summary).model_size  # doctest: +SKIP
            12768
        """
        return cls.from_json({f.name: summary[f.name] for f in dataclasses.fields(cls)})


@dataclass(frozen=True)
class MainRun(Record):
    """One main run's final validation next to the chosen law's prediction for it."""

    name: str  # "main-<mixture>-s<seed>"
    mixture: str  # the mixture it trained on
    seed: int  # its seed: the same seed pairs runs of different mixtures
    model_size: float  # N recorded in its last row
    n_tokens: float  # D recorded in its last row
    loss: dict[str, float]  # target -> measured final loss (nats/byte), domains and targets
    pred: dict[str, float]  # target -> the law at the row's own N, D and weights (nats/byte)
    objective: dict[str, float]  # objective -> measured value: target-weighted sum of loss
    pred_objective: dict[str, float]  # objective -> predicted value: the same sum of pred


@dataclass(frozen=True)
class ObjectiveStats(Record):
    """One objective over one mixture's main runs; per-seed tuples are in seed order."""

    measured: tuple[float, ...]  # measured objective per seed (nats/byte)
    predicted_per_seed: tuple[float, ...]  # the law's prediction per seed (nats/byte)
    mean: float  # mean of measured
    spread: float  # max - min of measured: the seed noise
    predicted: float  # mean of predicted_per_seed
    rel_error_pct: float  # |predicted - mean| / mean, in %
    # The worst seed's |predicted - measured| / measured, in %: "every main run within 2 %".
    max_rel_error_pct: float


@dataclass(frozen=True)
class MixtureEvaluation(Record):
    """One mixture's main runs."""

    seeds: tuple[int, ...]  # their seeds, ascending: the order of every per-seed tuple
    objective: dict[str, ObjectiveStats]  # objective -> its statistics over the seeds


@dataclass(frozen=True)
class ErrorSummary(Record):
    """The law's error on a set of main-run validations (every target of every row)."""

    rows: int  # validations (run-table rows) in the set
    mre: float | None  # mean |predicted - measured| / measured in %; None when rows is 0
    bias: float | None  # mean signed (predicted - measured) / measured in %; None if no rows


@dataclass(frozen=True)
class ErrorByTokens(Record):
    """The law on every main-run validation, split at 1.05x the proxies' largest D."""

    proxy_tokens_max: float  # the proxies' largest D (tokens)
    within: ErrorSummary  # rows up to the split: only N is extrapolated
    beyond: ErrorSummary  # rows past it: N and D are extrapolated


@dataclass(frozen=True)
class MainEvaluation(Record):
    """The main runs against the law (:func:`demo_mainruns.evaluate_main`)."""

    runs: dict[str, MainRun]  # run name -> its final validation, in run-name order
    mixtures: dict[str, MixtureEvaluation]  # mixture -> its runs, in the mixtures' order
    by_tokens: ErrorByTokens  # the law's error within and beyond the proxies' D


@dataclass(frozen=True)
class PairedTest(Record):
    """A paired comparison over seeds: gains = baseline - candidate, per seed
    (:func:`demo_claims.paired_test`)."""

    gains: tuple[float, ...]  # per-seed gains, seed order (positive: the candidate is lower)
    mean: float  # their mean (nats/byte)
    sd: float  # their sample standard deviation (ddof 1)
    t_p: float  # one-sided paired t-test p-value for mean > 0
    sign_p: float  # one-sided exact sign test p-value (ties dropped)
    positive_every_seed: bool  # every gain > 0
    significant: bool  # t_p < demo_claims.ALPHA
    seeds_needed: int | None  # fewest seeds for t_p < ALPHA at this mean and sd; None if <= 0


@dataclass(frozen=True)
class DecisionStatement(Record):
    """The tool's call before the main runs on one optimum against one baseline, from
    ``laws.decide`` (:func:`demo_claims.decision_statement`)."""

    objective: str  # "avg" or "target"
    baseline: str  # "uniform" or "natural"
    predicted_gain: float  # the law's baseline - optimum at the main (N, D), nats/byte
    predicted_gain_pct: float  # the same relative to the baseline's prediction, in %
    resolution: float | None  # the smallest gain the law resolves, nats/byte (None: unknown)
    resolution_source: str  # which error sets it (e.g. "held-out n error")
    verdict: str  # laws.decide's verdict on the gain
    refused: tuple[str, ...]  # why a user would get no weights without an override
    distinguishable: bool  # resolvable per laws.decide, and nothing refused
    text: str  # the statement as printed before the main runs


@dataclass(frozen=True)
class DecisionCheck(Record):
    """Part (c) for one objective and baseline: the statement, the paired test, the outcome."""

    statement: DecisionStatement  # what the tool said before the main runs
    test: PairedTest  # baseline - optimized per seed on the main runs
    outcome: str  # "PASS", "FAIL", or "not judged" (within its error, or refused: no claim)


@dataclass(frozen=True)
class MixtureCheck(Record):
    """One mixture's check runs at the largest proxy size and D (part (a))."""

    weights: dict[str, float]  # training domain -> weight
    seeds: tuple[int, ...]  # its runs' seeds, ascending: the order of every tuple below
    measured: dict[str, tuple[float, ...]]  # objective -> measured value per seed
    predicted: dict[str, tuple[float, ...]]  # objective -> the law's value per seed


@dataclass(frozen=True)
class ScaleObjective(Record):
    """Part (a) for one objective."""

    spearman: float  # rank correlation of predicted and measured means over the mixtures
    best: str  # the mixture with the lowest measured mean
    regret: float  # optimized mean - best mean (nats/byte; 0 when the optimum is best)
    regret_noise: float  # 95 % half-width of the paired optimized - best differences
    regret_within_noise: bool  # regret <= regret_noise
    passes: bool  # spearman >= SPEARMAN_GOAL and regret_within_noise


@dataclass(frozen=True)
class ScaleCheck(Record):
    """Part (a): the mixture part of the law at a scale the proxies reached."""

    model_size: float  # N of the check runs (the largest proxy size)
    n_tokens: float  # their D
    mixtures: dict[str, MixtureCheck]  # random ones ("rand01", ...), baselines, optima
    mre: float  # the law's MRE over targets on the check runs' final validations, in %
    mre_by_target: dict[str, float]  # per target, in %
    objectives: dict[str, ScaleObjective]  # objective -> Spearman and regret
    passes: bool  # mre <= MRE_GOAL_PCT and every objective passes


@dataclass(frozen=True)
class DomainExtrapolation(Record):
    """Part (b) for one target: the law extrapolated in N to the main size."""

    main_mre: float  # MRE on the main runs' final validations, in %
    main_bias: float  # mean signed error there, in % (positive: the law is too high)
    heldout_n_mre: float  # fitted below the largest proxy size, MRE at it, in %


@dataclass(frozen=True)
class Claims(Record):
    """The three parts of the claim, each with its own test (:mod:`demo_claims`)."""

    plan: str  # the analysis plan, as written before any run (analysis_plan.md)
    mixtures: ScaleCheck | None  # part (a); None when the config trains no check runs
    extrapolation: dict[str, DomainExtrapolation]  # part (b): target -> errors
    decision: dict[str, dict[str, DecisionCheck]]  # part (c): objective -> baseline -> check
    decision_verdict: str  # "PASS", "FAIL" or "NOT JUDGED" (the tool claimed no gain)


@dataclass(frozen=True)
class DemoFiles(Record):
    """Where the demo wrote its run tables and plan."""

    proxy_rows: str  # glob of the proxies' run-table CSVs: runs/proxy/*.csv
    main_rows: str  # glob of the main runs' run-table CSVs: runs/main/*.csv
    check_rows: str  # glob of the check runs' (part (a)) run-table CSVs: runs/check/*.csv
    plan: str  # the proxy sweep's plan: plan.csv


@dataclass(frozen=True)
class Timings(Record):
    """Wall time of each stage, in seconds; ``report`` and ``total`` are None until the report
    is written (the report's own table shows the stages before it)."""

    data: float  # building or reading the shards
    proxy_sweep: float  # training the proxies
    fit: float  # fitting and scoring the laws
    optimize: float  # optimizing the mixtures and writing their WEIGHTS.json
    check_runs: float  # training the check runs of part (a) at the largest proxy size
    main_runs: float  # training the main runs
    total_before_report: float  # from the start to the report
    report: float | None = None  # evaluating the main runs and writing the report
    total: float | None = None  # the whole demo


@dataclass(frozen=True)
class DemoResults(Record):
    """Everything the demo measured and decided: ``results.json``, typed."""

    config: DemoConfig  # the demo's sizes
    device: str  # "cpu" or "cuda"
    jobs: int  # runs trained side by side
    threads: int  # torch threads per run
    data: DemoData  # the domains' shards and what went into them (data/manifest.json)
    domains: tuple[str, ...]  # training domains, sorted
    targets: tuple[str, ...]  # held-out targets (evaluated, never trained on), sorted
    proxy_sizes: tuple[float, ...]  # the proxies' model sizes N, ascending
    main_model_size: int  # the main runs' N
    laws: dict[str, LawReport]  # law -> its fit and held-out scores, in fit.LAWS order
    chosen_law: str  # the law with the lower mean held-out-N MRE: it drives the optimum
    objectives: dict[str, dict[str, float]]  # "avg"/"target" -> target -> weight, fixed first
    mixtures: dict[str, Mixture]  # name -> mixture: optimized ones, uniform, natural
    runs: tuple[RunSummary, ...]  # every trained run: proxies, then main runs
    files: DemoFiles  # where the run tables are
    proxy_tokens_max: float  # the proxies' largest D (tokens)
    main: MainEvaluation  # the main runs against the law
    claims: Claims  # the three parts of the claim, each tested on its own (demo_claims)
    timings: Timings  # wall time per stage

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_json` to ``path`` (``results.json``); returns the path."""
        out = Path(path)
        out.write_text(json.dumps(self.to_json(), indent=1))
        return out

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> DemoResults:
        """Read a ``results.json`` written by :meth:`save`.

        Example:
            >>> DemoResults.load("demo_out/results.json").claims.decision_verdict  # doctest: +SKIP
            'FAIL'
        """
        return cls.from_json(json.loads(Path(path).read_text()))


def _plain(value: Any) -> Any:
    """``value`` as JSON data: records and dataclasses as dicts, tuples as lists."""
    if isinstance(value, (Record, DemoData)):
        return value.to_json()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _decode(tp: Any, value: Any) -> Any:
    """``value`` (JSON data) as type ``tp``: dataclasses (this module's, ``DemoConfig``),
    ``dict[str, X]``, ``tuple[X, ...]``, ``X | None`` and plain values."""
    if value is None or tp is Any:
        return value
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in args if a is not type(None)]
        return _decode(inner, value)
    if tp is DemoData:
        return DemoData.from_json(value)
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        unknown = sorted(set(value) - names)
        if unknown:
            raise ValueError(f"{tp.__name__}: unknown keys {unknown}")
        return tp(**{k: _decode(hints[k], v) for k, v in value.items()})
    if origin is tuple:
        return tuple(_decode(args[0], v) for v in value)
    if origin is dict:
        return {k: _decode(args[1], v) for k, v in value.items()}
    return value
