"""A tiny byte-level GPT as a LightningModule: the model the demo's proxy and main runs train.

It is deliberately small (a few layers, vocabulary 256, no tokenizer) so that a sweep of tens
of runs fits a CPU budget, and it follows the project's ``validation_step`` contract: per-sample
loss sums, token counts and domains, which :class:`mixsampler.callbacks.DomainLossLogger` turns
into one
run-table row per validation.

Example:
    >>> cfg = GPTConfig(n_layer=2, d_model=32, n_head=2, seq_len=64)
    >>> model = TinyGPT(cfg, TrainConfig(lr=3e-3, warmup_steps=10))
    >>> model.non_embedding_params() > 0
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixsampler.checks import check_int

try:  # typing_extensions is a dependency of torch, so this import is always satisfied.
    from typing_extensions import override
except ImportError:  # pragma: no cover
    from typing import override  # type: ignore[attr-defined,no-redef]


@dataclass(frozen=True)
class GPTConfig:
    """Shape of the model.

    Attributes:
        vocab_size: 256: the model reads raw UTF-8 bytes, so no tokenizer ships with the demo.
        seq_len: context length; shards are cut into ``seq_len + 1`` bytes so a sample is
            one (input, shifted target) pair.
        n_layer: depth; kept fixed across proxy sizes in the default plan, as in the paper
            (its models vary width at depth 24).
        n_head: attention heads; ``d_model`` must be divisible by it.
        d_model: width; the knob that sets N.
        mlp_ratio: hidden width of the MLP relative to ``d_model`` (GPT-2's 4).
        init_std: standard deviation of the weights at initialisation (GPT-2's 0.02, which
            it set for width 768).
    """

    vocab_size: int = 256
    seq_len: int = 128
    n_layer: int = 2
    n_head: int = 2
    d_model: int = 64
    mlp_ratio: int = 4
    init_std: float = 0.02

    def __post_init__(self) -> None:
        if not (self.init_std > 0 and math.isfinite(self.init_std)):
            raise ValueError(f"init_std must be a positive finite number, got {self.init_std!r}")
        for name in ("vocab_size", "seq_len", "n_layer", "n_head", "d_model", "mlp_ratio"):
            check_int(name, getattr(self, name), low=1)
        if self.d_model % self.n_head:
            raise ValueError(
                f"d_model must be divisible by n_head, got d_model={self.d_model}, "
                f"n_head={self.n_head}"
            )


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings.

    Attributes:
        lr: peak learning rate; small models tolerate a large one.
        warmup_steps: linear warm-up, then the rate stays constant: the paper's fitting runs
            use a constant rate so every intermediate validation is a usable (D, loss) point
            (a cosine decay makes late points depend on the planned length).
        weight_decay: AdamW decay on matrices only.
        betas: AdamW betas (the paper's 0.9, 0.95).
        decay_steps: 0 keeps the rate constant after warm-up; otherwise a cosine decay from
            the end of warm-up to ``min_lr_ratio * lr`` at this step (the run's last). A
            decayed run's validations are points of a curve that depends on the planned
            length, so they extrapolate in D only to runs of the same length; in exchange the
            end point is far less noisy (the decay averages the last steps' updates).
        min_lr_ratio: the rate at ``decay_steps``, relative to ``lr`` (Chinchilla's 0.1).
    """

    lr: float = 3e-3
    warmup_steps: int = 20
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.95)
    decay_steps: int = 0
    min_lr_ratio: float = 0.1

    def __post_init__(self) -> None:
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive finite number, got {self.lr!r}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps!r}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.decay_steps < 0 or (self.decay_steps and self.decay_steps <= self.warmup_steps):
            raise ValueError(
                f"decay_steps must be 0 (constant rate) or above warmup_steps="
                f"{self.warmup_steps}, got {self.decay_steps!r}"
            )
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio!r}")

    def lr_factor(self, step: int) -> float:
        """The rate at optimizer step ``step`` relative to ``lr``.

        Example:
            >>> tc = TrainConfig(warmup_steps=10, decay_steps=110, min_lr_ratio=0.1)
            >>> tc.lr_factor(4), tc.lr_factor(9), round(tc.lr_factor(110), 6)
            (0.5, 1.0, 0.1)
        """
        warmup = max(self.warmup_steps, 1)
        if step < warmup or not self.decay_steps:
            return min(1.0, (step + 1) / warmup)
        progress = min(1.0, (step + 1 - warmup) / (self.decay_steps + 1 - warmup))
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cosine


class _Block(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.fc = nn.Linear(cfg.d_model, cfg.mlp_ratio * cfg.d_model)
        self.fc_out = nn.Linear(cfg.mlp_ratio * cfg.d_model, cfg.d_model)

    def forward(self, x: Tensor) -> Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, c))
        return x + self.fc_out(F.gelu(self.fc(self.ln2(x))))


