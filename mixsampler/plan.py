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
from typing import Any

import numpy as np

from mixsampler.checks import check_int
from mixsampler.designs import DESIGNS, design_weights
from mixsampler.laws.schema import N_TOKENS, RUN, weight_column

__all__ = [
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
]

log = logging.getLogger(__name__)

# Limits checked before any work, so a typo (n_mixtures=100000000) fails at once instead of
# running for minutes. A proxy sweep is tens to hundreds of runs (RegMix: 512); these are far
# above any real sweep and still write in seconds.
MAX_MIXTURES = 10_000
MAX_RUNS = 100_000


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
            ``weight_<domain>``.
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
        columns += ["config"] + [weight_column(d) for d in self.domains]
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

    Returns:
        A :class:`Plan`; ``Plan.write`` writes the plan table and the run configs.

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
    weights = design_weights(design, k, n_mixtures, min_weight, grid_steps, alpha, seed)

    width = len(str(n_mixtures - 1))
    runs = []
    for model in sizes:
        for t in budgets:
            for i, h in enumerate(weights):
                name = f"{model}-{_fmt_tokens(t)}-m{i:0{width}d}"
                run = {RUN: name, "mixture": i, "model": model, N_TOKENS: t}
                run.update({weight_column(d): float(w) for d, w in zip(names, h, strict=True)})
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
