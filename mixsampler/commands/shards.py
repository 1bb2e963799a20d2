"""``mixsampler shards``: turn text files into webdataset shards, one domain per argument.

Example:
    $ mixsampler shards web=corpus/web/ code='corpus/code/**/*.py' -o shards --chunk-tokens 1024
    web   4 shards  3 912 samples  4 005 888 tokens  shards/web-{000000..000003}.tar
"""

from __future__ import annotations

import argparse
from typing import Any


def _parse_inputs(items: list[str]) -> dict[str, list[str]]:
    domains: dict[str, list[str]] = {}
    for item in items:
        domain, sep, path = item.partition("=")
        if not sep or not domain or not path:
            raise ValueError(f"inputs are DOMAIN=PATH (a file, folder or glob), got {item!r}")
        domains.setdefault(domain, []).append(path)
    return domains


def _run(args: argparse.Namespace) -> int:
    from mixsampler.shards import write_shards

    for domain, paths in _parse_inputs(args.inputs).items():
        result = write_shards(
            paths,
            args.out,
            domain=domain,
            chunk_tokens=args.chunk_tokens,
            samples_per_shard=args.samples_per_shard,
            overwrite=args.overwrite,
            progress=not args.quiet,
        )
        dropped = f", {result.dropped_tokens} tail tokens dropped" if result.dropped_tokens else ""
        print(
            f"{domain}\t{len(result.paths)} shards\t{result.samples} samples\t"
            f"{result.tokens} tokens\t{result.pattern}{dropped}"
        )
    return 0


def register(subparsers: Any) -> None:
    """Add the ``shards`` verb."""
    parser = subparsers.add_parser(
        "shards",
        help="turn folders or globs of text files into webdataset shards per domain",
        description=(
            "Write webdataset shards OUT/<domain>-000000.tar ... whose samples hold the text as "
            "UTF-8 bytes ('bin', byte-level tokens) and its token count ('ntok'), ready for "
            "MixtureDataset (unit='tokens' reads ntok). Inputs are sorted, so the output is "
            "deterministic."
        ),
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="DOMAIN=PATH",
        help="a file, folder (recursive) or quoted glob for a domain; repeat for more",
    )
    parser.add_argument("-o", "--out", required=True, help="output folder")
    parser.add_argument(
        "--chunk-tokens",
        type=int,
        default=None,
        metavar="T",
        help="cut the concatenated text into samples of exactly T bytes (default: one per file)",
    )
    parser.add_argument(
        "--samples-per-shard", type=int, default=1000, metavar="S", help="default: 1000"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace this domain's shards in OUT"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=_run)
