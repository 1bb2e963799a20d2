"""Per-sample decode and transform on the resumable path, seeded so a resume repeats them.

``MixtureDataModule(transform=..., val_transform=...)`` runs a callable on every sample inside
the sampler (in the DataLoader worker, before ``collate_fn``): the place of webdataset's
``.decode("rgb").to_tuple("png", "cls").map(augment)``. Random augmentations are exact on
resume: each call runs with torch's, numpy's and ``random``'s global generators seeded from
the sample's place in the stream (the sampler seed, the worker slot, the domain and how many
samples that slot has drawn from it, all part of the checkpointed state), and the generators'
states are put back afterwards, so the caller's randomness is untouched.

Building blocks (compose them with :class:`Compose`):

- :class:`Decode`: webdataset's decoders on the tar members (``"rgb"``, ``"torchrgb"``,
  ``"pil"``, ...; ``.npy``, ``.cls``, ``.json`` and ``.txt`` are decoded by default);
- :class:`ToTuple`: the named members as a tuple, webdataset's ``to_tuple``;
- any callable ``sample -> sample`` (a torchvision transform on the image, for instance).

Example:
    >>> import numpy as np
    >>> t = Compose([ToTuple("x", "cls"), lambda s: (s[0] + np.random.rand(), s[1])])
    >>> with_seed(t, {"x": 1.0, "cls": 3}, 7) == with_seed(t, {"x": 1.0, "cls": 3}, 7)
    True
    >>> with_seed(t, {"x": 1.0, "cls": 3}, 7) == with_seed(t, {"x": 1.0, "cls": 3}, 8)
    False
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["Compose", "Decode", "ToTuple", "sample_seed", "with_seed"]


def sample_seed(seed: int, slot: int, domain: int, index: int) -> int:
    """A 32-bit seed for one sample: independent across seeds, slots, domains and indices.

    Example:
        >>> sample_seed(0, 0, 0, 0) == sample_seed(0, 0, 0, 0) != sample_seed(0, 0, 0, 1)
        True
    """
    return int(np.random.SeedSequence([seed, slot, domain, index]).generate_state(1)[0])


def with_seed(transform: Callable[[Any], Any], sample: Any, seed: int) -> Any:
    """``transform(sample)`` with the global generators seeded by ``seed``, then restored."""
    torch_state = torch.random.get_rng_state()
    np_state = np.random.get_state()
    py_state = random.getstate()
    try:
        # The CPU generator only: torch.manual_seed also seeds every accelerator's generators,
        # 0.2 ms a call, and a transform in a DataLoader worker draws on the CPU.
        torch.default_generator.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)
        return transform(sample)
    finally:
        torch.random.set_rng_state(torch_state)
        np.random.set_state(np_state)
        random.setstate(py_state)


class Compose:
    """Apply callables in order (a class, not a closure: spawned workers pickle it)."""

    def __init__(self, steps: Sequence[Callable[[Any], Any]]) -> None:
        steps = list(steps)
        for i, step in enumerate(steps):
            if not callable(step):
                raise ValueError(f"Compose: steps[{i}] is not callable, got {step!r}")
        self.steps = steps

    def __call__(self, sample: Any) -> Any:
        for step in self.steps:
            sample = step(sample)
        return sample


class Decode:
    """webdataset's decoders on a shard sample's members (raw bytes by extension).

    Args:
        *handlers: what ``webdataset.decode`` takes: an image spec (``"rgb"``, ``"torchrgb"``,
            ``"pil"``, ``"l"``, ...) or a handler function; the defaults decode ``npy``,
            ``cls``, ``json``, ``txt`` and friends.

    Example:
        >>> Decode()({"cls": b"3", "__key__": "k"})["cls"]
        3
    """

    def __init__(self, *handlers: str | Callable) -> None:
        import webdataset as wds

        built = [wds.imagehandler(h) if isinstance(h, str) else h for h in handlers]
        self.handlers = handlers
        self.decoder = wds.autodecode.Decoder(built)

    def __call__(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(sample, Mapping):
            raise ValueError(
                f"Decode needs a shard sample (a dict of tar members), got {type(sample).__name__}"
            )
        try:
            return self.decoder(dict(sample))
        except Exception as err:
            where = f"{sample.get('__url__', '?')}, key {sample.get('__key__', '?')!r}"
            raise ValueError(f"Decode{self.handlers!r} failed on {where}: {err}") from err


class ToTuple:
    """The named members of a sample as a tuple (webdataset's ``to_tuple``).

    A name may list alternatives separated by ``;`` (``"png;jpg"``: the first present).

    Example:
        >>> ToTuple("x", "png;jpg")({"x": 1, "jpg": 2})
        (1, 2)
    """

    def __init__(self, *names: str) -> None:
        if not names or not all(isinstance(n, str) and n for n in names):
            raise ValueError(f"ToTuple needs member names, got {names!r}")
        self.names = names

    def __call__(self, sample: Mapping[str, Any]) -> tuple[Any, ...]:
        out = []
        for name in self.names:
            for alt in name.split(";"):
                if alt in sample:
                    out.append(sample[alt])
                    break
            else:
                where = f"{sample.get('__url__', '?')}, key {sample.get('__key__', '?')!r}"
                have = sorted(k for k in sample if not k.startswith("__"))
                raise ValueError(f"ToTuple: no member {name!r} in {where}; it has {have}")
        return tuple(out)
