"""The forms' analytic derivatives match finite differences, for every law."""

from __future__ import annotations

import numpy as np
import pytest

from mixsampler.laws import LAWS, Form


@pytest.mark.parametrize("law", LAWS)
def test_jacobian_and_grad_h_match_finite_differences(law: str) -> None:
    rng = np.random.default_rng(0)
    domains = ("a", "b", "c", "d")
    form = Form(law, domains, target_domain="a")
    n = 40
    h = rng.dirichlet(np.ones(4), size=n) * 0.9 + 0.025
    ln, ld, hh = Form.inputs(rng.uniform(1e8, 2e9, n), rng.uniform(1e9, 5e10, n), h)
    p = np.exp(rng.normal(0, 0.3, form.n_params))
    p[~form.positive] = rng.normal(0, 1, (~form.positive).sum())
    pred, jac, gh = form.evaluate(p, ln, ld, hh, jac=True, grad_h=True)
    assert jac is not None and gh is not None and jac.shape == (n, form.n_params)
    num = np.empty_like(jac)
    for j in range(form.n_params):
        e = np.zeros_like(p)
        e[j] = 1e-6 * max(1.0, abs(p[j]))
        num[:, j] = (form.evaluate(p + e, ln, ld, hh)[0] - form.evaluate(p - e, ln, ld, hh)[0]) / (
            2 * e[j]
        )
    assert np.allclose(jac, num, rtol=1e-5, atol=1e-8)
    numh = np.empty_like(gh)
    for j in range(4):
        e = np.zeros(4)
        e[j] = 1e-7
        numh[:, j] = (
            form.evaluate(p, ln, ld, hh + e)[0] - form.evaluate(p, ln, ld, hh - e)[0]
        ) / 2e-7
    assert np.allclose(gh, numh, rtol=1e-4, atol=1e-7)


def test_zero_weights_contribute_nothing() -> None:
    form = Form("additive", ("a", "b"))
    p = np.array([1.0, 2.0, 3.0, 0.5, 0.7, 0.1, 0.3, 0.2, 0.3])
    pred, jac, _ = form.evaluate(p, np.zeros(1), np.zeros(1), np.array([[1.0, 0.0]]), jac=True)
    assert np.isfinite(pred).all() and np.isfinite(jac).all()
    assert pred[0] == pytest.approx(1.0 + 1 / 2.0 + 0.1 + 0.2)


def test_fixed_scale_variants_drop_terms_and_names() -> None:
    assert "A" not in Form("additive", ("a",), use_n=False).names
    f = Form("joint", ("a", "b"), use_d=False)
    assert f.names == ["E", "C_a", "C_b", "gamma_a", "gamma_b", "CA_a", "CA_b", "gammaA", "alpha"]
    with pytest.raises(ValueError, match="law can be chinchilla"):
        Form("quadratic", ("a",))
    with pytest.raises(ValueError, match="bimix needs a target that is a training domain"):
        Form("bimix", ("a",), target_domain="z")


def test_predict_broadcasts() -> None:
    form = Form("chinchilla", ("a", "b"))
    p = np.array([1.0, 0.2, 0.3, 0.5, 0.3])
    out = form.predict(p, [1e9, 2e9, 4e9], 1e9, [0.5, 0.5])
    assert out.shape == (3,)
    with pytest.raises(ValueError, match=r"weights must have 2 columns \(a, b\)"):
        form.predict(p, 1e9, 1e9, [1.0])
