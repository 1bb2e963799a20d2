"""``mixsampler plan``: design the proxy sweep and write one LightningCLI config per run.

Example:
    $ mixsampler plan --config base.yaml --tokens 5e7 1e8 --model S:model.init_args.n_layer=2 \\
          --model M:model.init_args.n_layer=4 --law joint --tokens-per-step 8192 -o sweep/
    $ mixsampler sweep sweep/ --jobs 4          # or --launcher slurm
    $ mixsampler fit sweep/runs/*.csv --law joint --target all -o law.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mixsampler.checks import check_int

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``plan`` verb."""
    p = subparsers.add_parser(
        "plan",
        help="design the proxy sweep (mixtures x model sizes x token budgets)",
        description=(
            "Pick the mixtures of the proxy runs (the paper's simplex grid with a minimum weight,"
            " Dirichlet draws, or a Sobol design), as many as the law to be fitted has"
            " parameters plus a margin, times model sizes and token budgets. Writes plan.csv and"
            " configs/<run>.yaml, each a LightningCLI config with the run's weights and a"
            " DomainLossLogger writing runs/<run>.csv."
        ),
    )
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument(
        "--domains",
        help="comma-separated training domains (default: the keys of data.train in --config)",
    )
    p.add_argument("--config", help="base LightningCLI YAML shared by every run")
    p.add_argument(
        "--tokens",
        "--samples",
        dest="tokens",
        nargs="+",
        required=True,
        metavar="D",
        help="budget(s) D per run in the datamodule's unit, e.g. 5e7 1e8 or 50M 100M: tokens"
        " with unit='tokens', samples with unit='samples' (images, audio; --samples says so)",
    )
    p.add_argument(
        "--model",
        action="append",
        default=None,
        metavar="NAME[:KEY=VALUE,...]",
        help="a model size and its config overrides, e.g. S:model.init_args.n_layer=2;"
        " repeat for several sizes (default: one size named 'proxy', no overrides)",
    )
    p.add_argument("--design", default="grid", choices=["grid", "dirichlet", "sobol"])
    p.add_argument("--law", default="joint", help="law the sweep is sized for (default joint)")
    p.add_argument("--n-mixtures", type=int, help="number of mixtures (overrides --law sizing)")
    p.add_argument(
        "--margin",
        type=int,
        default=5,
        help="mixtures beyond the law's mixture parameters (default 5)",
    )
    p.add_argument("--min-weight", type=float, default=0.02, help="minimum weight per domain")
    p.add_argument("--grid-steps", type=int, help="grid resolution S (grid design)")
    p.add_argument("--alpha", type=float, default=1.0, help="Dirichlet concentration")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--tokens-per-step",
        "--samples-per-step",
        dest="tokens_per_step",
        type=int,
        help="D per optimizer step over all ranks; sets trainer.max_steps per run (default:"
        " from --config, data.batch_size x devices x num_nodes x accumulate_grad_batches,"
        " times --seq-len when D counts tokens)",
    )
    p.add_argument(
        "--seq-len",
        type=int,
        help="tokens per sample, to derive tokens per step from the config's batch size",
    )
    p.add_argument(
        "--available",
        action="append",
        metavar="DOMAIN=SIZE,...",
        help="data each domain has, in D's unit (as optimize --available), e.g. prose=3.7e5;"
        " each mixture then keeps h * max(--tokens) <= --max-repeat x SIZE. Default: counted"
        " from the shards data.train names in --config (see --no-count)",
    )
    p.add_argument(
        "--max-repeat",
        action="append",
        metavar="R | DOMAIN=R,...",
        help="epochs a proxy run may take of a domain: R for all, or per domain (default 4:"
        " Muennighoff et al. 2023, up to about 4 epochs repeated data is almost as good as new;"
        " the laws have no repetition term)",
    )
    p.add_argument(
        "--no-count",
        action="store_true",
        help="do not count the shards' sizes (with unit='tokens' this reads every sample's"
        " ntok member, a small read per sample, and builds missing shard indexes); without"
        " --available, repetition is then not checked",
    )
    p.set_defaults(func=_run)


def _parse_models(specs: list[str] | None) -> dict[str, dict[str, Any]]:
    import yaml

    if not specs:
        return {"proxy": {}}
    out: dict[str, dict[str, Any]] = {}
    for spec in specs:
        name, _, rest = spec.partition(":")
        overrides: dict[str, Any] = {}
        for item in filter(None, rest.split(",")):
            key, eq, value = item.partition("=")
            if not eq or not key:
                raise ValueError(f"--model {spec!r}: expected NAME:KEY=VALUE,..., got {item!r}")
            overrides[key.strip()] = yaml.safe_load(value)
        if name in out:
            raise ValueError(f"--model {name!r} is given twice")
        out[name] = overrides
    return out


