"""Shared test configuration."""

from __future__ import annotations

import os

# Deterministic, quiet test runs on a 2-core machine.
os.environ.setdefault("PYTHONHASHSEED", "0")


import pytest  # noqa: E402


@pytest.fixture
def cli_fails(capsys: pytest.CaptureFixture[str]):
    """Run ``mixsampler ARGV`` and assert the user-error contract: exit 2 and one stderr line
    holding every needle; returns that line."""
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
