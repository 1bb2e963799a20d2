"""Two CPU processes (DDP, gloo) give the same per-domain losses as one, and share no sample."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import ddp_job
import pytest
import torch
from tiny_lm import HERE_DIR, write_tar_shards


def _run(tmp_path: Path, root: Path, devices: int) -> Path:
    out = tmp_path / f"out{devices}"
    out.mkdir()
    if devices == 1:
        ddp_job.run(1, out, root)  # the reference, in this process
        return out
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([HERE_DIR, os.getcwd()])}
    env.pop("LOCAL_RANK", None)
    log = open(out / "log.txt", "w")
    # Its own session, so a hang can be ended with the rank processes Lightning starts.
    proc = subprocess.Popen(
        [sys.executable, ddp_job.__file__, str(devices), str(out), str(root)],
        env=env,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    try:
        proc.wait(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == 0, (out / "log.txt").read_text()[-3000:]
    return out


def test_ddp_matches_one_process_and_ranks_share_no_sample(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for d in "ab":
        write_tar_shards(root / d, d, 32, per_shard=4)
    # Uneven validation sets: rank 0 gets more batches of "a" than rank 1, and "b" is one shard
    # (fewer shards than ranks), so the ranks split it sample by sample.
    write_tar_shards(root / "val_a", "a", 11, per_shard=4, length=9)
    write_tar_shards(root / "val_b", "b", 7, per_shard=7, length=13)
    write_tar_shards(root / "val_c", "c", 5, per_shard=2, length=7)
    (root / "WEIGHTS.json").write_text(json.dumps({"weights": {"a": 0.5, "b": 0.5}}))

    one = _run(tmp_path, root, 1)
    two = _run(tmp_path, root, 2)
    (row1,) = list(csv.DictReader(open(one / "runs.csv")))
    (row2,) = list(csv.DictReader(open(two / "runs.csv")))
    for d in "abc":
        assert float(row2[f"{d}_loss"]) == pytest.approx(float(row1[f"{d}_loss"]), rel=1e-12)
    # D sums over ranks: 2 steps x 2 samples x 16 tokens per rank.
    assert int(row1["n_tokens"]) == 64 and int(row2["n_tokens"]) == 128
    assert row2["weight_a"] == row1["weight_a"] == "0.5"

    ranks = [json.loads((two / f"rank{r}.json").read_text()) for r in (0, 1)]
    val = [k for r in ranks for k in r["val_keys"]]
    assert len(val) == len(set(val)) == 11 + 7 + 5
    assert sorted(val) == sorted(json.loads((one / "rank0.json").read_text())["val_keys"])
    assert len(ranks[0]["val_keys"]) != len(ranks[1]["val_keys"])
    train = [k for r in ranks for batch in r["train_keys"] for k in batch]
    assert len(train) == len(set(train)) == 8
    for r in ranks:  # the weights reached the first batch on every rank
        assert sorted(r["train_domains"][0]) == ["a", "b"]

    ckpt = torch.load(next((two / "ck").glob("*.ckpt")), weights_only=False)
    (loader_state,) = ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert len(loader_state["mixsampler_ranks"]) == 2  # each rank can restore its own stream
    (logger_state,) = [v for k, v in ckpt["callbacks"].items() if "DomainLossLogger" in k]
    assert sum(logger_state["tokens"].values()) == 128
