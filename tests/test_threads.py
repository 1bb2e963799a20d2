"""mixsampler.threads: the BLAS variables, the user's setting, and putting them back."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mixsampler.threads import (
    BLAS_ENV,
    BLAS_THREAD_VARS,
    blas_threads,
    requested_blas_threads,
    restore_blas_threads,
    set_blas_threads,
)


@pytest.mark.parametrize(("raw", "want"), [(None, 1), ("1", 1), ("4", 4), (" 2 ", 2), ("0", None)])
def test_requested_threads(raw: str | None, want: int | None) -> None:
    env = {} if raw is None else {BLAS_ENV: raw}
    assert requested_blas_threads(env) == want


@pytest.mark.parametrize("raw", ["-1", "two", "1.5", ""])
def test_bad_settings_name_the_variable_and_value(raw: str) -> None:
    with pytest.raises(ValueError, match=f"{BLAS_ENV} must be an integer >= 0.*{raw.strip()!r}"):
        requested_blas_threads({BLAS_ENV: raw})


def test_set_and_restore_leave_the_environment_as_it_was() -> None:
    env = {"OMP_NUM_THREADS": "8", "PATH": "/bin"}
    saved = set_blas_threads(3, env)
    assert all(env[v] == "3" for v in BLAS_THREAD_VARS)
    restore_blas_threads(saved, env)
    assert env == {"OMP_NUM_THREADS": "8", "PATH": "/bin"}
    for bad in (0, -2, True, 1.0):
        with pytest.raises(ValueError, match="count must be an integer >= 1"):
            set_blas_threads(bad, env)  # type: ignore[arg-type]


def test_children_started_in_the_block_get_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    code = "import os; print(os.environ['OPENBLAS_NUM_THREADS'], os.environ['OMP_NUM_THREADS'])"
    with blas_threads(1):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.split() == ["1", "1"]
    assert os.environ["OMP_NUM_THREADS"] == "7"
    with blas_threads(None):
        assert os.environ["OMP_NUM_THREADS"] == "7"
