"""``mixsampler shards``: turn text files into webdataset shards, one domain per argument.

Example:
    $ mixsampler shards web=corpus/web/ code='corpus/code/**/*.py' -o shards \
        --chunk-tokens 1025 --chunks-per-sample 64 --val-fraction 0.01
    web  train  4 shards  3912 samples  256 294 400 tokens  size 1.00x  shards/web-{...}.tar
    web  val    1 shards  40 samples  2 624 000 tokens  size 1.00x  shards/val/web-{...}.tar
"""

from __future__ import annotations

import argparse
import sys
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
            chunks_per_sample=args.chunks_per_sample,
            samples_per_shard=args.samples_per_shard,
            val_fraction=args.val_fraction,
            overwrite=args.overwrite,
            progress=not args.quiet,
        )
        for split, part in (("train", result), ("val", result.val)):
            if part is not None:
                _report(domain, split, part)
    return 0


def _report(domain: str, split: str, result: Any) -> None:
    dropped = f", {result.dropped_tokens} tail tokens dropped" if result.dropped_tokens else ""
    print(
        f"{domain}\t{split}\t{len(result.paths)} shards\t{result.samples} samples\t"
        f"{result.tokens} tokens\tsize {result.size_ratio:.2f}x\t{result.pattern}{dropped}"
    )
    if result.size_ratio > 2:
        # Tar headers and padding cost about 2 KiB per sample: small samples multiply the size.
        print(
            f"note: {domain} {split} shards are {result.size_ratio:.1f}x the text; more"
            " --chunks-per-sample makes each sample hold several chunks",
            file=sys.stderr,
        )


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
        help="cut the concatenated text into chunks of exactly T bytes (default: one per file)",
    )
    parser.add_argument(
        "--chunks-per-sample",
        type=int,
        default=1,
        metavar="K",
        help=(
            "chunks in one sample (K x T bytes; the collate reshapes it to (K, T)); more keeps"
            " the shards near the text's size (default: 1)"
        ),
    )
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=0.0,
        metavar="F",
        help=(
            "hold out this share of the input files (documents), chosen by content hash, as"
            " shards under OUT/val (default: 0, no split)"
        ),
    )
    parser.add_argument(
        "--samples-per-shard", type=int, default=1000, metavar="S", help="default: 1000"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace this domain's shards in OUT"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=_run)