def collate_bytes(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Turn shard samples (``bin`` = raw UTF-8 bytes, one training sequence) into a batch.

    Every sample must have the same length (``write_shards(chunk_tokens=seq_len + 1)``).

    Example:
        >>> batch = collate_bytes([{"bin": b"abc", "__domain__": "x"}])
        >>> batch["tokens"].tolist(), batch["__domain__"]
        ([[97, 98, 99]], ['x'])
    """
    if not samples:
        raise ValueError("collate_bytes got an empty batch")
    lengths = {len(s["bin"]) for s in samples}
    if len(lengths) != 1:
        raise ValueError(
            f"collate_bytes needs equal-length samples (shards cut with chunk_tokens), "
            f"got lengths {sorted(lengths)}"
        )
    buf = bytearray().join(bytes(s["bin"]) for s in samples)
    tokens = torch.frombuffer(buf, dtype=torch.uint8).view(len(samples), -1).long()
    return {"tokens": tokens, "__domain__": [str(s.get("__domain__", "")) for s in samples]}


class TinyGPT(pl.LightningModule):
    """A pre-norm GPT over bytes, trained with AdamW: warm-up, then a constant or cosine rate.

    Args:
        cfg: the model's shape.
        train_cfg: the optimiser's settings.

    Example:
        >>> model = TinyGPT(GPTConfig(d_model=32, n_head=2, seq_len=16), TrainConfig())
        >>> out = model.validation_step({"tokens": torch.zeros(3, 17, dtype=torch.long),
        ...                              "__domain__": ["a", "b", "a"]}, 0)
        >>> out["loss_sum"].shape, out["n_tokens"].tolist()
        (torch.Size([3]), [16, 16, 16])
    """

    def __init__(self, cfg: GPTConfig | None = None, train_cfg: TrainConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or GPTConfig()
        self.train_cfg = train_cfg or TrainConfig()
        self.save_hyperparameters({"model": asdict(self.cfg), "train": asdict(self.train_cfg)})
        c = self.cfg
        self.tok_emb = nn.Embedding(c.vocab_size, c.d_model)
        self.pos_emb = nn.Embedding(c.seq_len, c.d_model)
        self.blocks = nn.ModuleList(_Block(c) for _ in range(c.n_layer))
        self.ln_f = nn.LayerNorm(c.d_model)
        # Tied output head: at d_model=32 an untied 256-way head would be a large share of N.
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=c.init_std)
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)
        for name, p in self.named_parameters():
            if name.endswith(("proj.weight", "fc_out.weight")):
                # GPT-2's scaled init of residual projections keeps depth from inflating
                # the residual stream at initialisation.
                nn.init.normal_(p, std=c.init_std / math.sqrt(2 * c.n_layer))

    def non_embedding_params(self) -> int:
        """Parameters outside the embeddings: the paper's N (and DomainLossLogger's default)."""
        emb = {id(p) for m in self.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
        return sum(p.numel() for p in self.parameters() if id(p) not in emb)

    @override
    def forward(self, idx: Tensor) -> Tensor:
        t = idx.shape[1]
        if t > self.cfg.seq_len:
            raise ValueError(f"sequence length {t} exceeds seq_len={self.cfg.seq_len}")
        pos = torch.arange(t, device=idx.device)
        x = self.tok_emb(idx) + self.pos_emb(pos)
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x) @ self.tok_emb.weight.T

    def _token_losses(self, tokens: Tensor) -> Tensor:
        """Per-token losses, shape (samples, scored tokens per sample).

        A sample may pack several sequences of ``seq_len + 1`` bytes (cheaper to read from
        shards than one tar member per sequence); they are unpacked into the batch here.
        """
        b, length = tokens.shape
        t = self.cfg.seq_len + 1
        if length % t:
            raise ValueError(
                f"samples of {length} bytes do not hold whole sequences of seq_len + 1 = {t}"
            )
        seqs = tokens.reshape(-1, t)
        logits = self(seqs[:, :-1])
        target = seqs[:, 1:]
        losses = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="none"
        )
        return losses.view(b, -1)

    @override
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        loss = self._token_losses(batch["tokens"]).mean()
        self.log("train/loss", loss, prog_bar=False, batch_size=batch["tokens"].shape[0])
        return loss

    @override
    def validation_step(
        self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0
    ) -> dict[str, Any]:
        # The contract of callbacks.DomainLossLogger: sums and counts per sample, so the
        # per-domain loss is token-weighted over the whole validation set, not a mean of means.
        losses = self._token_losses(batch["tokens"])
        n = torch.full((losses.shape[0],), losses.shape[1], dtype=torch.long, device=losses.device)
        out: dict[str, Any] = {"loss_sum": losses.sum(dim=1).float(), "n_tokens": n}
        if "__domain__" in batch:
            out["domain"] = list(batch["__domain__"])
        return out

    @override
    def configure_optimizers(self) -> Any:
        tc = self.train_cfg
        decay = [p for n, p in self.named_parameters() if p.dim() >= 2]
        no_decay = [p for n, p in self.named_parameters() if p.dim() < 2]
        opt = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": tc.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=tc.lr,
            betas=tc.betas,
        )
        sched = torch.optim.lr_scheduler.LambdaLR(opt, tc.lr_factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
