"""Shared test configuration."""

from __future__ import annotations

import os

# Deterministic, quiet test runs on a 2-core machine.
os.environ.setdefault("PYTHONHASHSEED", "0")

from collections.abc import Callable, Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from mixsampler.threads import BLAS_THREAD_VARS  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PUBLIC_DATA_ENV = "MIXSAMPLER_PUBLIC_DATA"


def public_data_dirs() -> list[Path]:
    """Where the public run tables may be: ``$MIXSAMPLER_PUBLIC_DATA`` alone when it is set,
    else ``shared/data`` beside the checkout or beside any folder above it (a clone at
    ``/work/repo`` and a worktree at ``/work/wt/name`` both find ``/work/shared/data``)."""
    if os.environ.get(PUBLIC_DATA_ENV):
        return [Path(os.environ[PUBLIC_DATA_ENV])]
    return [parent / "shared" / "data" for parent in REPO.parents]


@pytest.fixture
def public_table() -> Callable[[str], Path]:
    """``public_table("dmsl_slimpajama")`` -> the table's path, or skip saying where it looked.

    The tables (see shared/data/README.md) are other people's published runs; they are never
    copied into the repository, so a test that needs one is skipped, not failed, without it.
    """

    def find(name: str) -> Path:
        file = name if name.endswith((".csv", ".jsonl")) else f"{name}.csv"
        dirs = public_data_dirs()
        for folder in dirs:
            if (folder / file).is_file():
                return folder / file
        where = str(dirs[0]) if len(dirs) == 1 else f"shared/data beside {REPO} or above it"
        pytest.skip(
            f"public run table {file} not found in {where}; set {PUBLIC_DATA_ENV} to the folder"
            " holding it (see shared/data/README.md)"
        )

    return find


@pytest.fixture(autouse=True)
def _keep_blas_environment() -> Iterator[None]:
    """``mixsampler fit``/``optimize`` run in-process pin BLAS threads in ``os.environ``; put the
    variables back so a later test's subprocesses see the session's own settings."""
    saved = {var: os.environ.get(var) for var in BLAS_THREAD_VARS}
    yield
    for var, value in saved.items():
        if value is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = value


@pytest.fixture
def cli_fails(capsys: pytest.CaptureFixture[str]):
    """Run ``mixsampler ARGV`` and assert the user-error contract: exit 2 and one stderr line
    holding every needle; returns the line."""
    from mixsampler import cli

    def run(argv: list, *needles: str) -> str:
        rc = cli.main([str(a) for a in argv])
        err = capsys.readouterr().err.strip()
        assert rc == 2, err
        assert len(err.splitlines()) == 1, err
        for n in needles:
            assert n in err, (n, err)
        return err

    return run
