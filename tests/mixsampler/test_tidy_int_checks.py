"""Every integer argument goes through ``mixsampler.checks.check_int``: ``True`` is an ``int``
to Python, never a count to a user, so each refuses a bool with the argument named and the
value echoed (``max_workers=True`` was one worker, ``rank=True`` rank 1), and a float too."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from mixsampler.collate import TokenWindows
from mixsampler.datamodule import MixtureDataModule
from mixsampler.dataset import MixtureDataset
from mixsampler.loader import MixtureLoader
from mixsampler.sweep.slurm import SlurmOptions


def _dataset(**kwargs: Any) -> MixtureDataset:
    return MixtureDataset({"a": range(3), "b": range(3)}, {"a": 1, "b": 1}, **kwargs)


def _datamodule(**kwargs: Any) -> MixtureDataModule:
    return MixtureDataModule({"a": range(3)}, {"a": 1}, **kwargs)


CASES: list[tuple[str, Callable[..., Any], dict[str, Any], str]] = [
    ("max_workers", _dataset, {"max_workers": True}, "max_workers"),
    ("world_size", _dataset, {"world_size": True, "rank": 0}, "world_size"),
    ("rank", _dataset, {"world_size": 2, "rank": True}, "rank"),
    ("dataset seed", _dataset, {"seed": True}, "seed"),
    ("batch_size", _datamodule, {"batch_size": True}, "batch_size"),
    ("val_batch_size", _datamodule, {"val_batch_size": True}, "val_batch_size"),
    ("shuffle_buffer", _datamodule, {"shuffle_buffer": True}, "shuffle_buffer"),
    (
        "prefetch_factor",
        _datamodule,
        {"num_workers": 1, "prefetch_factor": True},
        "prefetch_factor",
    ),
    ("seq_len", TokenWindows, {"seq_len": True}, "seq_len"),
    ("max_windows", lambda **kw: TokenWindows(8, **kw), {"max_windows": True}, "max_windows"),
    ("slurm time", SlurmOptions, {"time_min": True}, "--time"),
    ("slurm gpus", SlurmOptions, {"gpus": True}, "--gpus"),
]


@pytest.mark.parametrize(
    ("make", "kwargs", "name"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_a_bool_is_not_a_count(make: Callable[..., Any], kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=rf"^{name} must be an integer .*got True$"):
        make(**kwargs)


@pytest.mark.parametrize(
    ("make", "arg", "value", "name"),
    [
        (_dataset, "max_workers", 2.0, "max_workers"),
        (SlurmOptions, "time_min", 30.5, "--time"),
        (SlurmOptions, "cpus", 4.0, "--cpus"),
    ],
)
def test_a_float_is_not_a_count(
    make: Callable[..., Any], arg: str, value: float, name: str
) -> None:
    with pytest.raises(ValueError, match=rf"^{name} must be an integer .*got {value}$"):
        make(**{arg: value})


def test_loader_lookahead_refuses_a_bool() -> None:
    with pytest.raises(ValueError, match=r"^lookahead must be an integer >= 0, got True$"):
        MixtureLoader(_dataset(), lookahead=True)


def test_rank_names_the_allowed_range() -> None:
    with pytest.raises(ValueError, match=r"rank must be an integer in \[0, 1\], got 2"):
        _dataset(world_size=2, rank=2)


def test_in_range_counts_still_pass() -> None:
    ds = _dataset(max_workers=2, world_size=2, rank=1, seed=0)
    assert ds.world_size == 2 and ds.rank == 1
    assert SlurmOptions(time_min=30, gpus=0, cpus=4).gpus == 0
