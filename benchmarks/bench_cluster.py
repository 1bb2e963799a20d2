"""What one rank of a large job pays per sample, and how long the first batch takes.

Part 1 (issue 13) simulates rank ``r`` of world sizes 1 to 8,192 in one process: two domains
with few shards (8 and 4 shards), samples of 2 kB, one DataLoader worker per rank (slot =
rank). Each simulated rank starts cold (indexes dropped from memory, read again from their
files beside the shards, as a fresh process would) and takes ``--take`` samples. Reported per
world size and rank, side by side with world size 1: wall time per sample used (including the
start), and bytes read per sample used, measured independently of the reader by the kernel's
``rchar`` counter (every byte returned by ``read`` system calls: shard data and indexes).

Part 2 (issue 14) times the first batch of 20 samples from three domains of 20,000 samples of
64 to 1,024 bytes: the default shuffle (``shuffle_buffer=1000``) against the unshuffled path
(``shuffle_buffer=1``), fresh and after a restore (a state taken after 500 samples), both with
their indexes on disk (a one-time walk of each shard builds them; its cost is printed too).

Every configuration is measured in turn, interleaved, ``--repeats`` times, and the median is
reported, because this machine is shared and noisy. Run against another checkout (for the
numbers before this change) with ``PYTHONPATH=/path/to/checkout``.

Example:
    python benchmarks/bench_cluster.py --folder /tmp/cluster/bench
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import time

import webdataset as wds

from mixsampler import MixtureDataset

try:  # absent before the shard index existed
    from mixsampler import index as _index
except ImportError:  # pragma: no cover - only when benchmarking an older checkout
    _index = None


def rchar() -> int:
    """Bytes this process has received from read() calls so far (Linux /proc/self/io)."""
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    raise RuntimeError("no rchar in /proc/self/io")


def write_domain(folder: str, name: str, shards: int, per_shard: int, size) -> list[str]:
    os.makedirs(folder, exist_ok=True)
    paths = []
    i = 0
    for s in range(shards):
        path = os.path.join(folder, f"{name}-{s:06d}.tar")
        paths.append(path)
        if os.path.exists(path):
            i += per_shard
            continue
        with wds.TarWriter(path) as sink:
            for _ in range(per_shard):
                n = size(i)
                sink.write({"__key__": f"{name}{i:08d}", "bin": bytes([i % 251]) * n})
                i += 1
    return paths


def cold() -> None:
    if _index is not None:
        _index.clear_cache()


def one_rank(domains, world: int, rank: int, take: int) -> tuple[float, float]:
    """Seconds and rchar bytes per sample for ``take`` samples of one cold rank."""
    cold()
    r0, t0 = rchar(), time.perf_counter()
    ds = MixtureDataset(domains, {"a": 0.5, "b": 0.5}, rank=rank, world_size=world, seed=1)
    n = sum(1 for _ in itertools.islice(iter(ds), take))
    t1, r1 = time.perf_counter(), rchar()
    assert n == take
    return (t1 - t0) / take, (r1 - r0) / take


def part1(args) -> None:
    per = args.samples
    a = write_domain(os.path.join(args.folder, "p1"), "a", 8, per // 8, lambda i: args.size)
    b = write_domain(os.path.join(args.folder, "p1"), "b", 4, per // 4, lambda i: args.size)
    domains = {"a": a, "b": b}
    if _index is not None:
        for url in a + b:
            _index.build_index(url)
    configs = []
    for w in args.world_sizes:
        ranks = sorted({0, w // 2, w - 1}) if args.ranks == "spread" else [0]
        configs += [(w, r) for r in ranks]
    got: dict[tuple[int, int], list[tuple[float, float]]] = {c: [] for c in configs}
    for _ in range(args.repeats):
        for c in configs:  # interleaved: noise hits every configuration alike
            got[c].append(one_rank(domains, c[0], c[1], args.take))
    base_t = statistics.median(t for t, _ in got[(1, 0)])
    print(f"\n## cost per sample ({per} samples of {args.size} B per domain, 8 + 4 shards)")
    print("| world size | rank | us/sample | x world size 1 | bytes read/sample | x sample size |")
    print("|---:|---:|---:|---:|---:|---:|")
    for (w, r), vals in got.items():
        t = statistics.median(v for v, _ in vals)
        by = statistics.median(v for _, v in vals)
        print(f"| {w} | {r} | {t * 1e6:.0f} | {t / base_t:.2f} | {by:.0f} | {by / args.size:.2f} |")


def first_batch(domains, buffer: int, state, batch: int) -> float:
    cold()
    t0 = time.perf_counter()
    ds = MixtureDataset(domains, {"a": 0.6, "b": 0.3, "c": 0.1}, shuffle_buffer=buffer)
    if state is not None:
        ds.load_state_dict(state)
    n = sum(1 for _ in itertools.islice(iter(ds), batch))
    assert n == batch
    return time.perf_counter() - t0


def first_batch_workers(domains, buffer: int, state, batch: int, workers: int) -> float:
    """The same through torchdata's StatefulDataLoader with worker processes."""
    from torchdata.stateful_dataloader import StatefulDataLoader

    cold()
    t0 = time.perf_counter()
    ds = MixtureDataset(domains, {"a": 0.6, "b": 0.3, "c": 0.1}, shuffle_buffer=buffer)
    loader = StatefulDataLoader(ds, batch_size=batch, num_workers=workers, collate_fn=list)
    if state is not None:
        loader.load_state_dict(state)
    it = iter(loader)
    assert len(next(it)) == batch
    elapsed = time.perf_counter() - t0
    del it
    return elapsed


