"""End to end at a configurable, larger scale: the demo's pipeline beyond toy size.

The same code as ``examples/mixture_demo/run.py`` (plan -> proxy sweep -> additive and joint
fits with a held-out-by-scale check -> optimized mixtures -> main runs against uniform and
natural on several
seeds -> report), with every size a flag, so the claim "the optimized mixture beats
uniform and natural, and the law predicts the main runs" can be checked where it matters.
``--device cuda`` runs on a GPU.

Data: by default the demo's embedded text (from this Python installation; nothing is
downloaded) with larger byte caps; ``--data DIR`` takes your own shards
(``DIR/<domain>/{train,val}/*.tar``, samples of seq_len + 1 bytes).

Example:
    $ .venv/bin/python benchmarks/bench_e2e.py --scale 4 --out bench_out/e2e
    $ .venv/bin/python benchmarks/bench_e2e.py --device cuda --scale 16 --batch-size 64
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

# The demo is an example beside the package, not part of it: its modules import by plain name.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "mixture_demo"))

import demo_pipeline as pipeline  # noqa: E402
import demo_report as report  # noqa: E402
from demo_data import DataConfig  # noqa: E402


def config_for(args: argparse.Namespace) -> pipeline.DemoConfig:
    """Scale the full demo: ``--scale s`` multiplies tokens by s and widths by sqrt(s)
    (compute-balanced, as Chinchilla grows N and D together), unless given explicitly."""
    base = pipeline.FULL
    s = float(args.scale)
    grow = s**0.5

    def width(w: int) -> int:
        # Multiples of 8 keep the head dimension whole for any n_head up to 8; multiples of 16
        # merged the demo's widths 16 and 24 into one size at --scale 1 (round(1.5) = 2).
        return max(16, int(round(w * grow / 8)) * 8)

    proxy_widths = tuple(args.proxy_widths or sorted({width(w) for w in base.proxy_widths}))
    main_width = args.main_width or width(base.main_width)
    seq_len = args.seq_len or base.data.seq_len
    data = DataConfig(
        seq_len=seq_len,
        train_cap=args.train_cap or int(base.data.train_cap * max(1.0, s)),
        # the large domain keeps its share of the natural mixture (about 52 %)
        large_cap=args.large_cap or int(base.data.large_cap * max(1.0, s)),
        val_cap=args.val_cap or max(base.data.val_cap, 16 * (seq_len + 1)),
        doc_cap=base.data.doc_cap,
    )
    n_layer = args.n_layer or base.n_layer
    n_head = args.n_head or base.n_head
    proxy_tokens = args.proxy_tokens or int(base.proxy_tokens * s)
    if args.proxy_tokens_per_param:
        from demo_model import GPTConfig, TinyGPT

        largest = TinyGPT(
            GPTConfig(seq_len=seq_len, n_layer=n_layer, n_head=n_head, d_model=max(proxy_widths))
        )
        proxy_tokens = int(args.proxy_tokens_per_param * largest.non_embedding_params())
    main_tokens = args.main_tokens or max(proxy_tokens, int(base.main_tokens * s))
    return replace(
        base,
        data=data,
        batch_size=args.batch_size or base.batch_size,
        n_layer=n_layer,
        n_head=n_head,
        proxy_widths=proxy_widths,
        proxy_tokens=proxy_tokens,
        main_width=main_width,
        main_tokens=main_tokens,
        n_mixtures=args.n_mixtures or base.n_mixtures,
        seeds=tuple(args.seeds) if args.seeds else base.seeds,
        lr=args.lr or base.lr,
        lr_decay=not args.constant_lr,
        init_gain=None if args.gpt2_init else (args.init_gain or base.init_gain),
        check_mixtures=base.check_mixtures if args.check_mixtures is None else args.check_mixtures,
        seed=args.seed,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="bench_out/e2e")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--data", help="your own shards instead of the embedded data")
    p.add_argument("--scale", type=float, default=4.0, help="tokens x s, widths x sqrt(s)")
    p.add_argument(
        "--proxy-tokens-per-param",
        type=float,
        help="train the proxies this many tokens per non-embedding parameter of the largest "
        "proxy (the default demo's largest proxy gets 35; the law held there on the proxies, "
        "at 9 it did not); overrides --proxy-tokens",
    )
    p.add_argument("--proxy-widths", type=int, nargs="+")
    p.add_argument("--main-width", type=int)
    p.add_argument("--n-layer", type=int)
    p.add_argument("--n-head", type=int)
    p.add_argument("--seq-len", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--proxy-tokens", type=int)
    p.add_argument("--main-tokens", type=int)
    p.add_argument("--n-mixtures", type=int)
    p.add_argument("--train-cap", type=int, help="training bytes per domain")
    p.add_argument("--large-cap", type=int, help="training bytes of the large domain (cpp)")
    p.add_argument("--val-cap", type=int, help="validation bytes per domain")
    p.add_argument("--seeds", type=int, nargs="+")
    p.add_argument("--lr", type=float)
    p.add_argument(
        "--constant-lr",
        action="store_true",
        help="no cosine decay (the paper's fitting runs; needed to extrapolate in D)",
    )
    p.add_argument("--init-gain", type=float, help="init std = gain / sqrt(width)")
    p.add_argument("--gpt2-init", action="store_true", help="GPT-2's fixed init std 0.02")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int)
    p.add_argument(
        "--jobs",
        type=int,
        help="runs trained side by side (default: one per core on CPU, 1 on a GPU; tiny models "
        "leave a GPU mostly idle, so several per GPU finish sooner)",
    )
    p.add_argument(
        "--check-mixtures",
        type=int,
        help="unseen mixtures of part (a) at the largest proxy size (default 6; 0 skips (a))",
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = config_for(args)
    t0 = time.perf_counter()
    results = pipeline.run_demo(
        cfg, args.out, data_dir=args.data, device=args.device, jobs=args.jobs, threads=args.threads
    )
    wall = time.perf_counter() - t0
    print(report.summary(results, Path(args.out)))
    print(f"\nwall time {wall:.0f} s on {args.device}; config:")
    print(json.dumps(results.to_json()["config"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
