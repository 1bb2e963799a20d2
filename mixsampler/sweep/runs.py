"""The runs of a plan folder, and what each one's run folder says about it.

``mixsampler plan`` writes ``plan.csv`` and ``configs/<run>.yaml``; each config names its run
folder (``trainer.default_root_dir``, ``logs/<run>/``) and its run table (the
``DomainLossLogger``'s ``path``, ``runs/<run>.csv``). ``mixsampler train`` keeps three files in
the run folder, and the sweep reads only those, never the trainer's state:

- ``TRAIN.json``: the digest of the config a run was started with, so a resume under another
  config is refused instead of silently mixing two settings in one run table;
- ``checkpoints/last.ckpt``: where a killed run resumes from;
- ``DONE.json``: written atomically after ``fit`` returned at its end; a run is finished exactly
  when it exists and was written for the same config digest.

Every path of a plan folder (configs, run folders, run tables) must lie in that folder: the
paths ``mixsampler plan`` writes name the folder it wrote, so a copy (``cp -r plan plan2``)
would train the original's configs into the original's folders. Such a copy is refused,
naming the path and the folder it belongs to.

Example:
    >>> runs = read_plan_dir("sweep/")  # doctest: +SKIP
    >>> [run_status(r) for r in runs]  # doctest: +SKIP
    [<RunStatus.DONE: 'done'>, <RunStatus.PARTIAL: 'partial'>, <RunStatus.NEW: 'new'>]
"""

from __future__ import annotations

import csv
import enum
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "DONE_NAME",
    "MARKER_FORMAT",
    "RunStatus",
    "SweepRun",
    "config_digest",
    "last_checkpoint",
    "plan_folder_of",
    "plan_law",
    "read_done",
    "read_json_marker",
    "read_plan_dir",
    "run_status",
    "write_json_atomic",
]

DONE_NAME = "DONE.json"
TRAIN_NAME = "TRAIN.json"
LOG_NAME = "train.log"
MARKER_FORMAT = "mixsampler-train-done"


class RunStatus(str, enum.Enum):
    """Where a run stands, from its run folder alone."""

    NEW = "new"  # nothing trained yet
    PARTIAL = "partial"  # a checkpoint but no marker: killed or failed, resumes from it
    DONE = "done"  # DONE.json for this very config
    STALE = "stale"  # DONE.json for another config: neither skip nor retrain silently


@dataclass(frozen=True)
class SweepRun:
    """One run of a plan folder.

    Attributes:
        name: the run's name (``plan.csv``'s ``run`` column).
        config: its LightningCLI YAML.
        run_dir: ``trainer.default_root_dir`` of that config (checkpoints, markers, log).
        table: the run table its DomainLossLogger writes (None when it has none).
    """

    name: str
    config: Path
    run_dir: Path
    table: Path | None

    @property
    def log(self) -> Path:
        """The file a sweep sends this run's output to (every attempt appends)."""
        return self.run_dir / LOG_NAME

    @property
    def done_path(self) -> Path:
        return self.run_dir / DONE_NAME


def config_digest(config: str | os.PathLike[str], overrides: Sequence[str] = ()) -> str:
    """SHA-256 of a config's bytes and its command-line overrides: the identity of a run's setup.

    Example:
        >>> len(config_digest(__file__))
        64
    """
    h = hashlib.sha256(Path(config).read_bytes())
    for item in overrides:
        h.update(b"\0" + str(item).encode())
    return h.hexdigest()


