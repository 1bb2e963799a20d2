"""What laws.optimize certifies, and the optimize verb refusing weights nobody certified."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mixsampler import cli
from mixsampler.laws import optimize, save_laws
from mixsampler.laws.optimize import _solve, _starts, _value_grad, fw_gap
from mixsampler.laws.weightsfile import UnconvergedWeightsError, read_weights


def _joint(helpers: Any) -> dict[str, Any]:
    return {"a": helpers.true_law("joint", "a")}


def test_unconverged_is_reported_never_success(helpers: Any) -> None:
    laws_ = _joint(helpers)
    res = optimize(laws_, model_size=1e9, n_tokens=1e10, max_iter=1, n_starts=2)
    assert not res.success
    assert res.gap > 1e-10 * max(abs(res.fun), 1.0)
    assert "not converged" in res.message and "max_iter" in res.message
    full = optimize(laws_, model_size=1e9, n_tokens=1e10)
    assert full.success and full.gap <= 1e-10 * max(abs(full.fun), 1.0)
    assert full.fun <= res.fun


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(shift=st.floats(-1e6, 1e6), lo=st.sampled_from([0.0, 0.05]))
def test_invariant_to_a_common_shift_of_the_gradient(helpers: Any, shift: float, lo: float) -> None:
    # c * sum(h) is constant on the simplex; it only adds c to every gradient coordinate, the
    # situation of the joint and full laws (a common part 200-2,500x the rest).
    laws_ = _joint(helpers)
    domains = laws_["a"].domains
    vg = _value_grad(laws_, {"a": 1.0}, domains, 1e9, 1e10)

    def shifted(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        f, g = vg(h)
        return f + shift * (h.sum(axis=1) - 1.0), g + shift

    lo_, hi_ = np.full(len(domains), lo), np.ones(len(domains))
    h0 = _starts(len(domains), lo_, hi_, 4, 0)
    x0, f0, gap0, _, _ = _solve(vg, h0, lo_, hi_, 3000, 1e-10)
    x1, f1, gap1, _, _ = _solve(shifted, h0, lo_, hi_, 3000, 1e-10)
    assert gap0 <= 1e-10 and gap1 <= 1e-10
    assert np.abs(x0 - x1).max() < 1e-6 and f1 == pytest.approx(f0, abs=1e-9)
    assert fw_gap(x1, vg(x1[None])[1], lo_, hi_)[0] <= 1e-9


def _law_file(tmp_path: Path, helpers: Any) -> Path:
    path = tmp_path / "LAW.json"
    save_laws(path, _joint(helpers))
    return path


def test_verb_refuses_unconverged_unless_allowed(
    tmp_path: Path, helpers: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    law = _law_file(tmp_path, helpers)
    out = tmp_path / "WEIGHTS.json"
    base = ["optimize", str(law), "--model-size", "1e9", "--tokens", "1e10", "-o", str(out)]
    assert cli.main([*base, "--max-iter", "1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--allow-unconverged" in err[0] and "--max-iter" in err[0]
    assert not out.exists()
    assert cli.main([*base, "--max-iter", "1", "--allow-unconverged"]) == 0
    with pytest.raises(UnconvergedWeightsError):
        read_weights(out)
    wf = read_weights(out, allow_unconverged=True)
    assert wf.success is False and wf.gap is not None and wf.gap > 0 and wf.nit == 1


def test_verb_records_success_and_gap(tmp_path: Path, helpers: Any) -> None:
    law = _law_file(tmp_path, helpers)
    out = tmp_path / "WEIGHTS.json"
    args = ["optimize", str(law), "--model-size", "1e9", "--tokens", "1e10", "-o", str(out)]
    assert cli.main([*args, "--min-weight", "0.05"]) == 0
    wf = read_weights(out)
    assert wf.success and wf.gap is not None and 0 <= wf.gap <= 1e-9
    assert min(wf.weights.values()) >= 0.05 - 1e-12
    assert sum(wf.weights.values()) == pytest.approx(1.0, abs=1e-12)


def test_bootstrap_refuses_intervals_without_converged_replicates(
    tmp_path: Path, helpers: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = helpers.write_csv(
        tmp_path / "runs.csv", helpers.synth_rows({"a": helpers.true_law("additive")}, n_mix=6)
    )
    law = tmp_path / "LAW.json"
    assert cli.main(["fit", str(runs), "--law", "additive", "--target", "all", "-o", str(law)]) == 0
    out = tmp_path / "WEIGHTS.json"
    args = ["optimize", str(law), "--model-size", "1e9", "--tokens", "8B", "-o", str(out)]
    # max_iter 1: the point estimate (allowed) and every replicate are unconverged, so there
    # is no interval to give; an interval over failed optima would look like an answer.
    boot = ["--runs", str(runs), "--bootstrap", "2", "--max-iter", "1", "--allow-unconverged"]
    capsys.readouterr()
    assert cli.main([*args, *boot]) == 2
    errors = [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln]
    assert len(errors) == 1 and "only 0 replicates converged" in errors[0]
    assert "--max-iter" in errors[0]
    assert not out.exists()
