"""``mixsampler train``: one run of a plan through LightningCLI, resumable and marked when done.

The configs ``mixsampler plan`` writes name the model and the datamodule by ``class_path``, so
they run as they are; ``fit`` is implied. On top of the config, a run gets:

- a checkpoint at every validation, ``<run dir>/checkpoints/last.ckpt`` (the run dir is
  ``trainer.default_root_dir``), written through a temporary file and a rename, so a kill while
  saving leaves the previous checkpoint intact;
- an automatic resume from that checkpoint (Lightning's ``ckpt_path``) when it exists, refused
  when the config changed since the run started (``TRAIN.json`` holds its digest);
- ``DONE.json`` (step, max_steps, config digest), written atomically once ``fit`` returned at
  the end of training, so a sweep tells finished runs from killed ones;
- a lock on the run folder, so two processes never train one run at once;
- every ``class_path`` of the config imported before anything else, so a model or callback the
  trainer cannot import fails in a second with the module, the reason and the way out
  (:class:`ClassPathError`, exit status 3: the sweep stops, as every run would fail alike);
- a checkpoint that does not read (truncated, bit rot) renamed ``*.corrupt`` with a warning,
  and the run resumes from the newest good one (``step=N.ckpt``), or starts over.

Example:
    $ mixsampler train sweep/configs/proxy-1M-m03.yaml --trainer.max_steps=200
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mixsampler.sweep.runs import (
    DONE_NAME,
    MARKER_FORMAT,
    TRAIN_NAME,
    config_digest,
    read_done,
    read_json_marker,
    write_json_atomic,
)

__all__ = [
    "CLASS_PATH_EXIT",
    "SWEEP_PID_ENV",
    "ClassPathError",
    "TrainResult",
    "check_class_paths",
    "checkpoint_problem",
    "newest_good_checkpoint",
    "train",
]

#: exit status of ``mixsampler train`` when a class_path does not import: the sweep stops
CLASS_PATH_EXIT = 3


class ClassPathError(ImportError):
    """A ``class_path`` of a config that this Python cannot import (one line, names it)."""


#: set by the local sweep launcher to its pid: its trainers stop when it dies, even by SIGKILL
SWEEP_PID_ENV = "MIXSAMPLER_SWEEP_PID"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    """What one ``train`` call did.

    Attributes:
        finished: training reached its end (``DONE.json`` is written).
        step: the trainer's global step at the end.
        resumed_from: the checkpoint it resumed from, if any.
        skipped: the run was already finished; nothing was trained.
        run_dir: the run folder.
        message: one line for the user.
    """

    finished: bool
    step: int
    resumed_from: Path | None
    skipped: bool
    run_dir: Path
    message: str


def train(config: str | os.PathLike[str], overrides: Sequence[str] = ()) -> TrainResult:
    """Fit the model of a LightningCLI config, resuming from its last checkpoint.

    Args:
        config: a LightningCLI YAML (model and data by ``class_path``).
        overrides: LightningCLI arguments applied after it, e.g. ``--trainer.max_steps=10``.

    Returns:
        A :class:`TrainResult`; ``finished`` is False when training stopped early (interrupt).

    Raises:
        FileNotFoundError: ``config`` does not exist.
        ValueError: the config does not parse, or it changed since the run's checkpoint or
            marker was written (the message names both and the way out).
    """
    _die_with_sweep()
    config = Path(config)
    if not config.is_file():
        raise FileNotFoundError(f"config {str(config)!r} does not exist")
    check_class_paths(config)
    overrides = [str(o) for o in overrides]
    digest = config_digest(config, overrides)
    cli = _build_cli(config, overrides)
    trainer = cli.trainer
    run_dir = Path(trainer.default_root_dir)
    done = read_done(run_dir / DONE_NAME)
    if done is not None:
        if done["config_sha256"] != digest:
            raise ValueError(
                f"{run_dir / DONE_NAME}: this run finished under another config than {config}"
                f" {' '.join(overrides)}; its run table would mix two setups: restore that config,"
                f" or delete {run_dir} and the run's table to train it again"
            )
        return TrainResult(True, done["step"], None, True, run_dir, "already finished")
    with _run_lock(run_dir):
        ckpt = _check_resume(run_dir, config, digest, trainer)
        with warnings.catch_warnings():
            # A resume finds its own checkpoints there by design.
            warnings.filterwarnings("ignore", message="Checkpoint directory .* is not empty")
            trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt)
        step = int(trainer.global_step)
        if trainer.interrupted or trainer.state.status.value != "finished":
            return TrainResult(False, step, ckpt, False, run_dir, "stopped before its end")
        if trainer.is_global_zero:
            write_json_atomic(
                run_dir / DONE_NAME,
                {
                    "format": MARKER_FORMAT,
                    "version": 1,
                    "config": str(config),
                    "overrides": overrides,
                    "config_sha256": digest,
                    "step": step,
                    "max_steps": int(trainer.max_steps),
                    "resumed_from": None if ckpt is None else str(ckpt),
                    "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                },
            )
    resumed = f", resumed from {ckpt}" if ckpt else ""
    return TrainResult(True, step, ckpt, False, run_dir, f"finished at step {step}{resumed}")


def _die_with_sweep() -> None:
    """Stop (SIGTERM) when the local sweep that started this trainer dies.

    A sweep killed alone (``kill -9 <pid>``, not its process group) would otherwise leave its
    trainers running, and a restarted sweep would meet them on the same runs.
    """
    # Popped: the DDP ranks Lightning starts from this process have it, not the sweep, as parent.
    parent = os.environ.pop(SWEEP_PID_ENV, None)
    if not parent or not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM))
    if os.getppid() != int(parent):  # it died before the line above
        os.kill(os.getpid(), signal.SIGTERM)


def check_class_paths(config: str | os.PathLike[str]) -> list[str]:
    """Import every dotted ``class_path`` of a LightningCLI YAML; return them.

    Run before the CLI is built, so a module missing in the trainer's environment is one line
    naming the config, the key and the module, not a jsonargparse error about a type.

    Raises:
        ClassPathError: a class_path whose module does not import or lacks the class.
        ValueError: the file is not YAML.
    """
    import importlib

    import yaml

    config = Path(config)
    try:
        cfg = yaml.safe_load(config.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"{config}: not valid YAML ({' '.join(str(err).split())})") from None
    found: list[tuple[str, str]] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            cp = node.get("class_path")
            if isinstance(cp, str) and "." in cp:
                found.append((where or "class_path", cp))
            for k, v in node.items():
                walk(v, f"{where}.{k}" if where else str(k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{where}[{i}]")

    walk(cfg, "")
    for where, cp in found:
        module, _, name = cp.rpartition(".")
        try:
            obj = importlib.import_module(module)
            if not hasattr(obj, name):
                raise AttributeError(f"module {module!r} has no {name!r}")
        except Exception as err:  # any failure to import is the same answer: not runnable here
            path = os.environ.get("PYTHONPATH", "")
            raise ClassPathError(
                f"{config}: {where}: class_path {cp!r} does not import in this Python"
                f" ({type(err).__name__}: {' '.join(str(err).split())}); install its package,"
                " put its module in the plan folder (the sweep adds it to PYTHONPATH) or add its"
                f" folder to PYTHONPATH (now {path!r})"
            ) from None
    return [cp for _, cp in found]


def checkpoint_problem(path: str | os.PathLike[str]) -> str | None:
    """Why a checkpoint would not load (truncated, not a zip, a CRC error), or None when it reads.

    torch saves checkpoints as zip archives with a CRC per member; checking them reads the file
    once without unpickling anything (a truncated ``last.ckpt`` otherwise fails deep in
    ``torch.load`` as ``OSError: [Errno 22] Invalid argument``).
    """
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        return f"not a readable checkpoint ({' '.join(str(err).split())})"
    return None if bad is None else f"member {bad!r} fails its CRC check"


def newest_good_checkpoint(run_dir: str | os.PathLike[str], *, rename: bool = True) -> Path | None:
    """``last.ckpt``, or the newest ``step=N.ckpt`` that reads; bad ones renamed ``*.corrupt``.

    Each checkpoint that does not read is renamed (kept for inspection, never picked again) with
    a warning naming it and the one resumed from instead. ``rename=False`` (the other ranks of
    a multi-GPU run) picks the same checkpoint and leaves the files to rank zero.
    """
    import re

    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return None

    def step(p: Path) -> int:
        m = re.fullmatch(r"step=(\d+)\.ckpt", p.name)
        return int(m.group(1)) if m else -1

    candidates = [folder / "last.ckpt"] if (folder / "last.ckpt").is_file() else []
    candidates += sorted(
        (p for p in folder.glob("step=*.ckpt") if step(p) >= 0), key=step, reverse=True
    )
    bad: list[str] = []
    for ckpt in candidates:
        problem = checkpoint_problem(ckpt)
        if problem is None:
            if bad:
                warnings.warn(
                    f"{'; '.join(bad)}; resuming from {ckpt}", RuntimeWarning, stacklevel=2
                )
            return ckpt
        corrupt = ckpt.with_name(ckpt.name + ".corrupt")
        if not rename:
            continue
        os.replace(ckpt, corrupt)
        bad.append(f"{ckpt}: {problem}, renamed {corrupt.name}")
    if bad:
        warnings.warn(
            f"{'; '.join(bad)}; no good checkpoint left: the run starts over",
            RuntimeWarning,
            stacklevel=2,
        )
    return None


def _check_resume(run_dir: Path, config: Path, digest: str, trainer: Any) -> Path | None:
    """The checkpoint to resume from, after checking it was made under this very config."""
    started = run_dir / TRAIN_NAME
    before = read_json_marker(started)
    ckpt = newest_good_checkpoint(run_dir, rename=_rank_zero())
    if ckpt is None:
        if before.get("config_sha256") == digest:
            _drop_rows_of_dead_attempt(trainer)
        write_json_atomic(started, {"config": str(config), "config_sha256": digest})
        return None
    if before.get("config_sha256") != digest:
        raise ValueError(
            f"{ckpt} was written under another config than {config} (digest in {started}:"
            f" {before.get('config_sha256')!r}, now {digest!r}); resuming would keep the"
            f" checkpoint's state under new settings: restore that config, or delete {run_dir}"
            " to start this run over"
        )
    log.info("resuming %s from %s", run_dir.name, ckpt)
    return ckpt


def _drop_rows_of_dead_attempt(trainer: Any) -> None:
    """Drop the rows of an attempt of this very config that died before its first checkpoint.

    A kill between a validation's row and the checkpoint after it leaves rows that no
    checkpoint covers; this start from scratch measures them again. (Rows of another config
    are not touched: DomainLossLogger refuses to mix them, and the user decides.)
    """
    import csv

    from mixsampler.callbacks import DomainLossLogger
    from mixsampler.laws.runtable_writer import RunTableWriter

    for cb in trainer.callbacks:
        if not isinstance(cb, DomainLossLogger) or cb.path is None or cb.run is None:
            continue
        if not trainer.is_global_zero or not cb.path.is_file() or cb.path.stat().st_size == 0:
            continue
        with open(cb.path, newline="") as f:
            header = next(csv.reader(f), [])
        dropped = RunTableWriter(cb.path, header).truncate_after(cb.run, -1)
        if dropped:
            log.warning(
                "%s: dropped %d rows of run %r from an attempt that died before its first"
                " checkpoint; this attempt writes them again",
                cb.path,
                dropped,
                cb.run,
            )


def _rank_zero() -> bool:
    # Read from the environment: the trainer's strategy has not set its ranks up before fit.
    return all(os.environ.get(k, "0") == "0" for k in ("LOCAL_RANK", "RANK", "SLURM_PROCID"))


@contextmanager
def _run_lock(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the run folder (rank zero only; other ranks share its run)."""
    if not _rank_zero():
        yield
        return
    import fcntl

    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "train.lock"
    with open(path, "a") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(
                f"{run_dir} is being trained by another process (it holds {path}); wait for it"
                " or stop it (on SLURM: scancel the earlier sweep's jobs) before starting again"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _build_cli(config: Path, overrides: list[str]) -> Any:
    from jsonargparse import ArgumentError
    from lightning.pytorch.cli import LightningCLI

    class _TrainCLI(LightningCLI):
        def before_instantiate_classes(self) -> None:
            trainer = self.config["trainer"]
            root = trainer.get("default_root_dir") or os.getcwd()
            if trainer.get("enable_checkpointing") is False:
                log.warning(
                    "%s: trainer.enable_checkpointing=false is overridden: mixsampler train"
                    " checkpoints every validation so that a killed run resumes",
                    config,
                )
            trainer["enable_checkpointing"] = True
            trainer["default_root_dir"] = str(root)
            self.trainer_defaults["callbacks"] = [_checkpoint_callback(Path(root) / "checkpoints")]

    try:
        with warnings.catch_warnings():
            # The CLI's own argv (``mixsampler train CONFIG``) is not LightningCLI's to parse.
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
            return _TrainCLI(
                args=["--config", str(config), *overrides],
                run=False,
                save_config_callback=None,
                parser_kwargs={"exit_on_error": False},
            )
    except ArgumentError as err:
        raise ValueError(f"{config}: {' '.join(str(err).split())}") from None


def _checkpoint_callback(dirpath: Path) -> Any:
    from lightning.pytorch.callbacks import ModelCheckpoint

    class _AtomicCheckpoint(ModelCheckpoint):
        """Every save goes to a temporary file first, then replaces the old one by a rename."""

        def _save_checkpoint(self, trainer: Any, filepath: str) -> None:
            partial = f"{filepath}.partial"
            super()._save_checkpoint(trainer, partial)
            if trainer.is_global_zero:
                os.replace(partial, filepath)
            self._last_checkpoint_saved = filepath

    # save_top_k=1 without a monitor keeps the newest step-stamped file; save_last copies it to
    # last.ckpt, the one name a resume looks for. No version counter: always overwrite.
    return _AtomicCheckpoint(
        dirpath=str(dirpath),
        filename="step={step}",
        auto_insert_metric_name=False,
        save_top_k=1,
        save_last=True,
        enable_version_counter=False,
    )