def write_json_atomic(path: str | os.PathLike[str], data: dict[str, Any]) -> None:
    """Write strict JSON through a fsynced temporary file and a rename: all of it or nothing."""
    from mixsampler.atomic import atomic_write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def read_json_marker(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A JSON object the sweep wrote (``TRAIN.json``), or ``{}`` when there is none.

    Raises:
        ValueError: the file exists but is not a JSON object (naming it and the way out).
    """
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(
            f"{path}: not valid JSON ({err}); delete it to start the run over"
        ) from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object; delete it to start the run over")
    return data


def read_done(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The completion marker at ``path``, or None when there is none.

    Raises:
        ValueError: the file exists but is not a marker (naming the file and what is wrong).
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err}); delete it to train again") from None
    if not isinstance(data, dict) or data.get("format") != MARKER_FORMAT:
        raise ValueError(f"{path}: not a {MARKER_FORMAT!r} marker; delete it to train again")
    for key, kind in (("config_sha256", str), ("step", int)):
        if not isinstance(data.get(key), kind) or isinstance(data.get(key), bool):
            raise ValueError(
                f"{path}: field {key!r} must be {kind.__name__}, got {data.get(key)!r}"
            )
    return data


def last_checkpoint(run_dir: str | os.PathLike[str]) -> Path | None:
    """``<run_dir>/checkpoints/last.ckpt`` when it exists."""
    path = Path(run_dir) / "checkpoints" / "last.ckpt"
    return path if path.is_file() else None


def run_status(run: SweepRun) -> RunStatus:
    """Whether ``run`` is finished (for its current config), half done, or not started."""
    done = read_done(run.done_path)
    if done is not None:
        same = done["config_sha256"] == config_digest(run.config)
        return RunStatus.DONE if same else RunStatus.STALE
    return RunStatus.PARTIAL if last_checkpoint(run.run_dir) else RunStatus.NEW


def read_plan_dir(plan_dir: str | os.PathLike[str]) -> list[SweepRun]:
    """The runs of a folder written by ``mixsampler plan``, in ``plan.csv`` order.

    Raises:
        FileNotFoundError: no such folder, no ``plan.csv``, or a config it lists is missing.
        ValueError: ``plan.csv`` lacks a column, repeats a run, or a config is not a mapping
            with ``trainer.default_root_dir`` (each naming the file and row).
    """
    import yaml

    root = Path(plan_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"plan folder {str(root)!r} does not exist")
    table = root / "plan.csv"
    if not table.is_file():
        raise FileNotFoundError(
            f"{str(root)!r} is not a plan folder: it has no plan.csv (write one with mixsampler"
            " plan)"
        )
    with open(table, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"run", "config"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{table}: missing column(s) {sorted(missing)}")
        rows = list(reader)
    if not rows:
        raise ValueError(f"{table}: no runs")
    runs, seen = [], set()
    for i, row in enumerate(rows, start=2):
        name = row["run"]
        if not name or name in seen:
            raise ValueError(f"{table}, line {i}: run name {name!r} is empty or repeated")
        seen.add(name)
        config = Path(row["config"])
        if not config.is_file():
            # plan.csv and the configs hold paths as plan was given them: relative ones resolve
            # from where plan ran, and so must the sweep, or runs would land elsewhere.
            raise FileNotFoundError(
                f"{table}, line {i}: config {row['config']!r} does not exist (relative paths"
                " are relative to where mixsampler plan ran; run the sweep from there)"
            )
        cfg = yaml.safe_load(config.read_text()) or {}
        trainer = cfg.get("trainer") if isinstance(cfg, dict) else None
        root_dir = trainer.get("default_root_dir") if isinstance(trainer, dict) else None
        if not root_dir:
            raise ValueError(
                f"{config}: no trainer.default_root_dir; the sweep keeps each run's checkpoints"
                " and markers there (mixsampler plan writes it)"
            )
        run = SweepRun(name, config, Path(root_dir), _table_path(trainer))
        _check_in_plan(root, table, i, run)
        runs.append(run)
    dirs = [r.run_dir.resolve() for r in runs]
    if len(set(dirs)) != len(dirs):
        raise ValueError(f"{table}: two runs share a trainer.default_root_dir")
    return runs


def plan_folder_of(path: str | os.PathLike[str]) -> Path | None:
    """The nearest folder above ``path`` holding a ``plan.csv`` (resolved), or None."""
    for parent in Path(path).resolve().parents:
        if (parent / "plan.csv").is_file():
            return parent
    return None


def _check_in_plan(root: Path, table: Path, line: int, run: SweepRun) -> None:
    """Refuse a run whose config, run folder or run table belongs to another plan folder."""
    here = root.resolve()
    for what, path in (
        ("config", run.config),
        ("trainer.default_root_dir", run.run_dir),
        ("run table", run.table),
    ):
        if path is None:
            continue
        owner = plan_folder_of(path)
        if owner is not None and owner != here:
            raise ValueError(
                f"{table}, line {line}: run {run.name}'s {what} {str(path)!r} lies in the plan"
                f" folder {str(owner)!r}, not in {str(root)!r}: a copied plan folder would train"
                f" {owner}'s configs and write there. Run the sweep on {str(owner)!r}, or write"
                f" this plan with mixsampler plan -o {str(root)!r}"
            )


def plan_law(plan_dir: str | os.PathLike[str]) -> str | None:
    """The law a plan was sized for (``plan.csv``'s ``law`` column), when it says."""
    table = Path(plan_dir) / "plan.csv"
    try:
        with open(table, newline="") as f:
            laws = {row.get("law") or "" for row in csv.DictReader(f)} - {""}
    except OSError:
        return None
    return laws.pop() if len(laws) == 1 else None


def _table_path(trainer: dict[str, Any]) -> Path | None:
    callbacks = trainer.get("callbacks") or []
    for cb in callbacks if isinstance(callbacks, list) else [callbacks]:
        if isinstance(cb, dict) and str(cb.get("class_path", "")).endswith("DomainLossLogger"):
            path = (cb.get("init_args") or {}).get("path", "runs.csv")
            return Path(path) if path else None
    return None
