"""MixtureDataModule: exact mid-epoch resume through Lightning, per-domain validation loaders."""

from __future__ import annotations

import itertools
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from tiny_lm import QUIET_TRAINER, TinyLM, write_domain_shards

from mixsampler import MixtureDataModule, MixtureDataset
from mixsampler.datamodule import MixtureCollate, MixtureLoader, ValidationLoader, ValidationStream


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return write_domain_shards(tmp_path_factory.mktemp("shards"), 40)


def _dm(shards: dict[str, str], num_workers: int, **kw) -> MixtureDataModule:
    return MixtureDataModule(
        shards,
        {"a": 0.75, "b": 0.25},
        batch_size=3,
        num_workers=num_workers,
        collate_fn="tiny_lm.collate_bytes",
        shuffle_buffer=4,
        **kw,
    )


@pytest.mark.parametrize("num_workers", [0, 2])
def test_mid_epoch_resume_reproduces_the_uninterrupted_batches(
    shards: dict[str, str], tmp_path: Path, num_workers: int
) -> None:
    torch.set_num_threads(1)
    full = TinyLM()
    pl.seed_everything(0)
    pl.Trainer(max_steps=8, enable_checkpointing=False, **QUIET_TRAINER).fit(
        full, datamodule=_dm(shards, num_workers)
    )
    first = TinyLM()
    ck = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=3, save_top_k=-1)
    pl.Trainer(max_steps=3, callbacks=[ck], **QUIET_TRAINER).fit(
        first, datamodule=_dm(shards, num_workers)
    )
    rest = TinyLM()
    pl.Trainer(max_steps=8, enable_checkpointing=False, **QUIET_TRAINER).fit(
        rest, datamodule=_dm(shards, num_workers), ckpt_path=str(tmp_path / "epoch=0-step=3.ckpt")
    )
    assert len(full.train_keys) == 8
    assert first.train_keys + rest.train_keys == full.train_keys


def test_without_the_lookahead_lightning_would_skip_a_batch(
    shards: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Why MixtureLoader reports the state from before the last fetched batch: Lightning fetches
    # one batch ahead, and a plain StatefulDataLoader's state already includes it.
    monkeypatch.setitem(MixtureLoader.__init__.__kwdefaults__, "lookahead", 0)
    full, first, rest = TinyLM(), TinyLM(), TinyLM()
    pl.Trainer(max_steps=5, enable_checkpointing=False, **QUIET_TRAINER).fit(
        full, datamodule=_dm(shards, 0)
    )
    ck = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=2, save_top_k=-1)
    pl.Trainer(max_steps=2, callbacks=[ck], **QUIET_TRAINER).fit(first, datamodule=_dm(shards, 0))
    pl.Trainer(max_steps=4, enable_checkpointing=False, **QUIET_TRAINER).fit(
        rest, datamodule=_dm(shards, 0), ckpt_path=str(tmp_path / "epoch=0-step=2.ckpt")
    )
    assert first.train_keys + rest.train_keys == full.train_keys[:2] + full.train_keys[3:5]


def test_domains_and_tokens_travel_beside_the_batch_not_in_it(shards: dict[str, str]) -> None:
    dm = _dm(shards, 0)
    dm.setup("fit")
    loader = dm.train_dataloader()
    it = iter(loader)
    first, second = next(it), next(it)  # one ahead, as Lightning fetches
    assert set(first) == {"x", "mask", "__domain__", "__key__"}  # the user's collate's keys only
    meta = loader.meta_for(1)
    assert sorted(meta.domains) == sorted(first["__domain__"]) and meta.ntok == (16, 16, 16)
    assert loader.meta_for(1) is meta  # asked again about the same batch: the same answer
    assert list(loader.meta_for(2).domains) == second["__domain__"]


@pytest.mark.parametrize("world_size,num_workers", [(1, 0), (2, 0), (2, 2), (3, 2)])
def test_validation_streams_split_ranks_and_workers_without_duplicates(
    shards: dict[str, str], world_size: int, num_workers: int
) -> None:
    collate = MixtureCollate(None, None)
    for source, n in (
        (shards["a"], 40),
        ([shards["a"] + "/a-000000.tar"], 8),
        ([{"i": i} for i in range(11)], 11),
    ):
        seen: list = []
        for rank in range(world_size):
            ds = ValidationStream("a", source, rank=rank, world_size=world_size)
            loader = ValidationLoader(ds, batch_size=4, num_workers=num_workers, collate_fn=collate)
            for batch in loader:
                assert set(batch["__domain__"]) == {"a"}
                seen += batch["__key__"] if "__key__" in batch else batch["i"].tolist()
        assert len(seen) == len(set(seen)) == n


