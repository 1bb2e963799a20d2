"""Benchmark ``mixsampler shards`` with a real BPE tokenizer: tokens/s and bytes per token.

Side by side in one process, on the same JSON lines corpus and the same tokenizer:

1. throughput in tokens/s of ``write_shards`` with 1 and 2 worker processes against a plain
   loop that only reads the same documents and tokenizes them (``encode_batch`` over the same
   batches, nothing written): the three are run in turn for ``--runs`` rounds, so a change of
   machine load hits all of them alike, and the median of each is reported with its ratio to
   the plain loop's median (goals of issue 20: >= 0.9x with one worker, >= 1.7x with two);
2. bytes per token of the shards (goal: <= 2.2 for a vocabulary under 65,536) against what a
   user's own webdataset ``TarWriter`` step gives for the same ids (samples of 8 x 129 uint16
   ids, members ``bin`` and ``ntok``: the 6.05 bytes/token of the issue);
3. litdata's ``optimize`` with the same tokenizer, when litdata is installed (skipped with the
   reason otherwise).

The corpus is real text nobody wrote for this benchmark: by default the Python standard
library's own ``.py`` files (code, docstrings, comments), one document each, written as
``corpus/part-*.jsonl.zst``; pass ``--corpus`` for yours. The tokenizer (byte-level BPE,
vocabulary 4,096, ``<|endoftext|>``) is trained here on that corpus unless ``--tokenizer`` is
given. Nothing is downloaded.

Tokenizer threads: the ``tokenizers`` library tokenizes a batch on all cores by itself; by
default this benchmark sets ``TOKENIZERS_PARALLELISM=false`` so that one worker is one core
and the ratios say what extra processes buy (``--tokenizer-threads`` leaves it on).

Example:
    $ .venv/bin/python benchmarks/bench_shards.py --out /tmp/speed/shards.md
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import shutil
import statistics
import sys
import sysconfig
import time

import numpy as np


def _stdlib_corpus(folder: str, max_mb: float) -> str:
    """The standard library's .py files as JSON lines (zstd), one document per file."""
    import zstandard

    os.makedirs(folder, exist_ok=True)
    root = sysconfig.get_paths()["stdlib"]
    files = sorted(glob.glob(os.path.join(root, "**", "*.py"), recursive=True))
    budget = int(max_mb * 1e6)
    part, rows, size, total = 0, [], 0, 0
    for path in files:
        if "site-packages" in path:
            continue
        try:
            text = open(path, encoding="utf-8").read()
        except (UnicodeDecodeError, OSError):
            continue
        rows.append(json.dumps({"text": text, "source": os.path.relpath(path, root)}))
        size += len(text)
        total += len(text)
        if size > 4e6 or total >= budget:
            _write_part(folder, part, rows, zstandard)
            part, rows, size = part + 1, [], 0
        if total >= budget:
            break
    if rows:
        _write_part(folder, part, rows, zstandard)
    return folder


def _write_part(folder: str, part: int, rows: list[str], zstandard) -> None:
    data = ("\n".join(rows) + "\n").encode()
    with open(os.path.join(folder, f"part-{part:05d}.jsonl.zst"), "wb") as f:
        f.write(zstandard.compress(data, 3))


def _train_tokenizer(corpus: str, path: str, vocab: int) -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from mixsampler.corpus import read_documents

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    docs = (d.text for f in sorted(glob.glob(os.path.join(corpus, "*"))) for d in read_documents(f))
    tok.train_from_iterator(docs, trainer)
    tok.save(path)
    return path


def _plain_loop(corpus: str, tokenizer: str) -> tuple[int, float]:
    """What the user's loop costs at least: read the documents, tokenize them, nothing else."""
    from tokenizers import Tokenizer

    from mixsampler.corpus import read_documents

    t0 = time.perf_counter()
    tok = Tokenizer.from_file(tokenizer)
    n, batch, chars = 0, [], 0
    for path in sorted(glob.glob(os.path.join(corpus, "*"))):
        for doc in read_documents(path):
            batch.append(doc.text)
            chars += len(doc.text)
            if chars >= 1 << 20 or len(batch) >= 2048:  # the batches write_shards uses
                n += sum(len(e.ids) + 1 for e in tok.encode_batch(batch, add_special_tokens=False))
                batch, chars = [], 0
    if batch:
        n += sum(len(e.ids) + 1 for e in tok.encode_batch(batch, add_special_tokens=False))
    return n, time.perf_counter() - t0