def loader_state(domains, buffer: int, batch: int, workers: int):
    from torchdata.stateful_dataloader import StatefulDataLoader

    ds = MixtureDataset(domains, {"a": 0.6, "b": 0.3, "c": 0.1}, shuffle_buffer=buffer)
    loader = StatefulDataLoader(ds, batch_size=batch, num_workers=workers, collate_fn=list)
    it = iter(loader)
    for _ in range(25):
        next(it)
    state = loader.state_dict()
    del it
    return state


def part2_workers(args, domains) -> None:
    w = args.workers
    states = {b: loader_state(domains, b, args.batch, w) for b in (1, 1000)}
    got: dict[tuple[int, bool], list[float]] = {(b, r): [] for b in (1, 1000) for r in (0, 1)}
    for _ in range(args.repeats):
        for buffer, resumed in got:
            state = states[buffer] if resumed else None
            got[(buffer, resumed)].append(
                first_batch_workers(domains, buffer, state, args.batch, w)
            )
    med = {k: statistics.median(v) for k, v in got.items()}
    print(f"\n## first batch of {args.batch} with StatefulDataLoader, {w} workers")
    print("| start | unshuffled (ms) | shuffle_buffer=1000 (ms) | ratio |")
    print("|---|---:|---:|---:|")
    for resumed, label in ((0, "fresh"), (1, "after a restore (batch 25)")):
        u, s = med[(1, resumed)], med[(1000, resumed)]
        print(f"| {label} | {u * 1e3:.1f} | {s * 1e3:.1f} | {s / u:.2f} |")


def part2(args) -> None:
    folder = os.path.join(args.folder, "p2")
    domains = {
        d: write_domain(folder, d, 4, 5000, lambda i, k=k: 64 + (i * 37 + k) % 961)
        for k, d in enumerate("abc")
    }
    if _index is not None:
        t1 = time.perf_counter()
        for urls in domains.values():
            for url in urls:
                _index.build_index(url, force=True)
        t2 = time.perf_counter()
        print(f"\nindexing 12 shards of 5,000 samples once: {t2 - t1:.2f} s")
    states = {}
    for buffer in (1, 1000):
        ds = MixtureDataset(domains, {"a": 0.6, "b": 0.3, "c": 0.1}, shuffle_buffer=buffer)
        sum(1 for _ in itertools.islice(iter(ds), 500))
        states[buffer] = ds.state_dict()
    got: dict[tuple[int, bool], list[float]] = {(b, r): [] for b in (1, 1000) for r in (0, 1)}
    for _ in range(args.repeats * 3):
        for buffer, resumed in got:
            state = states[buffer] if resumed else None
            got[(buffer, resumed)].append(first_batch(domains, buffer, state, args.batch))
    med = {k: statistics.median(v) for k, v in got.items()}
    print(f"\n## first batch of {args.batch} (3 domains of 20,000 samples, 64 to 1,024 B)")
    print("| start | unshuffled (ms) | shuffle_buffer=1000 (ms) | ratio |")
    print("|---|---:|---:|---:|")
    for resumed, label in ((0, "fresh"), (1, "after a restore")):
        u, s = med[(1, resumed)], med[(1000, resumed)]
        print(f"| {label} | {u * 1e3:.1f} | {s * 1e3:.1f} | {s / u:.2f} |")
    if args.workers:
        part2_workers(args, domains)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--folder", default="/tmp/cluster/bench", help="where shards are written")
    p.add_argument("--samples", type=int, default=16384, help="samples per domain (part 1)")
    p.add_argument("--size", type=int, default=2048, help="bytes per sample (part 1)")
    p.add_argument(
        "--world-sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1, 8, 64, 256, 1024, 8192],
    )
    p.add_argument("--take", type=int, default=400, help="samples per simulated rank")
    p.add_argument("--ranks", choices=["spread", "first"], default="spread", help="0, W/2, W-1")
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--workers", type=int, default=2, help="part 2 with a loader; 0: skip")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--part", choices=["1", "2", "all"], default="all")
    args = p.parse_args()
    if args.part in ("1", "all"):
        part1(args)
    if args.part in ("2", "all"):
        part2(args)


if __name__ == "__main__":
    main()