def test_val_dataloader_reads_each_domain_in_batches_of_one_domain(
    shards: dict[str, str],
) -> None:
    dm = MixtureDataModule(shards, val={"b": shards["b"], "held_out": shards["a"]}, batch_size=6)
    dm.setup("fit")
    loader = dm.val_dataloader()
    domains = []
    for i, batch in enumerate(loader):
        meta = loader.meta_for(i)
        assert len(set(meta.domains)) == 1 and meta.domains[0] == batch["__domain__"][0]
        domains += meta.domains
    assert dm.val_domains == ("b", "held_out")
    assert domains == ["b"] * 40 + ["held_out"] * 40  # one finite pass of each, in turn
    assert dm.weights == {"a": 0.5, "b": 0.5}


def test_each_rank_restores_its_own_loader_state(shards: dict[str, str]) -> None:
    # What Lightning does with two ranks: rank zero's checkpoint holds every rank's state
    # (gathered in state_dict), and each rank's loader picks its own on load.
    def loader(rank: int) -> MixtureLoader:
        ds = MixtureDataset(shards, {"a": 0.5, "b": 0.5}, rank=rank, world_size=2)
        return MixtureLoader(
            ds,
            batch_size=2,
            rank=rank,
            world_size=2,
            lookahead=0,
            collate_fn=MixtureCollate(None, None),
        )

    full = [[b["__key__"] for b in itertools.islice(loader(r), 6)] for r in (0, 1)]
    states = []
    for r in (0, 1):
        first = loader(r)
        it = iter(first)
        [next(it) for _ in range(3)]
        states.append(first.state_dict())
    for r in (0, 1):
        resumed = loader(r)
        resumed.load_state_dict({"mixsampler_ranks": states})
        rest = [b["__key__"] for b in itertools.islice(resumed, 3)]
        assert rest == full[r][3:]
    with pytest.raises(ValueError, match="saved by 2 ranks, this run has world_size=3"):
        MixtureLoader([], world_size=3).load_state_dict({"mixsampler_ranks": states})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
        ({"unit": "bytes"}, "unit can be samples, tokens, got 'bytes'"),
        ({"collate_fn": "no.such.module.fn"}, "collate_fn='no.such.module.fn' cannot be imported"),
        ({"weights": {"a": 1.0, "zzz": 1.0}}, r"unknown domains \['zzz'\]"),
        ({"weights": {"a": -1.0, "b": 1.0}}, r"weights\['a'\] must be a finite number >= 0"),
        ({"prefetch_factor": 2}, "prefetch_factor=2 needs num_workers > 0"),
        ({"exhaustion": "loop"}, "exhaustion can be repeat, stop, error, got 'loop'"),
        ({"val": {"c": "/nonexistent/c-000000.tar"}}, "domain 'c': shard /nonexistent"),
    ],
)
def test_constructor_validates(shards: dict[str, str], kwargs: dict, match: str) -> None:
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        MixtureDataModule(shards, **kwargs)


@pytest.mark.parametrize(("saved", "now"), [(2, 0), (0, 2)])
def test_resume_with_another_worker_count_names_both_counts(
    shards: dict[str, str], saved: int, now: int
) -> None:
    def loader(num_workers: int) -> MixtureLoader:
        dataset = MixtureDataset(shards, {"a": 0.75, "b": 0.25}, shuffle_buffer=4)
        return MixtureLoader(dataset, batch_size=3, num_workers=num_workers, lookahead=0)

    first = loader(saved)
    it = iter(first)
    next(it)
    state = first.state_dict()
    del it
    with pytest.raises(ValueError, match=f"num_workers={saved}.*num_workers={now}"):
        loader(now).load_state_dict(state)


def test_validation_data_given_as_texts_is_data_not_shard_names(shards: dict[str, str]) -> None:
    # The rule of mixsampler.sources decides, for training and validation alike: a list of
    # texts is data (it used to be read as missing shard files, at setup).
    texts = ["text one", "text two", "text three"]
    dm = MixtureDataModule(shards, val={"c": texts, "a": shards["a"]}, batch_size=2)
    dm.setup("fit")
    loader = dm.val_dataloader()
    got = []
    for i, batch in enumerate(loader):
        if loader.meta_for(i).domains[0] == "c":
            got += batch  # default_collate keeps a list of strings
    assert got == texts
    with pytest.raises(FileNotFoundError, match="domain 'c'"):
        MixtureDataModule(shards, val={"c": ["missing-000000.tar"]})