def _read_config(path: str) -> dict[str, Any]:
    """The base LightningCLI YAML of ``--config``, parsed once, with one-line errors."""
    import yaml

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"--config {path!r} does not exist")
    if p.is_dir():
        raise ValueError(f"--config {path!r} is a folder; name a YAML file")
    try:
        cfg = yaml.safe_load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"--config {path!r} is not UTF-8 text") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ValueError(f"--config {path!r} is not valid YAML ({where}{problem})") from None
    if cfg is None:
        return {}
    if not isinstance(cfg, dict):
        raise ValueError(
            f"--config {path!r} must hold a YAML mapping (trainer:, model:, data:), got a "
            f"{type(cfg).__name__}"
        )
    return cfg


def _domains_from_config(cfg: dict[str, Any], path: str) -> list[str]:
    data = cfg.get("data") or {}
    args = data.get("init_args", data) if isinstance(data, dict) else {}
    train = args.get("train") if isinstance(args, dict) else None
    if not isinstance(train, dict) or not train:
        raise ValueError(
            f"--config {path!r} has no data.train mapping of domains; pass --domains a,b,c"
        )
    return [str(d) for d in train]


def _check_out(out: str) -> Path:
    """The output folder: a folder (or nothing yet), and not holding an earlier plan.

    Writing into an earlier plan's folder would leave its configs next to the new ones, and a
    sweep over ``configs/*.yaml`` would run both.
    """
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ValueError(f"-o {out!r} is a file; plan writes a folder (plan.csv, configs/, runs/)")
    old = [path / "plan.csv"] if (path / "plan.csv").exists() else []
    old += sorted((path / "configs").glob("*.yaml")) if (path / "configs").is_dir() else []
    if old:
        raise ValueError(
            f"-o {out!r} already holds a plan ({old[0]}, {len(old)} file(s)); choose another "
            "folder or remove it first"
        )
    if not path.exists():
        # mkdir(parents=True) creates the missing folders; a file in the way is an error.
        up = next((u for u in path.absolute().parents if u.exists()), None)
        if up is not None and not up.is_dir():
            raise ValueError(f"-o {out!r}: {str(up)!r} is a file, not a folder")
    return path


def _tokens_per_step(args: argparse.Namespace, config: dict[str, Any] | None) -> int | None:
    """--tokens-per-step as given, else derived from the config (None when it cannot be)."""
    from mixsampler.plan import config_samples_per_step, config_unit

    check_int("--seq-len", args.seq_len, low=1, allow_none=True)
    if args.tokens_per_step is not None or config is None:
        return args.tokens_per_step
    samples = config_samples_per_step(config)
    if samples is None:
        return None
    if config_unit(config) == "samples":
        per_step = samples
    elif args.seq_len is not None:
        per_step = samples * args.seq_len
    else:
        print(
            "warning: the config mixes by tokens: give --seq-len (tokens per sample) or"
            " --tokens-per-step to set each run's trainer.max_steps; max_steps is left as the"
            " config has it",
            file=sys.stderr,
        )
        return None
    print(f"D per optimizer step, derived from --config: {per_step} ({config_unit(config)})")
    return per_step


def _run(args: argparse.Namespace) -> int:
    from mixsampler.laws.commands.args import number
    from mixsampler.plan import config_unit, make_plan

    out = _check_out(args.out)
    config = _read_config(args.config) if args.config else None
    if args.domains:
        domains = [d.strip() for d in args.domains.split(",") if d.strip()]
        dups = sorted({d for d in domains if domains.count(d) > 1})
        if dups:
            raise ValueError(f"--domains names {', '.join(dups)} more than once: {args.domains!r}")
    elif config is not None:
        domains = _domains_from_config(config, args.config)
    else:
        raise ValueError("give --domains a,b,c or a --config whose data.train names them")
    tokens = [number(t, "--tokens") for t in args.tokens]
    bad = [t for t, v in zip(args.tokens, tokens, strict=True) if not v > 0]
    if bad:
        raise ValueError(f"--tokens must be positive token budgets, got {', '.join(bad)}")
    unit = config_unit(config) if config is not None else "tokens"
    max_repeat = _max_repeat(args.max_repeat, domains)
    available = _available(args, config, domains, unit)
    plan = make_plan(
        domains,
        token_budgets=tokens,
        model_sizes=_parse_models(args.model),
        design=args.design,
        law=args.law,
        n_mixtures=args.n_mixtures,
        margin=args.margin,
        min_weight=args.min_weight,
        grid_steps=args.grid_steps,
        alpha=args.alpha,
        seed=args.seed,
        available=available,
        max_repeat=max_repeat,
        unit=unit,
    )
    per_step = _tokens_per_step(args, config)
    if config is not None:
        from mixsampler.plan import check_importable, schedule_step_keys

        # A warning here (plan may run where the user's package is not installed); the sweep
        # fails at once on the first run that cannot import it.
        for problem in check_importable(config, f"--config {args.config}", extra_path=[str(out)]):
            print(f"warning: {problem}", file=sys.stderr)
        for key in schedule_step_keys(config):
            print(
                f"warning: {key} is set in --config: a schedule that reads its own step count"
                " does not see the trainer.max_steps each run gets; set it per model size"
                f" (--model NAME:{key}=STEPS) or have the model read self.trainer.max_steps",
                file=sys.stderr,
            )
    path = plan.write(out, base_config=config, tokens_per_step=per_step)
    sized = (
        f" ({plan.law} law: {plan.mixture_params} of its {plan.n_params} parameters need"
        " distinct mixtures)"
        if plan.n_params
        else ""
    )
    print(
        f"{len(plan.runs)} runs = {plan.n_mixtures} mixtures{sized} x {len(plan.model_sizes)}"
        f" model sizes x {len(plan.token_budgets)} token budgets -> {path}"
    )
    _print_repetition(plan, unit)
    print(
        f"configs: {Path(args.out) / 'configs'}/*.yaml; then: mixsampler sweep {args.out}"
        f" (or --launcher slurm), and mixsampler fit {Path(args.out) / 'runs'}/*.csv"
        f" --law {args.law} --target all"
    )
    return 0


