"""What the drop-in hooks cost: the seeded per-sample transform, and limit_val_batches.

1. Training samples per second through MixtureDataset over ``npy`` + ``cls`` image shards with
   the same decode / to_tuple / jitter transform applied three ways, interleaved in one process
   (``--chunk`` samples from each in turn, ``--cycles`` times; the machine is shared and noisy,
   so only the ratios side by side mean anything): no transform (reference), the transform
   called on the collated side without seeding, and ``transform=`` (seeded per sample, exact
   on resume). Reported: ratio of each to the reference, median of the cycles.
2. Validation batches per domain with ``limit_val_batches`` int and fraction (counted, not
   timed), against the plain reading of every batch.

Example:
    $ .venv/bin/python benchmarks/bench_dropin.py --samples 2000 --out /tmp/speed/dropin.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))

from image_model import train_transform, write_image_shards  # noqa: E402

from mixsampler import MixtureDataset  # noqa: E402
from mixsampler.loader import DomainBatches, MixtureCollate, ValidationStream  # noqa: E402


def _stream(root: Path, transform=None):
    ds = MixtureDataset(
        {"cats": str(root / "cats"), "dogs": str(root / "dogs")},
        {"cats": 0.75, "dogs": 0.25},
        transform=transform,
        rank=0,
        world_size=1,
    )
    return iter(ds)


def throughput(root: Path, chunk: int, cycles: int) -> dict[str, float]:
    plain = _stream(root)
    after = _stream(root)  # the transform applied by the caller, unseeded
    seeded = _stream(root, train_transform)
    times: dict[str, list[float]] = {"none": [], "unseeded": [], "seeded": []}
    for _ in range(cycles):
        t = time.perf_counter()
        list(islice(plain, chunk))
        times["none"].append(time.perf_counter() - t)
        t = time.perf_counter()
        for s in islice(after, chunk):
            train_transform({k: v for k, v in s.items() if k != "__domain__"})
        times["unseeded"].append(time.perf_counter() - t)
        t = time.perf_counter()
        list(islice(seeded, chunk))
        times["seeded"].append(time.perf_counter() - t)
    ref = statistics.median(times["none"])
    out = {f"{k}_per_s": chunk / statistics.median(v) for k, v in times.items()}
    out.update({f"{k}_ratio": statistics.median(v) / ref for k, v in times.items()})
    return out


def val_counts(root: Path) -> dict[str, dict[str, int]]:
    streams = {d: ValidationStream(d, str(root / f"val_{d}")) for d in ("cats", "dogs")}
    out = {}
    for label, limit in (("all", None), ("int 6", 3), ("fraction 0.5", 0.5)):
        batches = DomainBatches(streams, 4, MixtureCollate(None, None), limit=limit)
        counts: dict[str, int] = {}
        for b in batches:
            counts[b.meta.domains[0]] = counts.get(b.meta.domains[0], 0) + 1
        out[label] = counts
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=2000, help="training samples per domain")
    p.add_argument("--chunk", type=int, default=200)
    p.add_argument("--cycles", type=int, default=7)
    p.add_argument("--out", help="write the report here as well")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_image_shards(root / "cats", "cats", args.samples, per_shard=250)
        write_image_shards(root / "dogs", "dogs", args.samples, per_shard=250, offset=2.0)
        write_image_shards(root / "val_cats", "cats", 30, per_shard=10)
        write_image_shards(root / "val_dogs", "dogs", 22, per_shard=10)
        speed = throughput(root, args.chunk, args.cycles)
        counts = val_counts(root)
    lines = [
        "# bench_dropin (shared, loaded machine: ratios side by side only)",
        "",
        "| path | samples/s | time ratio to no transform |",
        "|---|---|---|",
    ]
    for k in ("none", "unseeded", "seeded"):
        lines.append(f"| {k} | {speed[k + '_per_s']:.0f} | {speed[k + '_ratio']:.2f} |")
    lines += ["", "validation batches per domain (batch 4; cats 30 samples, dogs 22):", ""]
    lines += [f"- {label}: {c}" for label, c in counts.items()]
    report = "\n".join(lines)
    print(report)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(report + "\n")


if __name__ == "__main__":
    main()
