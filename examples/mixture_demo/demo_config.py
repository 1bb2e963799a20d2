"""The demo's sizes: :class:`DemoConfig` and its presets :data:`FULL` and :data:`QUICK`.

Example:
    >>> from demo_config import QUICK, scaled
    >>> scaled(QUICK, seeds=(0, 1, 2, 3)).seeds
    (0, 1, 2, 3)
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from typing import Any

from demo_data import DataConfig


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo; the two presets are :data:`FULL` and :data:`QUICK`.

    Attributes:
        data: what the embedded data takes from the installation.
        batch_size: sequences per step (a multiple of ``data.seqs_per_sample``); tokens per
            step = batch_size * seq_len.
        n_layer: depth of every model; the sweep varies width only, as the paper's models do.
        n_head: attention heads of every model.
        proxy_widths: ``d_model`` of the proxy sizes; at least 3, so the laws can be fitted on
            the smaller ones and checked on the largest (extrapolation in N). Widths 16-32
            (N = 6.6K to 25K) train on 35 to 140 tokens per parameter, where the proxies'
            curves follow the law: fitted on the smaller two sizes the law is 1.6 % off at the
            largest, fitted on the first half of each curve 1.3 % (joint 0.8 %) off on the
            second. Widths 32-64 (25K to 100K, 9 to 35 tokens per parameter) were 3.8-4.4 %
            and 3.8-4.2 % off: there the models are still far from their capacity, and the
            loss of the boilerplate-heavy domains falls much faster with N than any power law
            fitted below (the law was 22 % off on the width-96 main runs).
        proxy_tokens: tokens each proxy run trains on; as long as a main run by default, so
            the demo extrapolates only in N, where the law is checked on the largest proxy
            size. (With GPT-2's init and widths 32-64, E + B/D^beta fitted on the first half of
            a curve was 5 to 8 % too high at 2x D for every batch size, learning rate, width
            and depth tried.)
        n_mixtures: distinct mixtures per proxy size; the paper finds about 10 enough for
            3 or 4 domains.
        min_weight: smallest weight of a domain in the plan's grid (the paper's public table
            uses 0.02); the optimum is kept above it too, so the law is never asked about a
            region no proxy run visited.
        evals_per_run: validations per run: each is one run-table row (one D point).
        main_width: ``d_model`` of the main runs (a larger N than every proxy: 48 is 2.2x the
            largest proxy's N, about the paper's 3B against 1.4B).
        main_tokens: tokens of each main run (at least ``proxy_tokens``; a larger D than the
            proxies' is an extrapolation in D, which the report measures but this size does
            not support).
        seeds: seeds of the main runs; their spread is the noise floor of the verdict. Seed s
            sets both the initialisation and the data order (the sampler's seed), and is the
            same for every mixture, so mixtures are compared seed by seed.
        max_repeat: epochs of a domain's training text a main run may use (the optimizer's
            data-availability constraint).
        lr: peak learning rate, after warm-up. With a constant rate, measured at width 48,
            1.5M tokens, two seeds: 3e-3 spread them by 0.06 nats/byte, 2e-3 by 0.008 at a
            loss only 0.1 higher, 1e-3 by 0.009 but 0.2 higher. With the cosine decay and the
            width-scaled init, 3e-3 let some width-96 main runs diverge (seed spread 0.49).
        lr_decay: cosine decay of the rate to ``min_lr_ratio * lr`` at each run's last step,
            instead of the paper's constant rate. The paper keeps the rate constant so that a
            curve extrapolates in D; the demo's main runs train exactly as long as the proxies
            (the curves are not power laws in D at this size, see ``proxy_tokens``), so every
            validation of a main run sits at the same point of the same schedule as a proxy
            validation, and the law is asked only to extrapolate in N. What the decay buys is
            the noise floor: at width 96, uniform mixture, seeds 0-2, the spread of the average
            training loss was 0.046 with a constant rate and 0.027 with the decay (0.032 and
            0.057 against 0.032 on the held-out target), for a mean 0.05 higher.
        lr_ref_width: None: the same peak rate ``lr`` at every width; else ``lr *
            lr_ref_width / width`` (the muP rule for Adam's hidden weights). Measured with
            reference 48: the proxies' losses fell by 0.1 to 0.17, but the joint law then
            extrapolated to nonsense at the main size (0.58 nats/byte predicted for the
            READMEs at its optimum against 3.31 measured), so it is off by default.
        min_lr_ratio: the rate at the end of the decay, relative to ``lr`` (Chinchilla's 0.1).
        warmup_steps: linear warm-up steps.
        init_gain: weights start with standard deviation ``init_gain / sqrt(d_model)``; None
            keeps GPT-2's fixed 0.02. GPT-2 chose 0.02 for width 768, where it is
            0.55 / sqrt(768); at widths 32 to 96 it is 3 to 5 times smaller than that, the
            attention starts almost uniform and runs sit on a plateau whose length depends on
            the seed and the width. Measured at width 96, uniform, seeds 0-2, constant rate:
            GPT-2's init ended at an average training loss of 2.01-2.10 (spread 0.087), 0.55
            at 1.77-1.81 (spread 0.046), 1.0 at 1.77-1.80 (0.037); with GPT-2's init the
            proxies' loss was not even monotone in N (width 48 above width 32 for 4 of 10
            mixtures at lr 3e-3), with 0.55 it falls with N for every mixture.
        grad_clip: gradient norm clipping (nanoGPT's 1.0). The seed spread is the noise floor
            every mixture comparison must clear; at lr 3e-3 two seeds ended 0.08 nats/byte
            apart after 3M tokens unclipped and 0.06 apart after 1.5M clipped.
        check_mixtures: unseen mixtures of part (a) of the claims (:mod:`demo_claims`): drawn
            at random before any run and trained, with uniform, natural and the law's optima
            for that size, at the largest proxy size and D on every seed in ``seeds``, to test
            the mixture part of the law where no extrapolation in N or D is involved. 0 skips
            part (a); the issue asks for at least 6.
        seed: seed of the plan, the proxy runs and the fits.
    """

    data: DataConfig = field(default_factory=DataConfig)
    batch_size: int = 16
    n_layer: int = 2
    n_head: int = 2
    proxy_widths: tuple[int, ...] = (16, 24, 32)
    proxy_tokens: int = 900_000
    n_mixtures: int = 10
    min_weight: float = 0.02
    evals_per_run: int = 8
    main_width: int = 48
    main_tokens: int = 900_000
    seeds: tuple[int, ...] = (0, 1, 2)
    max_repeat: float = 4.0
    lr: float = 2e-3
    lr_ref_width: int | None = None
    lr_decay: bool = True
    min_lr_ratio: float = 0.1
    warmup_steps: int = 20
    init_gain: float | None = 0.55
    grad_clip: float = 1.0
    check_mixtures: int = 6
    seed: int = 0

    def __post_init__(self) -> None:
        if len(self.proxy_widths) < 3 or len(set(self.proxy_widths)) != len(self.proxy_widths):
            raise ValueError(
                f"proxy_widths needs at least 3 distinct sizes (fit on the smaller, check on "
                f"the largest), got {self.proxy_widths}"
            )
        if self.main_width <= max(self.proxy_widths):
            raise ValueError(
                f"main_width must exceed every proxy width {self.proxy_widths}, "
                f"got {self.main_width}"
            )
        if self.main_tokens < self.proxy_tokens:
            raise ValueError(
                f"main_tokens must be at least proxy_tokens={self.proxy_tokens}, "
                f"got {self.main_tokens}"
            )
        if len(self.seeds) < 3 or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(
                f"seeds needs at least 3 distinct seeds (their spread is the noise floor of "
                f"every comparison; 2 seeds understate it), got {self.seeds}"
            )
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.lr_ref_width is not None and not self.lr_ref_width >= 1:
            raise ValueError(f"lr_ref_width must be a width >= 1 or None, got {self.lr_ref_width}")
        if self.init_gain is not None and not self.init_gain > 0:
            raise ValueError(
                f"init_gain must be positive, or None for GPT-2's 0.02, got {self.init_gain}"
            )
        if self.lr_decay and self.main_tokens != self.proxy_tokens:
            warnings.warn(
                f"lr_decay=True with main_tokens={self.main_tokens} != proxy_tokens="
                f"{self.proxy_tokens}: the main runs decay on a schedule no proxy ran, so the "
                f"law extrapolates across schedules (the paper: cosine runs do not extrapolate "
                f"in D); set lr_decay=False to extrapolate in D",
                stacklevel=3,
            )
        if not 0 <= self.min_weight < 0.25:
            raise ValueError(f"min_weight must be in [0, 0.25), got {self.min_weight}")
        if self.batch_size % self.data.seqs_per_sample:
            raise ValueError(
                f"batch_size must be a multiple of data.seqs_per_sample="
                f"{self.data.seqs_per_sample}, got {self.batch_size}"
            )
        if self.check_mixtures < 0:
            raise ValueError(f"check_mixtures must be >= 0, got {self.check_mixtures}")
        for name in ("batch_size", "proxy_tokens", "n_mixtures", "evals_per_run", "main_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.data.seq_len


FULL = DemoConfig()

QUICK = DemoConfig(
    # train_cap above the two small domains (prose, licenses) so the natural mixture is not
    # uniform, as in the full demo.
    # large_cap keeps cpp at about half of the natural mixture, as in the full demo.
    data=DataConfig(
        seq_len=64, train_cap=1_000_000, val_cap=2_048, doc_cap=16_384, large_cap=2_100_000
    ),
    batch_size=16,
    n_layer=1,
    proxy_widths=(16, 24, 32),
    proxy_tokens=61_440,
    n_mixtures=6,
    evals_per_run=4,
    main_width=48,
    main_tokens=61_440,
    lr=3e-3,
    warmup_steps=5,
)


@dataclass
class RunSpec:
    """One training run of the demo.

    Attributes:
        name: unique run name (the ``run`` column of its rows).
        stage: "proxy" or "main".
        width: ``d_model``.
        tokens: planned training tokens.
        weights: the training mixture.
        seed: model initialisation and data order.
        mixture: the mixture's label (e.g. "uniform", "optimized-avg", "mix03").
        weights_file: WEIGHTS.json that MixtureWeights reads (main runs), or None.
    """

    name: str
    stage: str
    width: int
    tokens: int
    weights: dict[str, float]
    seed: int
    mixture: str
    weights_file: str | None = None


def scaled(cfg: DemoConfig, **changes: Any) -> DemoConfig:
    """A copy of ``cfg`` with some fields changed (validated again)."""
    return replace(cfg, **changes)
