"""Benchmark MixtureDataset against its peers on the same samples, interleaved in one process.

Peers, each in its own native format, written to ``--folder`` (default ``/tmp/speed/bench``):
webdataset's ``RandomMix`` (tar shards, the same files MixtureDataset reads), torchdata's
``MultiNodeWeightedSampler`` (``torchdata.nodes``, over one webdataset pipeline per domain),
litdata's ``CombinedStreamingDataset`` (litdata's chunk format, written by ``litdata.optimize``)
and MosaicML ``streaming`` (MDS). litdata and streaming come with ``pip install -e .[peers]``;
a peer that is missing or cannot be imported is skipped with the reason in the report.

Measured, for 3 domains (weights 0.6 / 0.3 / 0.1) of random samples of 64 to 1,024 bytes:

1. exactness: worst deviation of any prefix of the domain stream from ``w_i * n`` and of any
   batch from ``w_i * batch``, in samples; the same in bytes for token (byte) shares, where
   peers can only reweight samples by the mean length of each domain;
2. throughput through a DataLoader with 0 and 2 workers, with and without shuffling, as a
   ratio to plain ``wds.WebDataset`` reading of the same shards: the loaders are kept open
   side by side and take ``--chunk`` samples each in turn for ``--cycles`` cycles, so a change
   of machine load hits all of them alike; the median of ``--runs`` runs;
3. time to the first batch, fresh and after a restore, and the samples skipped or repeated
   over the next 1,000 after a restore compared with an uninterrupted run;
4. live weight changes with 2 workers: now (lands late by the prefetched batches) and
   scheduled with ``at_sample`` (exact);
5. rank overlap: the samples two ranks of a 2-rank job share.

Example:
    $ .venv/bin/python benchmarks/bench_sampler.py --quick --out /tmp/speed/sampler.md
"""

from __future__ import annotations

import argparse
import datetime
import io
import logging
import os
import statistics
import tarfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader

from mixsampler import MixtureDataset

DOMAINS = ("web", "code", "books")
WEIGHTS = (0.6, 0.3, 0.1)
WEIGHT_MAP = dict(zip(DOMAINS, WEIGHTS, strict=True))
INDEX = {d: i for i, d in enumerate(DOMAINS)}
Loader = Callable[[int, bool], Iterable[list]]  # (workers, shuffle) -> batches of samples
SKIPPED: dict[str, str] = {}


def item(sample: dict) -> tuple[str, str, int]:
    """(domain, key, bytes) of a sample as any reader gives it: what every collate keeps."""
    key = sample["__key__"] if "__key__" in sample else sample["key"]
    key = key.decode() if isinstance(key, bytes) else str(key)
    return key.rstrip("0123456789"), key, len(sample["bin"])


def collate(batch: list) -> list:
    return [item(s) for s in batch]


# -- data in each native format ---------------------------------------------------------------


