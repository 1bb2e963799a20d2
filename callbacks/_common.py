"""Helpers shared by the callbacks: counting N, finding the mixture sampler of a run."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

MODEL_SIZE_MODES: tuple[str, ...] = ("non_embedding", "total")


def check_model_size(model_size: Any) -> int | str:
    """Validate a ``model_size`` argument: a positive int, or one of :data:`MODEL_SIZE_MODES`."""
    if isinstance(model_size, bool):
        pass
    elif isinstance(model_size, int) and model_size > 0:
        return model_size
    elif isinstance(model_size, float) and model_size > 0 and model_size.is_integer():
        return int(model_size)
    elif model_size in MODEL_SIZE_MODES:
        return model_size
    raise ValueError(
        f"model_size can be {', '.join(MODEL_SIZE_MODES)} or a positive int, got {model_size!r}"
    )


def check_weights(weights: Any, name: str) -> dict[str, float]:
    """Validate a domain -> weight mapping (finite, >= 0, not all 0); return it as floats.

    Example:
        >>> check_weights({"a": 3, "b": 1}, "weights")
        {'a': 3.0, 'b': 1.0}
    """
    if not isinstance(weights, Mapping) or not weights:
        raise ValueError(f"{name} must map domain names to weights, got {weights!r}")
    out = {}
    for d, w in weights.items():
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise ValueError(f"{name}[{d!r}] must be a finite number >= 0, got {w!r}")
        out[str(d)] = float(w)
    if sum(out.values()) <= 0:
        raise ValueError(f"{name} must have a positive weight, got {dict(weights)}")
    return out


def count_parameters(module: nn.Module, mode: int | str = "non_embedding") -> int:
    """N of a model: its parameter count, without embedding tables by default.

    The paper's public table reports non-embedding parameters (Kaplan et al.'s convention): the
    weights of ``nn.Embedding``/``nn.EmbeddingBag`` modules are left out, and so is an output
    layer tied to them (shared parameters are counted once, as the same tensor). ``"total"``
    counts everything; an int is returned as given.

    Example:
        >>> m = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 2))
        >>> count_parameters(m), count_parameters(m, "total")
        (10, 50)
    """
    if isinstance(mode, int):
        return mode
    params = {id(p): p for p in module.parameters()}
    if mode == "non_embedding":
        for sub in module.modules():
            if isinstance(sub, (nn.Embedding, nn.EmbeddingBag)):
                for p in sub.parameters(recurse=False):
                    params.pop(id(p), None)
    return int(sum(p.numel() for p in params.values()))


def find_mixture_dataset(trainer: Any) -> Any | None:
    """The training dataset of ``trainer`` when it is a mixture sampler (has ``set_weights``).

    Looked up on the datamodule first (``train_dataset``, set when it is built), then on the
    train dataloader Lightning holds; None when there is none (yet).
    """
    dm = getattr(trainer, "datamodule", None)
    ds = getattr(dm, "train_dataset", None) if dm is not None else None
    if _is_mixture(ds):
        return ds
    # None until the fit loop has built its loaders (Lightning 2.x returns None, no error).
    loader = getattr(trainer, "train_dataloader", None)
    if loader is None:
        source = getattr(getattr(trainer, "fit_loop", None), "_data_source", None)
        instance = getattr(source, "instance", None)
        if isinstance(instance, torch.utils.data.DataLoader):
            loader = instance
    for candidate in (loader, *(loader.values() if isinstance(loader, dict) else ())):
        ds = getattr(candidate, "dataset", None)
        if _is_mixture(ds):
            return ds
    return None


def counts_samples(trainer: Any) -> bool:
    """Whether the mixture is in samples by the user's choice (``unit="samples"``).

    The mixture dataset's unit, else the datamodule's (a validate-only run has no dataset).
    """
    ds = find_mixture_dataset(trainer)
    unit = getattr(ds, "unit", None)
    if unit is None:
        unit = getattr(getattr(trainer, "datamodule", None), "unit", None)
    return unit == "samples"


def _is_mixture(ds: Any) -> bool:
    return ds is not None and callable(getattr(ds, "set_weights", None)) and hasattr(ds, "weights")
