"""The mixture demo: the whole loop on real data, on a CPU, ending with evidence.

Proxy sweep -> fitted laws -> optimized mixtures -> main runs against uniform and natural,
written to ``--out`` (report.md, figures, run tables, laws, weights). The demo is a client of
mixsampler's public API like any user's code; it is not part of the installed package.

Example:
    $ python examples/mixture_demo/run.py --quick
    $ python examples/mixture_demo/run.py --data my_shards/ --out my_demo --device cuda
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

# The demo's modules sit beside this file; run as a script, Python puts this folder first on
# the path already, this line makes it so when the file is imported (the tests do).
sys.path.insert(0, str(Path(__file__).resolve().parent))

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The demo's command line."""
    p = argparse.ArgumentParser(
        prog="python examples/mixture_demo/run.py",
        description=(
            "Build byte-level shards from text every Python installation has (stdlib source, "
            "torch's C++ headers, pydoc prose, package licences; package READMEs as a held-out "
            "target), train a proxy sweep of tiny GPTs, fit the additive and joint laws, "
            "optimize the mixture for the average training loss and for the held-out target, "
            "train main runs at a larger N with the optimized, uniform and natural "
            "mixtures on 3 seeds, compare them seed by seed, and write OUT/report.md."
        ),
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes: the same loop in ~1-3 min")
    p.add_argument(
        "--data",
        metavar="DIR",
        help="your own shards: DIR/<domain>/train/*.tar and DIR/<domain>/val/*.tar "
        "(a domain with only val/ is a held-out target); samples of seq_len + 1 bytes",
    )
    p.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="accelerator")
    p.add_argument("--seed", type=int, default=None, help="seed of the plan, proxies and fits")
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=None,
        help="seeds of the main runs (at least 3; each fixes initialisation and data order "
        "for every mixture; default 0 1 2)",
    )
    p.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: the cores available)"
    )
    p.add_argument("--proxy-tokens", type=int, help="tokens per proxy run")
    p.add_argument("--main-tokens", type=int, help="tokens per main run")
    p.add_argument("--n-mixtures", type=int, help="mixtures in the proxy sweep")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; returns the exit status."""
    import logging

    import demo_config as config
    import demo_pipeline as pipeline
    import demo_report as report

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    cfg = config.QUICK if args.quick else config.FULL
    changes: dict[str, Any] = {}
    if args.seed is not None:
        changes["seed"] = args.seed
    if args.seeds is not None:
        changes["seeds"] = tuple(args.seeds)
    if args.proxy_tokens is not None:
        changes["proxy_tokens"] = args.proxy_tokens
    if args.main_tokens is not None:
        changes["main_tokens"] = args.main_tokens
    if args.n_mixtures is not None:
        changes["n_mixtures"] = args.n_mixtures
    if changes:
        cfg = replace(cfg, **changes)
    results = pipeline.run_demo(
        cfg, args.out, data_dir=args.data, device=args.device, threads=args.threads
    )
    print(report.summary(results, Path(args.out)), file=sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