def write_tars(folder: Path, samples: int, shards: int, seed: int) -> dict[str, list[str]]:
    """USTAR shards as ``mixsampler.write_shards`` writes them: ``<key>.bin`` and ``<key>.ntok``."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[str]] = {}
    for d in DOMAINS:
        out[d] = []
        per = samples // shards
        for s in range(shards):
            path = folder / "wds" / f"{d}-{s:06d}.tar"
            path.parent.mkdir(parents=True, exist_ok=True)
            out[d].append(str(path))
            if path.exists():
                continue
            with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tf:
                for i in range(s * per, (s + 1) * per):
                    data = rng.bytes(int(rng.integers(64, 1025)))
                    for ext, value in (("bin", data), ("ntok", str(len(data)).encode())):
                        info = tarfile.TarInfo(f"{d}{i:07d}.{ext}")
                        info.size = len(value)
                        tf.addfile(info, io.BytesIO(value))
    return out


def _tar_samples(paths: list[str]) -> Iterable[dict]:
    yield from wds.WebDataset(paths, shardshuffle=False, empty_check=False)


def write_litdata(folder: Path, tars: dict[str, list[str]]) -> dict[str, str] | None:
    try:
        import litdata
    except ImportError as err:
        SKIPPED["litdata"] = f"not installed ({err}); pip install -e .[peers]"
        return None
    out = {}
    for d in DOMAINS:
        target = folder / "litdata" / d
        out[d] = str(target)
        if (target / "index.json").exists():
            continue
        rows = [{"key": s["__key__"], "bin": s["bin"]} for s in _tar_samples(tars[d])]
        litdata.optimize(
            fn=_identity,
            inputs=rows,
            output_dir=str(target),
            chunk_bytes="8MB",
            num_workers=1,
            verbose=False,
        )
    return out


def _identity(x: dict) -> dict:
    return x


def write_mds(folder: Path, tars: dict[str, list[str]]) -> dict[str, str] | None:
    try:
        from streaming import MDSWriter
    except Exception as err:  # streaming's import pulls in torchvision, transformers, ...
        SKIPPED["streaming"] = f"cannot be imported: {type(err).__name__}: {err}"
        return None
    out = {}
    for d in DOMAINS:
        target = folder / "mds" / d
        out[d] = str(target)
        if (target / "index.json").exists():
            continue
        with MDSWriter(out=str(target), columns={"key": "str", "bin": "bytes"}) as w:
            for s in _tar_samples(tars[d]):
                w.write({"key": s["__key__"], "bin": s["bin"]})
    return out


# -- the readers ------------------------------------------------------------------------------


def _loader(ds: object, workers: int, batch: int, stateful: bool = False) -> DataLoader:
    cls = StatefulDataLoader if stateful else DataLoader
    return cls(ds, batch_size=batch, num_workers=workers, collate_fn=collate)


def readers(tars: dict[str, list[str]], lit: dict | None, batch: int) -> dict[str, Loader]:
    every = sorted(p for d in DOMAINS for p in tars[d])

    def plain(workers: int, shuffle: bool) -> Iterable[list]:
        ds = wds.WebDataset(every, shardshuffle=False, empty_check=False).repeat()
        return _loader(ds.shuffle(1000) if shuffle else ds, workers, batch)

    def ours(workers: int, shuffle: bool) -> Iterable[list]:
        ds = MixtureDataset(tars, WEIGHT_MAP, shuffle_buffer=1000 if shuffle else 1)
        return _loader(ds, workers, batch)

    def random_mix(workers: int, shuffle: bool) -> Iterable[list]:
        parts = [wds.WebDataset(tars[d], shardshuffle=False, empty_check=False) for d in DOMAINS]
        parts = [(p.shuffle(1000) if shuffle else p).repeat() for p in parts]
        return _loader(wds.RandomMix(parts, list(WEIGHTS)), workers, batch)

    out: dict[str, Loader] = {
        "wds.WebDataset (plain)": plain,
        "MixtureDataset": ours,
        "wds.RandomMix": random_mix,
    }
    out["torchdata MultiNodeWeightedSampler"] = lambda w, s: torchdata_loader(tars, batch, w, s)
    if lit is not None:
        out["litdata CombinedStreamingDataset"] = lambda w, s: litdata_loader(lit, batch, w, s)
    return out


def torchdata_loader(tars: dict, batch: int, workers: int, shuffle: bool, **kw) -> Iterable:
    """torchdata.nodes has no worker processes (it parallelises map functions in threads)."""
    import torchdata.nodes as tn

    if workers:
        return None
    nodes = {}
    for d in DOMAINS:
        ds = wds.WebDataset(tars[d], shardshuffle=False, empty_check=False)
        nodes[d] = tn.IterableWrapper((ds.shuffle(1000) if shuffle else ds).repeat())
    sampler = tn.MultiNodeWeightedSampler(nodes, WEIGHT_MAP, stop_criteria="CYCLE_FOREVER", **kw)
    return tn.Loader(tn.Mapper(tn.Batcher(sampler, batch), collate))


def litdata_loader(dirs: dict, batch: int, workers: int, shuffle: bool) -> Iterable:
    from litdata import CombinedStreamingDataset, StreamingDataLoader, StreamingDataset

    parts = [StreamingDataset(dirs[d], shuffle=shuffle, drop_last=False) for d in DOMAINS]
    ds = CombinedStreamingDataset(parts, weights=list(WEIGHTS), iterate_over_all=False)
    return StreamingDataLoader(ds, batch_size=batch, num_workers=workers, collate_fn=collate)


# -- measurements -----------------------------------------------------------------------------


def deviations(stream: list[tuple[str, str, int]], batch: int, tokens: bool) -> tuple[float, float]:
    """(worst prefix, worst batch) of max_i |share_i - w_i total|, in samples or bytes."""
    idx = np.array([INDEX[d] for d, _, _ in stream])
    amount = np.array([n for _, _, n in stream], float) if tokens else np.ones(len(stream))
    onehot = np.zeros((len(stream), len(DOMAINS)))
    onehot[np.arange(len(stream)), idx] = amount
    cum = np.cumsum(onehot, axis=0)
    prefix = float(np.abs(cum - np.asarray(WEIGHTS) * cum.sum(1, keepdims=True)).max())
    usable = len(stream) // batch * batch
    per = onehot[:usable].reshape(-1, batch, len(DOMAINS)).sum(1)
    worst_batch = float(np.abs(per - np.asarray(WEIGHTS) * per.sum(1, keepdims=True)).max())
    return prefix, worst_batch


def take(loader: Iterable[list], n: int) -> list:
    out: list = []
    for b in loader:
        out.extend(b)
        if len(out) >= n:
            break
    return out[:n]


def throughput(makers: dict[str, Loader], workers: int, shuffle: bool, args) -> dict[str, float]:
    """Samples per second of each reader, kept open side by side and read in turn."""
    loaders = {name: make(workers, shuffle) for name, make in makers.items()}
    its = {name: iter(ld) for name, ld in loaders.items() if ld is not None}
    for it in its.values():
        next(it)  # start-up (worker processes, first buffers) is not throughput
    spent = dict.fromkeys(its, 0.0)
    got = dict.fromkeys(its, 0)
    for _ in range(args.cycles):
        for name, it in its.items():
            t = time.perf_counter()
            n = 0
            while n < args.chunk:
                n += len(next(it))
            spent[name] += time.perf_counter() - t
            got[name] += n
    del its
    return {name: got[name] / spent[name] for name in spent}


def first_batch_and_resume(make: Callable[[], tuple], k: int, more: int) -> dict[str, float]:
    """Time to the first batch fresh and restored after ``k`` batches; resume errors.

    ``make()`` returns ``(loader, state_dict, load_state_dict)`` callables for one reader.
    """
    loader, save, _ = make()
    it = iter(loader)
    head = [x for _ in range(k) for x in next(it)]
    state = save()
    del it
    ref_loader, _, _ = make()
    ref = take(ref_loader, len(head) + more)
    start = time.perf_counter()
    fresh_loader, _, _ = make()
    fresh_it = iter(fresh_loader)
    next(fresh_it)
    fresh = time.perf_counter() - start
    del fresh_it  # shutting workers down is not part of the first batch
    start = time.perf_counter()
    restored, _, load = make()
    load(state)
    it = iter(restored)
    tail = list(next(it))
    back = time.perf_counter() - start
    while len(tail) < more:
        tail.extend(next(it))
    del it
    want = Counter(key for _, key, _ in ref[len(head) : len(head) + more])
    have = Counter(key for _, key, _ in tail[:more])
    return {
        "fresh": fresh,
        "restored": back,
        "skipped": sum((want - have).values()),
        "repeated": sum((have - want).values()),
    }


def stateful(name: str, tars: dict, lit: dict | None, batch: int, workers: int, shuffle: bool):
    """``make()`` for :func:`first_batch_and_resume`, or None when the reader cannot resume."""
    if name == "MixtureDataset":
        sb = 1000 if shuffle else 1

        def make() -> tuple:
            ld = _loader(MixtureDataset(tars, WEIGHT_MAP, shuffle_buffer=sb), workers, batch, True)
            return ld, ld.state_dict, ld.load_state_dict

    elif name == "wds.RandomMix":

        def make() -> tuple:
            ld = readers(tars, None, batch)["wds.RandomMix"](workers, shuffle)
            ld = StatefulDataLoader(
                ld.dataset, batch_size=batch, num_workers=workers, collate_fn=collate
            )
            return ld, ld.state_dict, ld.load_state_dict  # no state: the loader replays

    elif name.startswith("torchdata") and not workers:

        def make() -> tuple:
            ld = torchdata_loader(tars, batch, workers, shuffle)
            return ld, ld.state_dict, ld.load_state_dict

    elif name.startswith("litdata") and lit is not None:

        def make() -> tuple:
            ld = litdata_loader(lit, batch, workers, shuffle)
            return ld, ld.state_dict, ld.load_state_dict

    else:
        return None
    return make


def live_switch(tars: dict, batch: int, at_batch: int, span: int) -> dict[str, float]:
    """Share of 'books' over ``span`` samples after a switch to 0.9 at batch ``at_batch``."""
    out = {}
    for how in ("now", "at_sample"):
        ds = MixtureDataset(tars, WEIGHT_MAP, batch_size=batch)
        it = iter(_loader(ds, 2, batch))
        head = [x for _ in range(at_batch) for x in next(it)]
        new = {"web": 0.05, "code": 0.05, "books": 0.9}
        if how == "now":
            ds.set_weights(new)
        else:
            # Ahead of what the workers have prefetched (prefetch_factor 2 x 2 workers).
            ds.set_weights(new, at_sample=len(head) + 10 * batch)
            head += [x for _ in range(10) for x in next(it)]
        after = []
        while len(after) < span:
            after.extend(next(it))
        del it
        out[how] = sum(d == "books" for d, _, _ in after[:span]) / span
    return out


def rank_overlap(tars: dict, n: int) -> dict[str, int]:
    """Samples two ranks of a 2-rank job share among their first ``n`` each."""
    out = {}
    keys = [
        {
            k
            for _, k, _ in take(
                _loader(MixtureDataset(tars, WEIGHT_MAP, rank=r, world_size=2), 0, 100), n
            )
        }
        for r in range(2)
    ]
    out["MixtureDataset"] = len(keys[0] & keys[1])
    keys = [
        {k for _, k, _ in take(torchdata_loader(tars, 100, 0, False, rank=r, world_size=2), n)}
        for r in range(2)
    ]
    out["torchdata MultiNodeWeightedSampler"] = len(keys[0] & keys[1])
    return out


# -- report -----------------------------------------------------------------------------------


def section_exactness(makers: dict[str, Loader], tars: dict, args) -> list[str]:
    n, batch = args.exact, args.batch
    lines = [f"## Exactness over {n:,} samples (batches of {batch})", ""]
    lines += ["| reader | worst prefix, samples | worst batch, samples |", "|---|---|---|"]
    for name, make in makers.items():
        if name.startswith("wds.WebDataset"):
            continue
        for workers in (0, 2):
            loader = make(workers, False)
            if loader is None:
                continue
            prefix, per_batch = deviations(take(loader, n), batch, tokens=False)
            lines.append(f"| {name}, {workers} workers | {prefix:.1f} | {per_batch:.1f} |")
    lengths = {d: np.mean([len(s["bin"]) for s in _tar_samples(tars[d][:1])]) for d in DOMAINS}
    by_len = {d: WEIGHT_MAP[d] / lengths[d] for d in DOMAINS}  # sample shares for byte shares
    ours = MixtureDataset(tars, WEIGHT_MAP, unit="tokens", shuffle_buffer=1)
    parts = [
        wds.WebDataset(tars[d], shardshuffle=False, empty_check=False).repeat() for d in DOMAINS
    ]
    rows = {
        'MixtureDataset unit="tokens"': _loader(ours, 0, batch),
        "wds.RandomMix, weights / mean length": _loader(
            wds.RandomMix(parts, [by_len[d] for d in DOMAINS]), 0, batch
        ),
    }
    lines += [
        "",
        "Byte (token) shares: worst deviation of any prefix from w_i x bytes, in bytes.",
        "",
    ]
    lines += ["| reader | worst prefix, bytes |", "|---|---|"]
    for name, loader in rows.items():
        prefix, _ = deviations(take(loader, n), batch, tokens=True)
        lines.append(f"| {name} | {prefix:,.0f} |")
    return lines + [""]


def section_throughput(makers: dict[str, Loader], args) -> list[str]:
    lines = [
        f"## Throughput (ratio to plain wds.WebDataset; {args.chunk} samples from each reader in "
        f"turn, {args.cycles} cycles, median of {args.runs} runs)",
        "",
        "| reader | 0 workers | 0 workers, shuffled | 2 workers | 2 workers, shuffled |",
        "|---|---|---|---|---|",
    ]
    configs = [(0, False), (0, True), (2, False), (2, True)]
    ratios: dict[str, list[str]] = {name: [] for name in makers}
    plain = next(iter(makers))
    for workers, shuffle in configs:
        runs = [throughput(makers, workers, shuffle, args) for _ in range(args.runs)]
        for name in makers:
            if name not in runs[0]:
                ratios[name].append("n/a")
                continue
            rate = statistics.median(r[name] for r in runs)
            ratio = statistics.median(r[name] / r[plain] for r in runs)
            ratios[name].append(f"{ratio:.3f}" if name != plain else f"1 ({rate:,.0f}/s)")
    for name, cells in ratios.items():
        lines.append(f"| {name} | {' | '.join(cells)} |")
    lines += [
        "",
        "Shuffled: plain webdataset with `.shuffle(1000)`, MixtureDataset with its default "
        "1,000-sample blocks, each peer with its own shuffle. torchdata.nodes has no worker "
        "processes (n/a at 2 workers).",
        "",
    ]
    return lines


def section_resume(names: list[str], tars: dict, lit: dict | None, args) -> list[str]:
    k, more = args.resume_batches, args.resume_more
    lines = [
        f"## First batch and resume (restore after {k} batches of {args.batch}; "
        f"the next {more} samples against an uninterrupted run)",
        "",
        "| reader | workers | shuffled | first batch fresh, s | after restore, s | skipped | "
        "repeated |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in names:
        for workers in (0, 2):
            for shuffle in (False, True):
                make = stateful(name, tars, lit, args.batch, workers, shuffle)
                if make is None:
                    continue
                r = first_batch_and_resume(make, k, more)
                lines.append(
                    f"| {name} | {workers} | {'yes' if shuffle else 'no'} | {r['fresh']:.3f} | "
                    f"{r['restored']:.3f} | {r['skipped']} | {r['repeated']} |"
                )
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="/tmp/speed/sampler.md", help="markdown report")
    parser.add_argument("--folder", default="/tmp/speed/bench", help="data in native formats")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--samples", type=int, default=20000, help="samples per domain")
    parser.add_argument("--shards", type=int, default=8, help="tar shards per domain")
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--chunk", type=int, default=1000, help="samples per reader per turn")
    parser.add_argument("--cycles", type=int, default=30)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--exact", type=int, default=30000, help="samples for exactness")
    parser.add_argument("--resume-batches", type=int, default=150)
    parser.add_argument("--resume-more", type=int, default=1000)
    parser.add_argument("--switch-span", type=int, default=10000)
    parser.add_argument("--overlap", type=int, default=15000, help="samples per rank")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--sections",
        default="exactness,throughput,resume,live,overlap",
        help="comma-separated subset of exactness,throughput,resume,live,overlap",
    )
    args = parser.parse_args()
    todo = set(args.sections.split(","))
    if args.quick:
        args.samples, args.shards, args.chunk, args.cycles, args.runs = 2000, 4, 200, 4, 1
        args.exact, args.resume_batches, args.resume_more = 3000, 20, 200
        args.switch_span, args.overlap = 1000, 1500
        args.folder = args.folder.rstrip("/") + "-quick"
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    folder = Path(args.folder)
    t0 = time.perf_counter()
    tars = write_tars(folder, args.samples, args.shards, args.seed)
    lit = write_litdata(folder, tars)
    write_mds(folder, tars)
    makers = readers(tars, lit, args.batch)
    lines = [
        f"# Sampler benchmark ({datetime.date.today().isoformat()})",
        "",
        f"{len(DOMAINS)} domains x {args.samples:,} samples of 64 to 1,024 random bytes "
        f"({args.shards} shards each), weights {WEIGHT_MAP}, batches of {args.batch}, "
        f"{os.cpu_count()} CPUs shared with other jobs (data written in "
        f"{time.perf_counter() - t0:.0f} s). Skipped: "
        + ("; ".join(f"{k}: {v}" for k, v in SKIPPED.items()) or "none"),
        "",
    ]
    if "exactness" in todo:
        lines += section_exactness(makers, tars, args)
    if "throughput" in todo:
        lines += section_throughput(makers, args)
    if "resume" in todo:
        lines += section_resume(list(makers)[1:], tars, lit, args)
    if "live" in todo:
        live = live_switch(tars, args.batch, 50, args.switch_span)
        lines += [
            "## Live weight changes (2 workers)",
            "",
            f"Share of 'books' over the {args.switch_span:,} samples after a switch to 0.9: "
            f"`set_weights(w)` now {live['now']:.4f}, `set_weights(w, at_sample=n)` "
            f"{live['at_sample']:.4f} (target 0.9000). No peer has a public way to change its "
            "weights during a run.",
            "",
        ]
    if "overlap" in todo:
        overlap = rank_overlap(tars, args.overlap)
        lines += [
            f"## Rank overlap (2 ranks, {args.overlap:,} samples each)",
            "",
            "| reader | samples both ranks got |",
            "|---|---|",
            *(f"| {k} | {v:,} |" for k, v in overlap.items()),
            "",
            "RandomMix and litdata split by rank only inside torch.distributed (not simulated).",
        ]
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
