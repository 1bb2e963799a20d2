"""Design a proxy sweep: which mixtures, model sizes and token budgets to train.

A mixture law is fitted on rows (N, D, h, loss) from small proxy runs. Every mixture is trained
at every model size and token budget, and each run is validated several times, so the rows of
one mixture pin down that mixture's loss terms (the mixture term and, for the joint law, A_h and
B_h); what needs *distinct* mixtures is the map from h to those terms. Its largest part, E plus
C_i and gamma_i of ``1 / sum_i C_i h_i^gamma_i``, has 2k + 1 parameters (k + 2 for the simple
law; every parameter for Ye's and the linear baselines), so the default mixture count is that
plus a margin. Each law's definition (``laws.law_defs``) says which parameters form such a
mixture group. For k = 7 this gives 20 mixtures, the paper's "about 20 for 6 to 8 domains"; for
k = 3, 12 (paper: about 10). Rows are not the scarce part: with a constant learning rate each
run yields a row at every validation, so even one run per mixture gives several rows each.

Three designs of mixtures on the simplex, each with a minimum weight per domain:

- ``grid`` (the paper's): points of an evenly spaced grid ``h = m + (1 - k m) c / S`` with ``c``
  a composition of ``S`` into ``k`` non-negative integers, a seeded subset when the grid holds
  more points than needed. With ``k = 7`` and ``m = 0.02`` the default step gives ``S = 13``, the
  grid of the paper's public SlimPajama table.
- ``dirichlet``: i.i.d. Dirichlet(alpha) draws (RegMix's choice).
- ``sobol``: a scrambled Sobol sequence mapped to the simplex (normalized ``-log(1 - u)``,
  which turns uniform points into Dirichlet(1) ones), so the mixtures fill the simplex more
  evenly than i.i.d. draws for the same count.

**Repetition.** Given each domain's size (``available``, in D's unit), every mixture keeps
``h_i * max(token_budgets) <= max_repeat_i * available_i``: no proxy run takes more than
``max_repeat`` epochs of a domain (default :data:`DEFAULT_MAX_REPEAT`), since the laws have no
repetition term. The caps must leave each domain's weight room to vary (grid steps of the
uncapped design, as many as the law's parameters per domain) and enough mixtures, or
:func:`make_plan` refuses naming the domain; each run records its ``max_epochs``.
:func:`domain_sizes` counts the sizes from a config's shards.

This module owns the sweep (sizing, runs, configs); the designs are in :mod:`mixsampler.designs`.

Example:
    >>> plan = make_plan(["web", "code", "books"], token_budgets=[1e8], law="joint")
    >>> plan.n_mixtures, plan.mixture_params, plan.n_params, len(plan.runs)
    (12, 7, 17, 12)
    >>> plan.write("sweep/", base_config="base.yaml", tokens_per_step=8192)  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import csv
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mixsampler.checks import check_int
from mixsampler.designs import (
    DESIGNS,
    capped_design_weights,
    count_capped_grid,
    default_grid_steps,
    grid_caps,
)
from mixsampler.laws.schema import N_TOKENS, RUN, weight_column

__all__ = [
    "DEFAULT_MAX_REPEAT",
    "DESIGNS",
    "MAX_MIXTURES",
    "MAX_RUNS",
    "Plan",
    "make_plan",
    "check_importable",
    "config_samples_per_step",
    "config_unit",
    "schedule_step_keys",
    "law_n_params",
    "law_mixture_params",
    "repeat_caps",
    "run_epochs",
    "domain_sizes",
]

log = logging.getLogger(__name__)

# Limits checked before any work, so a typo (n_mixtures=100000000) fails at once instead of
# running for minutes. A proxy sweep is tens to hundreds of runs (RegMix: 512); these are far
# above any real sweep and still write in seconds.
MAX_MIXTURES = 10_000
MAX_RUNS = 100_000

# Epochs a proxy run may take of a domain. The laws have no repetition term, so their rows
# must come from runs in the regime they describe: data not repeated much. Muennighoff et al.
# (2023, "Scaling Data-Constrained Language Models") measured that up to about 4 epochs
# repeated data is almost as good as new (the loss barely moves), and that its value decays
# beyond; the paper's own runs never repeat. 1 would refuse many sweeps whose laws are fine;
# past 4 the rows describe a data-constrained regime the law cannot represent.
DEFAULT_MAX_REPEAT = 4.0


def law_n_params(law: str, k: int) -> int:
    """The number of parameters of ``law`` with ``k`` training domains (from ``laws.forms``).

    Example:
        >>> law_n_params("joint", 7)
        33
    """
    from mixsampler.laws.forms import Form  # numpy only; kept local so a bad law name errors here

    return Form(law, tuple(f"d{i}" for i in range(k)), target_domain="d0").n_params


def law_mixture_params(law: str, k: int) -> int:
    """Distinct mixtures ``law`` needs at least: its largest mixture group (see the module
    docstring), read from the law's definition in ``laws.law_defs``.

    Each mixture group is one map from h to a term (E with C_i and gamma_i; for the joint law
    also CA_i with gammaA, CB_i with gammaB); with M distinct mixtures every map is seen at M
    points, so the largest group sets the count.

    Example:
        >>> law_mixture_params("joint", 7), law_mixture_params("simple", 7)
        (15, 9)
    """
    from mixsampler.laws.forms import Form

    groups = Form(law, tuple(f"d{i}" for i in range(k)), target_domain="d0").groups()
    return max((len(v) for v in groups.values()), default=0)


@dataclass
class Plan:
    """A proxy sweep: mixtures times model sizes times token budgets.

    Attributes:
        domains: training domains, the order of the columns of ``weights``.
        weights: one mixture per row, shape (n_mixtures, k), each row on the simplex.
        model_sizes: model name -> config overrides (dotted keys into the run's YAML).
        token_budgets: tokens each run trains on.
        design: how the mixtures were drawn (one of :data:`DESIGNS`).
        law: the law the sweep is sized for (None when ``n_mixtures`` was given).
        n_params: that law's parameter count (None without a law).
        mixture_params: its parameters that only distinct mixtures identify (None without a
            law).
        seed: the seed of the mixture design; also written as each run's ``seed_everything``.
        runs: one dict per run: ``run``, ``mixture``, ``model``, ``n_tokens``,
            ``weight_<domain>``, and with ``available``: ``max_epochs`` (epochs of the
            most-repeated domain) and ``most_repeated`` (that domain).
        available: each domain's size (in D's unit) where known; the caps hold for these.
        max_repeat: epochs each of those domains may be repeated (see
            :data:`DEFAULT_MAX_REPEAT`).
    """

    domains: tuple[str, ...]
    weights: np.ndarray
    model_sizes: dict[str, dict[str, Any]]
    token_budgets: tuple[float, ...]
    design: str
    law: str | None
    n_params: int | None
    seed: int
    mixture_params: int | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)
    available: dict[str, float] = field(default_factory=dict)
    max_repeat: dict[str, float] = field(default_factory=dict)

    @property
    def n_mixtures(self) -> int:
        return int(self.weights.shape[0])

    def write(
        self,
        out_dir: str | os.PathLike[str],
        *,
        base_config: str | os.PathLike[str] | Mapping[str, Any] | None = None,
        tokens_per_step: int | None = None,
        runs_dir: str = "runs",
    ) -> Path:
        """Write ``plan.csv`` and one LightningCLI config per run under ``out_dir``.

        Each config is ``base_config`` with, for its run: the mixture in the datamodule's
        ``weights``, a ``mixsampler.callbacks.DomainLossLogger`` writing
        ``<out_dir>/<runs_dir>/<run>.csv``
        (added, or updated when the base lists one), ``trainer.default_root_dir``,
        ``trainer.max_steps = ceil(n_tokens / tokens_per_step)`` when ``tokens_per_step`` is
        given, and the model size's overrides. Every run writes its own CSV, so runs started in
        parallel never interleave lines; ``mixsampler fit <out_dir>/runs/*.csv`` reads them all.

        Args:
            out_dir: folder to write into (created).
            base_config: a LightningCLI YAML (path or parsed dict) shared by every run.
            tokens_per_step: tokens per optimizer step over all ranks (batch x sequence x
                ranks x accumulation), to turn token budgets into ``max_steps``.
            runs_dir: subfolder of ``out_dir`` for the run tables.

        Returns:
            The path of ``plan.csv``.
        """
        import yaml

        check_int("tokens_per_step", tokens_per_step, low=1, allow_none=True)
        out = Path(out_dir)
        (out / "configs").mkdir(parents=True, exist_ok=True)
        (out / runs_dir).mkdir(parents=True, exist_ok=True)
        if base_config is None:
            base: dict[str, Any] = {}
        elif isinstance(base_config, Mapping):
            base = copy.deepcopy(dict(base_config))
        else:
            path = Path(base_config)
            if not path.is_file():
                raise FileNotFoundError(f"base_config {str(path)!r} does not exist")
            base = yaml.safe_load(path.read_text()) or {}
            if not isinstance(base, dict):
                raise ValueError(
                    f"base_config {str(path)!r} must hold a YAML mapping, got {base!r}"
                )

        unit = config_unit(base)
        columns = [RUN, "mixture", "model", N_TOKENS, "n_tokens_unit", "law", "max_steps"]
        columns += ["config", "max_epochs", "most_repeated"]
        columns += [weight_column(d) for d in self.domains]
        rows = []
        for run in self.runs:
            cfg = copy.deepcopy(base)
            weights = {d: run[weight_column(d)] for d in self.domains}
            _set_datamodule_weights(cfg, weights)
            for key, value in self.model_sizes[run["model"]].items():
                _set_dotted(cfg, key, copy.deepcopy(value))
            trainer = cfg.setdefault("trainer", {})
            trainer["default_root_dir"] = str(out / "logs" / run[RUN])
            max_steps = None
            if tokens_per_step is not None:
                max_steps = math.ceil(run[N_TOKENS] / tokens_per_step)
                trainer["max_steps"] = max_steps
            _set_logger_callback(trainer, path=str(out / runs_dir / f"{run['run']}.csv"), run=run)
            cfg.setdefault("seed_everything", self.seed)
            cfg_path = out / "configs" / f"{run['run']}.yaml"
            cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
            rows.append(
                {
                    **run,
                    "max_steps": "" if max_steps is None else max_steps,
                    # D's unit (the datamodule's), and the law the sweep was sized for.
                    "n_tokens_unit": unit,
                    "law": self.law or "",
                    "config": str(cfg_path),
                }
            )
        plan_path = out / "plan.csv"
        with open(plan_path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            for row in rows:
                writer.writerow({k: repr(v) if isinstance(v, float) else v for k, v in row.items()})
        log.info("wrote %d run configs and %s", len(rows), plan_path)
        return plan_path


def make_plan(
    domains: Sequence[str],
    *,
    token_budgets: Sequence[float],
    model_sizes: Mapping[str, Mapping[str, Any]] | Sequence[str] = ("proxy",),
    design: str = "grid",
    law: str | None = "joint",
    n_mixtures: int | None = None,
    margin: int = 5,
    min_weight: float = 0.02,
    grid_steps: int | None = None,
    alpha: float = 1.0,
    seed: int = 0,
    available: Mapping[str, float] | None = None,
    max_repeat: float | Mapping[str, float] = DEFAULT_MAX_REPEAT,
    unit: Literal["tokens", "samples"] = "tokens",
) -> Plan:
    """Design the proxy sweep for fitting a mixture law.

    Args:
        domains: training domain names (at least 2).
        token_budgets: tokens per run; each mixture is trained at each budget (with a constant
            learning rate one run also yields rows at every intermediate validation).
        model_sizes: model names, or name -> config overrides (dotted keys such as
            ``model.init_args.n_layer``) applied to each run's YAML.
        design: ``grid``, ``dirichlet`` or ``sobol`` (see the module docstring).
        law: the law to be fitted; the default mixture count is the number of its parameters
            that only distinct mixtures identify, plus ``margin``.
        n_mixtures: number of distinct mixtures (overrides the law-based count).
        margin: mixtures beyond the parameter count, so the fit is overdetermined in h and a few
            mixtures' rows can be held out.
        min_weight: every domain gets at least this weight (the paper's public table: 0.02).
        grid_steps: ``S`` of the grid; default: the smallest ``S`` with a step of about
            ``1 / (2k)`` and at least ``n_mixtures`` points.
        alpha: Dirichlet concentration (``dirichlet`` design).
        seed: seed of the subset / draws / scrambling.
        available: each domain's size in D's unit (tokens or samples; domains left out are
            unlimited). Every mixture then has ``h_i * max(token_budgets) <= max_repeat_i *
            available_i`` (see :func:`repeat_caps`), and each run records its ``max_epochs``.
        max_repeat: epochs a domain may be repeated, one for all or per domain.
        unit: what ``available`` and the budgets count, for messages.

    Returns:
        A :class:`Plan`; ``Plan.write`` writes the plan table and the run configs.

    Raises:
        ValueError: bad arguments, or caps that leave a domain's weight no room to vary or
            too few mixtures for the law (naming the domain, its size, its cap and the fixes).

    Example:
        >>> p = make_plan(["a", "b", "c"], token_budgets=[1e7, 2e7], model_sizes=["S", "M"],
        ...               n_mixtures=10, design="sobol")
        >>> len(p.runs)
        40
    """
    names = tuple(str(d) for d in domains)
    if len(names) < 2:
        raise ValueError(f"domains must name at least 2 domains, got {list(names)}")
    if len(set(names)) != len(names):
        raise ValueError(f"domains must be distinct, got {list(names)}")
    k = len(names)
    if design not in DESIGNS:
        raise ValueError(f"design can be {', '.join(DESIGNS)}, got {design!r}")
    if not (isinstance(min_weight, (int, float)) and 0.0 <= min_weight < 1.0 / k):
        raise ValueError(
            f"min_weight must be in [0, 1/k) = [0, {1.0 / k:.4g}) for {k} domains,"
            f" got {min_weight!r}"
        )
    budgets = tuple(float(t) for t in token_budgets)
    if not budgets or any(not (math.isfinite(t) and t > 0) for t in budgets):
        raise ValueError(f"token_budgets must be positive numbers, got {list(token_budgets)}")
    sizes = _model_sizes(model_sizes)
    check_int("margin", margin, low=0)
    n_params = mix_params = None
    if law is not None:
        n_params, mix_params = law_n_params(law, k), law_mixture_params(law, k)
    if n_mixtures is None:
        if law is None:
            raise ValueError("give n_mixtures or a law to size the sweep from, got neither")
        n_mixtures = mix_params + margin
    else:
        check_int("n_mixtures", n_mixtures, low=1)
    if mix_params is not None and n_mixtures < mix_params:
        log.warning(
            "n_mixtures=%d is below the %d parameters of the %s law that only distinct"
            " mixtures identify: its mixture term will not be identified",
            n_mixtures,
            mix_params,
            law,
        )
    _check_size(n_mixtures, len(sizes), len(budgets))
    _warn_n_check(law, len(sizes))
    avail, repeat = _sizes(names, available, max_repeat)
    upper = repeat_caps(names, max(budgets), avail, repeat)
    if avail:
        _check_caps(
            names,
            upper,
            avail,
            repeat,
            max(budgets),
            n_mixtures,
            min_weight,
            grid_steps,
            law,
            margin,
            unit,
        )
    weights = capped_design_weights(
        design, k, n_mixtures, min_weight, grid_steps, alpha, seed, upper
    )

    width = len(str(n_mixtures - 1))
    runs = []
    for model in sizes:
        for t in budgets:
            for i, h in enumerate(weights):
                name = f"{model}-{_fmt_tokens(t)}-m{i:0{width}d}"
                run = {RUN: name, "mixture": i, "model": model, N_TOKENS: t}
                run.update({weight_column(d): float(w) for d, w in zip(names, h, strict=True)})
                if avail:
                    epochs = run_epochs(names, h, t, avail)
                    worst = max(epochs, key=epochs.__getitem__)
                    run.update(max_epochs=epochs[worst], most_repeated=worst)
                runs.append(run)
    return Plan(
        domains=names,
        weights=weights,
        model_sizes=sizes,
        token_budgets=budgets,
        design=design,
        law=law,
        n_params=n_params,
        mixture_params=mix_params,
        seed=seed,
        runs=runs,
        available=avail,
        max_repeat=repeat,
    )


def _warn_n_check(law: str | None, n_sizes: int) -> None:
    """Say when the sweep cannot check the law's N extrapolation, the step a decision rests on."""
    from mixsampler.laws.heldout import N_CHECK_SIZES
    from mixsampler.laws.law_defs import get_law

    if law is None or not get_law(law).uses_n or n_sizes >= N_CHECK_SIZES:
        return
    log.warning(
        "%d model size(s): `mixsampler fit` can check the %s law's extrapolation in N only with"
        " %d (3 to fit, the largest to predict), and `fit --law auto` chooses a form by that"
        " check; without it `optimize` cannot say how far the law holds in N. Add model sizes.",
        n_sizes,
        law,
        N_CHECK_SIZES,
    )


def _check_size(n_mixtures: int, n_sizes: int, n_budgets: int) -> None:
    if n_mixtures > MAX_MIXTURES:
        raise ValueError(
            f"n_mixtures must be at most {MAX_MIXTURES:,} (a proxy sweep is tens to hundreds of "
            f"mixtures), got {n_mixtures:,}"
        )
    n_runs = n_mixtures * n_sizes * n_budgets
    if n_runs > MAX_RUNS:
        raise ValueError(
            f"the plan would have {n_runs:,} runs (n_mixtures={n_mixtures:,} x {n_sizes} "
            f"model_sizes x {n_budgets} token_budgets), more than the limit of {MAX_RUNS:,}; "
            "lower n_mixtures or give fewer model_sizes or token_budgets"
        )


def _sizes(
    names: tuple[str, ...],
    available: Mapping[str, float] | None,
    max_repeat: float | Mapping[str, float],
) -> tuple[dict[str, float], dict[str, float]]:
    """``available`` and ``max_repeat`` checked, as dicts over the domains with a size."""
    avail: dict[str, float] = {}
    for d, v in (available or {}).items():
        if d not in names:
            raise ValueError(
                f"available names {d!r}, which is not a training domain ({', '.join(names)})"
            )
        if (
            isinstance(v, bool)
            or not isinstance(v, (int, float))
            or not (math.isfinite(v) and v > 0)
        ):
            raise ValueError(f"available {d}={v!r}: a domain's size must be a positive number")
        avail[d] = float(v)
    if isinstance(max_repeat, Mapping):
        unknown = sorted(set(max_repeat) - set(names))
        if unknown:
            raise ValueError(
                f"max_repeat names {', '.join(map(repr, unknown))}, not a training domain"
                f" ({', '.join(names)})"
            )
        per = {d: max_repeat.get(d, DEFAULT_MAX_REPEAT) for d in names}
    else:
        per = dict.fromkeys(names, max_repeat)
    for d, r in per.items():
        if (
            isinstance(r, bool)
            or not isinstance(r, (int, float))
            or not (math.isfinite(r) and r > 0)
        ):
            raise ValueError(f"max_repeat {d}={r!r}: epochs must be a positive finite number")
    return avail, {d: float(per[d]) for d in avail}


def repeat_caps(
    domains: Sequence[str],
    n_tokens: float,
    available: Mapping[str, float],
    max_repeat: Mapping[str, float],
) -> np.ndarray:
    """The largest weight of each domain in a run of ``n_tokens``: ``R_i * available_i / D``.

    A run of D (tokens or samples) with weight ``h_i`` reads ``h_i * D`` of domain ``i``, which
    holds ``available_i``: ``h_i * D / available_i`` epochs of it. Capping the epochs at
    ``R_i`` caps the weight. Domains without a size are not capped (1.0).

    Example:
        >>> repeat_caps(["web", "prose"], 1e7, {"prose": 1e5}, {"prose": 4.0}).tolist()
        [1.0, 0.04]
    """
    return np.array(
        [
            min(1.0, max_repeat[d] * available[d] / n_tokens) if d in available else 1.0
            for d in domains
        ]
    )


def run_epochs(
    domains: Sequence[str],
    weights: Sequence[float],
    n_tokens: float,
    available: Mapping[str, float],
) -> dict[str, float]:
    """Epochs a run of ``n_tokens`` with ``weights`` takes of each domain with a known size.

    Example:
        >>> run_epochs(["web", "prose"], [0.9, 0.1], 1e7, {"prose": 1e5})
        {'prose': 10.0}
    """
    return {
        d: float(w) * n_tokens / available[d]
        for d, w in zip(domains, weights, strict=True)
        if d in available
    }


def _check_caps(
    names: tuple[str, ...],
    upper: np.ndarray,
    avail: dict[str, float],
    repeat: dict[str, float],
    d_max: float,
    n_mixtures: int,
    min_weight: float,
    grid_steps: int | None,
    law: str | None,
    margin: int,
    unit: str,
) -> None:
    """Refuse caps that leave a domain's weight no room to vary, or too few mixtures.

    Room is measured on the grid of the uncapped design (``grid_steps`` or the default ``S``),
    whatever the design: mixtures closer than one step are not distinct enough to tell the
    law's terms apart. A domain's weight must take ``L`` grid levels: one more than the
    parameters each domain brings to the law's mixture group (joint: ``C_i`` and
    ``gamma_i``, so 3 levels; 2 without a law): a weight that cannot vary leaves its terms
    unidentified, and the law would fit them to noise.
    """
    k = len(names)
    given = isinstance(grid_steps, int) and not isinstance(grid_steps, bool) and grid_steps > 0
    steps = grid_steps if given else None
    steps = steps or default_grid_steps(k, n_mixtures, min_weight)
    step = (1.0 - k * min_weight) / steps
    if law is not None:
        per_domain = law_mixture_params(law, k + 1) - law_mixture_params(law, k)
        why = f"the {law} law needs to identify its {per_domain} parameter(s) per domain"
        levels = max(2, per_domain + 1)
    else:
        levels, why = 2, "a weight needs to vary at all"
    caps = grid_caps(upper, min_weight, steps)
    if upper.sum() < 1.0 - 1e-12:
        total = sum(repeat[d] * avail[d] for d in names)
        raise ValueError(
            f"at D = {d_max:.4g} (the largest --tokens) the domains' data, repeated at most"
            f" --max-repeat times, is {total:,.0f} {unit} in all, less than one run reads: no"
            " mixture fits (the caps "
            + ", ".join(f"{d} <= {u:.4g}" for d, u in zip(names, upper, strict=True))
            + " sum to less than 1); give more data, or use a smaller --tokens or a larger"
            " --max-repeat"
        )
    short = [i for i in np.argsort(upper, kind="stable") if names[i] in avail]
    short = [i for i in short if caps[i] < levels - 1]
    for i in short[:1]:  # the most constrained domain, with the others named after it
        d = names[i]
        need = min_weight + (levels - 1) * step
        also = ", ".join(f"{names[j]!r} (weight <= {upper[j]:.4g})" for j in short[1:])
        raise ValueError(
            f"domain {d!r} has {avail[d]:,.0f} {unit}: at D = {d_max:.4g} (the largest"
            f" --tokens) and --max-repeat {repeat[d]:g} its weight is capped at"
            f" {upper[i]:.4g} ({avail[d]:,.0f} x {repeat[d]:g} / {d_max:.4g}), so it can vary"
            f" only {max(0.0, upper[i] - min_weight):.4g} above the minimum weight"
            f" {min_weight:g}, less than the {levels - 1} grid step(s) of {step:.4g}"
            f" {why} (weight >= {need:.4g}); fixes for it: more data (>= "
            f"{need * d_max / repeat[d]:,.0f} {unit}), --tokens <= "
            f"{repeat[d] * avail[d] / need:.4g}, --max-repeat >= "
            f"{need * d_max / avail[d]:.3g}"
            + (
                f", --grid-steps >= {math.ceil((levels - 1) * step * steps / room_i - 1e-9)}"
                " (mixtures closer together)"
                if (room_i := upper[i] - min_weight) > 0
                else ""
            )
            + (f"; too small as well: {also}" if also else "")
        )
    room = count_capped_grid(steps, caps)
    if room < n_mixtures:
        capped = [
            f"{names[i]!r} ({avail[names[i]]:,.0f} {unit}, weight <= {upper[i]:.4g})"
            for i in np.argsort(upper, kind="stable")
            if names[i] in avail and upper[i] < 1.0 - (k - 1) * min_weight
        ]
        sized = (
            f"the {law} law needs ({n_mixtures - margin} + margin {margin})" if law else "asked for"
        )
        raise ValueError(
            f"at D = {d_max:.4g} (the largest --tokens) the repetition caps leave"
            f" {room} distinct mixtures (a grid step of {step:.4g} apart) of the {n_mixtures}"
            f" {sized}: capped are {', '.join(capped)}; give them more data, or use a smaller"
            " --tokens, a larger --max-repeat, a larger --grid-steps or fewer --n-mixtures"
        )


def domain_sizes(
    train: Mapping[str, Any], unit: str = "tokens", *, progress: bool = False
) -> tuple[dict[str, float], dict[str, str]]:
    """How much data each training domain of a config's ``data.train`` holds, in ``unit``.

    Shard specs (brace patterns, globs, folders, lists of ``.tar``) are expanded as the
    datamodule expands them. ``samples``: the sample counts from the shard indexes (their
    headers only). ``tokens``: the sum of every sample's ``ntok`` member (what
    :class:`~mixsampler.MixtureDataset` counts), read through the index: one small read per
    sample, not the token data, but a read of every shard's index, built (a walk of the
    shard's headers) and cached beside it where missing.

    Args:
        train: domain name -> shard spec (``data.train`` of the config).
        unit: ``tokens`` or ``samples`` (the datamodule's unit).
        progress: a progress bar over each domain's shards (on a terminal only).

    Returns:
        ``(sizes, unknown)``: the size of each domain that could be counted, and for the others
        why not (not shards, remote shards, samples without ``ntok``, missing files).

    Example:
        >>> domain_sizes({"web": {"class_path": "my.Dataset"}})[1]["web"]
        'its data is not shard paths (a dict)'
    """
    from tqdm import tqdm

    from mixsampler.index import load_index, shard_info
    from mixsampler.tario import expand_shards, is_local, local_path

    sizes: dict[str, float] = {}
    unknown: dict[str, str] = {}
    for name, spec in train.items():
        name = str(name)
        if not (
            isinstance(spec, str)
            or (isinstance(spec, list) and spec and all(isinstance(x, str) for x in spec))
        ):
            unknown[name] = f"its data is not shard paths (a {type(spec).__name__})"
            continue
        try:
            urls = expand_shards(spec, name)
        except (OSError, ValueError) as err:
            unknown[name] = str(err)
            continue
        remote = [u for u in urls if not is_local(u)]
        missing = [u for u in urls if is_local(u) and not os.path.isfile(local_path(u))]
        if remote or missing:
            unknown[name] = f"shard {(remote or missing)[0]} is " + (
                "remote (counting would stream it)" if remote else "missing"
            )
            continue
        try:
            # tqdm's disable=None: a bar on a terminal, nothing in logs and pipes.
            shown = tqdm(
                urls,
                desc=f"{name}: shards",
                unit="shard",
                disable=None if progress else True,
                leave=False,
            )
            if unit == "samples":
                sizes[name] = float(sum(shard_info(u)[0] for u in shown))
            else:
                total = 0
                for u in shown:
                    n = _shard_tokens(load_index(u))
                    if n is None:
                        raise ValueError(f"shard {u} has samples without an 'ntok' member")
                    total += n
                sizes[name] = float(total)
        except (OSError, ValueError, RuntimeError) as err:
            unknown[name] = str(err)
    return sizes, unknown


def _shard_tokens(idx: Any) -> int | None:
    """The sum of a shard's ``ntok`` members, one small read each; None if a sample has none."""
    if "ntok" not in idx.exts:
        return None
    arrays = idx.arrays
    code = idx.exts.index("ntok")
    members = np.flatnonzero(arrays["ext"] == code)
    if len(members) != idx.count:
        return None
    from mixsampler.tario import local_path

    total = 0
    with open(local_path(idx.url), "rb", buffering=0) as f:
        for off, size in zip(
            arrays["offset"][members].tolist(), arrays["size"][members].tolist(), strict=True
        ):
            f.seek(off)
            raw = f.read(size)
            try:
                total += int(raw)
            except ValueError:
                raise ValueError(
                    f"shard {idx.url}: an 'ntok' member holds {raw[:20]!r}, not a whole number"
                ) from None
    return total


def _model_sizes(sizes: Mapping[str, Mapping[str, Any]] | Sequence[str]) -> dict[str, dict]:
    if isinstance(sizes, str):
        raise ValueError(f"model_sizes must be a list of names or a mapping, got {sizes!r}")
    if isinstance(sizes, Mapping):
        out = {}
        for name, overrides in sizes.items():
            if not isinstance(overrides, Mapping):
                raise ValueError(
                    f"model_sizes[{name!r}] must map dotted config keys to values,"
                    f" got {overrides!r}"
                )
            out[str(name)] = dict(overrides)
    else:
        out = {str(name): {} for name in sizes}
    if not out:
        raise ValueError("model_sizes must name at least one model, got none")
    for name in out:
        if not name or any(c in name for c in "/\\ "):
            raise ValueError(f"model size names become file names; got {name!r}")
    return out


def _fmt_tokens(t: float) -> str:
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if t >= scale:
            return f"{t / scale:g}{unit}"
    return f"{t:g}"


def _set_dotted(cfg: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = cfg
    for p in parts[:-1]:
        nxt = node.get(p)
        if nxt is None:
            nxt = node[p] = {}
        if not isinstance(nxt, dict):
            raise ValueError(f"config key {key!r}: {p!r} holds {nxt!r}, not a mapping")
        node = nxt
    node[parts[-1]] = value


def _set_datamodule_weights(cfg: dict[str, Any], weights: dict[str, float]) -> None:
    data = cfg.setdefault("data", {})
    if not isinstance(data, dict):
        raise ValueError(f"base config 'data' must be a mapping, got {data!r}")
    # LightningCLI accepts the datamodule's arguments directly or under class_path/init_args.
    target = data.setdefault("init_args", {}) if "class_path" in data else data
    target["weights"] = weights


def _set_logger_callback(trainer: dict[str, Any], *, path: str, run: dict[str, Any]) -> None:
    callbacks = trainer.setdefault("callbacks", [])
    if isinstance(callbacks, dict):
        callbacks = trainer["callbacks"] = [callbacks]
    for cb in callbacks:
        if isinstance(cb, dict) and str(cb.get("class_path", "")).endswith("DomainLossLogger"):
            args = cb.setdefault("init_args", {})
            break
    else:
        args = {}
        callbacks.append({"class_path": "mixsampler.callbacks.DomainLossLogger", "init_args": args})
    args["path"] = path
    args["run"] = run[RUN]


def _data_args(cfg: Mapping[str, Any]) -> Mapping[str, Any]:
    data = cfg.get("data") or {}
    if not isinstance(data, Mapping):
        return {}
    return data.get("init_args") or {} if "class_path" in data else data


def config_unit(cfg: Mapping[str, Any]) -> str:
    """What D counts in runs of this LightningCLI config: the datamodule's ``unit``.

    ``"samples"`` (MixtureDataModule's default; images, audio) or ``"tokens"``.

    Example:
        >>> config_unit({"data": {"init_args": {"unit": "tokens"}, "class_path": "x.DM"}})
        'tokens'
        >>> config_unit({})
        'samples'
    """
    unit = _data_args(cfg).get("unit", "samples")
    return unit if unit in ("samples", "tokens") else "samples"


def config_samples_per_step(cfg: Mapping[str, Any]) -> int | None:
    """Samples per optimizer step over all ranks, from the config, or None when unknown.

    ``data.batch_size`` x ``trainer.devices`` x ``trainer.num_nodes`` x
    ``trainer.accumulate_grad_batches``; None when the batch size is not set in the config or
    ``devices`` is not a number (``"auto"``, a list: the count is known only at run time).

    Example:
        >>> trainer = {"devices": 2, "accumulate_grad_batches": 4}
        >>> config_samples_per_step({"data": {"batch_size": 16}, "trainer": trainer})
        128
        >>> config_samples_per_step({"trainer": {"devices": 2}}) is None
        True
    """
    batch = _data_args(cfg).get("batch_size")
    trainer = cfg.get("trainer") or {}
    devices = trainer.get("devices", 1)
    parts = [batch, devices, trainer.get("num_nodes", 1), trainer.get("accumulate_grad_batches", 1)]
    if not all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in parts):
        return None
    return math.prod(parts)


# Names a model's own schedule (cosine decay, warmup) commonly reads its length from; such a
# model does not see trainer.max_steps, so each run would train with the base config's schedule.
_STEP_KEYS = ("max_steps", "max_iters", "total_steps", "lr_decay_iters", "num_training_steps")


def schedule_step_keys(cfg: Mapping[str, Any]) -> list[str]:
    """Dotted keys under ``model`` that look like a schedule's own step count.

    Example:
        >>> schedule_step_keys({"model": {"init_args": {"lr_decay_iters": 600, "lr": 1e-3}}})
        ['model.init_args.lr_decay_iters']
    """
    found: list[str] = []

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                name = f"{prefix}.{key}"
                if key in _STEP_KEYS and not isinstance(value, Mapping):
                    found.append(name)
                walk(value, name)

    walk(cfg.get("model") or {}, "model")
    return found


def check_importable(
    cfg: Mapping[str, Any], where: str = "the config", extra_path: Sequence[str] = ()
) -> list[str]:
    """Import every ``class_path`` and dotted function path of the config; the failures.

    The sweep's trainers import them in subprocesses; a module importable here only because
    of the current folder fails there as ``exit status 2`` per run, its cause in train.log.

    Args:
        cfg: the LightningCLI config.
        where: how errors name it.
        extra_path: folders the trainers have on their path too (the plan folder).

    Returns:
        One message per path that does not import, naming the key, the path and the import
        error, and the ways to make the module reachable (install the package, or put its
        folder on ``PYTHONPATH``); empty when all import.

    Example:
        >>> check_importable({"model": {"class_path": "torch.nn.Linear"}})
        []
        >>> print(check_importable({"model": {"class_path": "nope_pkg.Model"}})[0][:55])
        the config: model.class_path='nope_pkg.Model' cannot be
    """
    import sys

    paths: list[tuple[str, str]] = []

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                name = f"{prefix}.{key}" if prefix else str(key)
                if key == "class_path" and isinstance(value, str):
                    paths.append((name, value))
                elif key in ("collate_fn", "length_fn", "transform", "val_transform") and (
                    isinstance(value, str) and "." in value
                ):
                    paths.append((name, value))
                else:
                    walk(value, name)
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{prefix}[{i}]")

    walk(cfg, "")
    # The folders the trainers will also have on their path (the plan folder).
    added = [p for p in map(str, extra_path) if p not in sys.path]
    sys.path[:0] = added
    try:
        return _import_all(paths, where)
    finally:
        for p in added:
            sys.path.remove(p)


def _import_all(paths: list[tuple[str, str]], where: str) -> list[str]:
    import importlib

    problems = []
    for key, path in paths:
        module, sep, attr = path.partition(":")
        if not sep:
            module, _, attr = path.rpartition(".")
        try:
            getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError, ValueError) as err:
            problems.append(
                f"{where}: {key}={path!r} cannot be imported ({type(err).__name__}: {err}); the"
                " sweep's trainers import it in new processes, so install its package"
                " (pip install -e .) or put its folder on PYTHONPATH before sweeping"
            )
    return problems