def _shards(corpus: str, tokenizer: str, out: str, workers: int) -> tuple[int, float, object]:
    from mixsampler import write_shards

    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    r = write_shards(corpus, out, domain="d", tokenizer=tokenizer, workers=workers)
    dt = time.perf_counter() - t0
    return r.tokens + r.dropped_tokens, dt, r


def _tarwriter_bytes_per_token(result, out: str) -> float:
    """The issue's user step: webdataset TarWriter, samples of 8 x 129 uint16 ids."""
    import webdataset as wds

    from mixsampler import token_ids

    ids = np.concatenate(
        [token_ids(s) for s in wds.WebDataset(result.paths, shardshuffle=False)]
    ).astype(np.uint16)
    per = 8 * 129
    n = len(ids) // per
    path = os.path.join(out, "tarwriter.tar")
    with wds.TarWriter(path) as sink:
        for i in range(n):
            block = ids[i * per : (i + 1) * per]
            sink.write({"__key__": f"{i:09d}", "bin": block.tobytes(), "ntok": str(per).encode()})
    return os.path.getsize(path) / (n * per)


def _litdata(corpus: str, tokenizer: str, out: str) -> str:
    try:
        import litdata  # noqa: F401
    except ImportError as err:
        return f"skipped: litdata is not installed ({err})"
    return "skipped: litdata is installed but this benchmark does not drive it yet"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", default="/tmp/speed/bench_shards")
    parser.add_argument("--corpus", default=None, help="a folder of corpus files (default: stdlib)")
    parser.add_argument("--tokenizer", default=None, help="tokenizer.json (default: train one)")
    parser.add_argument("--mb", type=float, default=12.0, help="stdlib corpus size in MB")
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--tokenizer-threads", action="store_true")
    parser.add_argument("--out", default=None, help="also write the report here (markdown)")
    args = parser.parse_args()
    if not args.tokenizer_threads:
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
    os.makedirs(args.folder, exist_ok=True)
    corpus = args.corpus or _stdlib_corpus(os.path.join(args.folder, "corpus"), args.mb)
    tokenizer = args.tokenizer or _train_tokenizer(
        corpus, os.path.join(args.folder, "tokenizer.json"), args.vocab
    )
    _plain_loop(corpus, tokenizer)  # warm the page cache and imports
    times: dict[str, list[float]] = {"plain": []}
    tokens: dict[str, int] = {}
    result = None
    for w in args.workers:
        times[f"shards w={w}"] = []
    for _ in range(args.runs):
        n, dt = _plain_loop(corpus, tokenizer)
        tokens["plain"] = n
        times["plain"].append(dt)
        for w in args.workers:
            n, dt, result = _shards(corpus, tokenizer, os.path.join(args.folder, "out"), w)
            tokens[f"shards w={w}"] = n
            times[f"shards w={w}"].append(dt)
    base = tokens["plain"] / statistics.median(times["plain"])
    load = os.getloadavg()
    lines = [
        f"# bench_shards ({datetime.date.today()}, {os.cpu_count()} cores, load average "
        f"{load[0]:.1f} at the end; TOKENIZERS_PARALLELISM="
        f"{os.environ.get('TOKENIZERS_PARALLELISM', 'default')})",
        "",
        f"corpus: {corpus} ({sum(os.path.getsize(p) for p in glob.glob(corpus + '/*')) / 1e6:.1f}"
        f" MB on disk), {tokens['plain']:,} tokens with EOS; tokenizer {tokenizer}",
        "",
        "| run | tokens/s (median) | ratio to plain loop | runs (s) |",
        "|---|---|---|---|",
    ]
    for name, ts in times.items():
        rate = tokens[name] / statistics.median(ts)
        runs = ", ".join(f"{t:.2f}" for t in ts)
        lines.append(f"| {name} | {rate:,.0f} | {rate / base:.2f}x | {runs} |")
    assert result is not None
    try:
        tw = f"{_tarwriter_bytes_per_token(result, args.folder):.3f}"
    except ImportError as err:
        tw = f"skipped ({err})"
    lines += [
        "",
        f"bytes/token: mixsampler shards {result.bytes_per_token:.3f} ({result.dtype}, "
        f"{result.samples} samples of 16385 tokens, {len(result.paths)} shards); "
        f"webdataset TarWriter 8 x 129 uint16 per sample {tw}",
        f"litdata optimize: {_litdata(corpus, tokenizer, args.folder)}",
    ]
    report = "\n".join(lines)
    print(report)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(report + "\n")


if __name__ == "__main__":
    sys.exit(main())
