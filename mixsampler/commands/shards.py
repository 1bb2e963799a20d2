"""``mixsampler shards``: a corpus into webdataset shards of token ids, one domain per argument.

Example:
    $ mixsampler shards web=corpus/web/ code='corpus/code/*.jsonl.zst' -o shards \
        --tokenizer tokenizer.json --val-fraction 0.01 --workers 4
    web  train  4 shards  3912 samples  64098120 tokens  2.11 bytes/token  shards/web-{...}.tar
    web  val    1 shards  40 samples  655400 tokens  2.12 bytes/token  shards/val/web-{...}.tar
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
            tokenizer=args.tokenizer,
            eos=args.eos,
            text_field=args.text_field,
            workers=args.workers,
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
        f"{result.tokens} tokens\t{result.bytes_per_token:.2f} bytes/token\t"
        f"{result.pattern}{dropped}"
    )
    if result.size_ratio > 2:
        # Tar headers and padding cost about 2 KiB per sample: small samples multiply the size.
        print(
            f"note: {domain} {split} shards are {result.size_ratio:.1f}x the bare ids; more"
            " --chunks-per-sample makes each sample hold several chunks",
            file=sys.stderr,
        )


def register(subparsers: Any) -> None:
    """Add the ``shards`` verb."""
    parser = subparsers.add_parser(
        "shards",
        help="turn a corpus (text, jsonl[.gz|.zst], parquet) into token shards per domain",
        description=(
            "Write webdataset shards OUT/<domain>-000000.tar ... whose samples hold token ids "
            "('bin': uint8 bytes without --tokenizer, uint16 or uint32 with one) and their exact "
            "count ('ntok'), ready for MixtureDataset (unit='tokens' reads ntok) and the "
            "mixsampler.collate.TokenWindows collate. Inputs are sorted and results written in "
            "order, so the output is the same bytes for any --workers."
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
        "--tokenizer",
        default=None,
        metavar="PATH",
        help=(
            "a Hugging Face tokenizer.json, or a local folder holding one (default: byte-level "
            "tokens, the UTF-8 bytes). Samples then hold 16385 tokens unless --chunk-tokens"
        ),
    )
    parser.add_argument(
        "--eos",
        default=None,
        metavar="TOKEN",
        help="token (or id) after every document (default: the tokenizer's end-of-text token)",
    )
    parser.add_argument(
        "--text-field",
        default="text",
        metavar="NAME",
        help="the JSON lines field or parquet column holding the text (default: text)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="processes that tokenize; the output is identical for any N (default: 1)",
    )
    parser.add_argument(
        "--chunk-tokens",
        type=int,
        default=None,
        metavar="T",
        help=(
            "cut the token stream into chunks of exactly T tokens (default: 16385 tokens a "
            "sample with --tokenizer, else one sample per document)"
        ),
    )
    parser.add_argument(
        "--chunks-per-sample",
        type=int,
        default=1,
        metavar="K",
        help=(
            "chunks in one sample (K x T tokens); more keeps the shards near 2 bytes a token"
            " for uint16 ids (default: 1)"
        ),
    )
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=0.0,
        metavar="F",
        help=(
            "hold out this share of the documents (each chosen by a hash of its text, inside"
            " files too) as shards under OUT/val (default: 0, no split)"
        ),
    )
    parser.add_argument(
        "--samples-per-shard", type=int, default=1000, metavar="S", help="default: 1000"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace this domain's shards in OUT and OUT/val",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=_run)