def _max_repeat(items: list[str] | None, domains: list[str]) -> float | dict[str, float]:
    """``--max-repeat``: one number or ``d=R`` pairs, each positive and finite."""
    from mixsampler.laws.commands.args import scalar_or_pairs
    from mixsampler.plan import DEFAULT_MAX_REPEAT

    value = scalar_or_pairs(items, "--max-repeat", names=domains)
    if value is None:
        return DEFAULT_MAX_REPEAT
    for d, r in value.items() if isinstance(value, dict) else [("", value)]:
        if not r > 0:
            where = f"{d}={r:g}" if d else f"{r:g}"
            raise ValueError(f"--max-repeat {where}: epochs must be a positive number")
    return value


def _available(
    args: argparse.Namespace, config: dict[str, Any] | None, domains: list[str], unit: str
) -> dict[str, float] | None:
    """Each domain's size: ``--available``, else counted from the config's shards.

    Prints once which domains' repetition cannot be checked, and how to give their sizes (on
    stdout, with the plan's summary: plan still writes; stderr is for what will fail).
    """
    from mixsampler.laws.commands.args import pairs
    from mixsampler.plan import domain_sizes

    how = "give sizes with --available DOMAIN=SIZE,... (in the datamodule's unit)"
    if args.available:
        sizes = pairs(args.available, "--available", names=domains)
        for d, v in sizes.items():
            if not v > 0:
                raise ValueError(
                    f"--available {d}={v:g}: a domain's size must be a positive number of {unit}"
                )
        unknown = {d: "not in --available" for d in domains if d not in sizes}
    elif config is None or args.no_count:
        why = "--no-count" if args.no_count else "no --config with shard paths to count"
        print(f"note: repetition not checked ({why}): {how}")
        return None
    else:
        data = config.get("data") or {}
        dargs = data.get("init_args", data) if isinstance(data, dict) else {}
        train = dargs.get("train") if isinstance(dargs, dict) else None
        train = {d: v for d, v in (train or {}).items() if str(d) in domains}
        if unit == "tokens" and dargs.get("length_fn") is not None:
            unknown = dict.fromkeys(domains, "the config's length_fn counts the tokens")
            sizes = {}
        else:
            print(f"counting the {unit} of each training domain's shards (--no-count skips)")
            sizes, unknown = domain_sizes(train, unit, progress=True)
            unknown.update({d: "not in data.train" for d in domains if d not in train})
        for d, v in sizes.items():
            print(f"  {d}: {v:,.0f} {unit}")
    if unknown:
        listed = "; ".join(f"{d}: {why}" for d, why in unknown.items())
        print(f"note: repetition not checked for {listed}; {how}")
    return sizes or None


def _print_repetition(plan: Any, unit: str) -> None:
    """The sweep's worst repetition, so a data-constrained sweep is seen before it runs."""
    runs = [r for r in plan.runs if "max_epochs" in r]
    if not runs:
        return
    worst = max(runs, key=lambda r: r["max_epochs"])
    d = worst["most_repeated"]
    print(
        f"worst repetition: {worst['max_epochs']:.3g} epochs of {d!r} ({plan.available[d]:,.0f}"
        f" {unit}) in run {worst['run']}, within --max-repeat {plan.max_repeat[d]:g};"
        " plan.csv's max_epochs has each run's"
    )
