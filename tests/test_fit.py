"""optax least-squares fitter: recovery of known constants and honest standard errors."""

import jax.numpy as jnp
import numpy as np
import pytest

from thermojax.fit import fit_least_squares

T = jnp.linspace(0, 5, 200)


def _model(p):
    return p["A"] * jnp.exp(-p["k"] * T)


def _res(p, y):
    return _model(p) - y


def test_recovers_constants_from_noisy_data_with_calibrated_errors():
    true, sigma = {"A": 2.0, "k": 0.7}, 0.01
    rng = np.random.default_rng(0)
    fits = []
    for _ in range(40):
        y = _model(true) + sigma * rng.normal(size=T.shape)
        fits.append(fit_least_squares(_res, {"A": 1.0, "k": 0.2}, args=(jnp.asarray(y),), positive=True))
    assert all(f.converged for f in fits)
    k = np.array([float(f.values["k"]) for f in fits])
    err = np.array([float(f.stderr["k"]) for f in fits])
    # each within 4 stderr; the reported stderr matches the actual scatter within 30%
    assert np.all(np.abs(k - true["k"]) < 4 * err)
    assert 0.7 < k.std(ddof=1) / err.mean() < 1.3
    # and matches the linearised least-squares formula sigma^2 (J^T J)^-1
    jac = np.stack([np.exp(-0.7 * T), -2.0 * T * np.exp(-0.7 * T)], 1)
    cov = sigma**2 * np.linalg.inv(jac.T @ jac)
    np.testing.assert_allclose(err.mean(), np.sqrt(cov[1, 1]), rtol=0.1)


@pytest.mark.parametrize("positive", [True, ()], ids=["log-space", "signed (default)"])
def test_noise_free_data_recovered_exactly_and_history_decreases(positive):
    y = _model({"A": 2.0, "k": 0.7})
    f = fit_least_squares(_res, {"A": 1.0, "k": 0.35}, args=(y,), positive=positive)
    np.testing.assert_allclose(f.values["k"], 0.7, rtol=1e-7)
    np.testing.assert_allclose(f.values["A"], 2.0, rtol=1e-7)
    assert f.loss_history[-1] < 1e-10 * f.loss_history[0]
    d = f.as_dict(true={"k": 0.7})
    assert d["k"]["true"] == 0.7 and d["k"]["converged"]


def test_unconstrained_parameter_may_go_negative():
    y = -3.0 * T + 1.0
    res = lambda p, y: p["a"] * T + p["b"] - y
    f = fit_least_squares(res, {"a": 1.0, "b": 0.0}, args=(y,), positive=False)
    np.testing.assert_allclose(f.values["a"], -3.0, rtol=1e-8)
    # the default constrains nothing: a signed constant crosses zero, even from a negative start
    f = fit_least_squares(res, {"a": 1.0, "b": -0.5}, args=(y,))
    np.testing.assert_allclose(f.values["a"], -3.0, rtol=1e-8)
    np.testing.assert_allclose(f.values["b"], 1.0, rtol=1e-8)


def test_no_degrees_of_freedom_gives_nan_error_not_zero():
    t2 = jnp.array([0.0, 1.0])
    f = fit_least_squares(lambda p, y: p["a"] * t2 + p["b"] - y, {"a": 1.0, "b": 0.0},
                          args=(jnp.array([1.0, 3.0]),), positive=False)
    np.testing.assert_allclose(f.values["a"], 2.0, rtol=1e-8)
    assert np.isnan(float(f.stderr["a"]))


def test_bad_inputs():
    y = _model({"A": 2.0, "k": 0.7})
    with pytest.raises(ValueError, match="at least one"):
        fit_least_squares(_res, {}, args=(y,))
    with pytest.raises(ValueError, match="must start > 0"):
        fit_least_squares(_res, {"A": 1.0, "k": -0.1}, args=(y,), positive=True)
    with pytest.raises(ValueError, match="must start > 0"):
        fit_least_squares(_res, {"A": 1.0, "k": -0.1}, args=(y,), positive=["k"])
    with pytest.raises(ValueError, match="not in `init`"):
        fit_least_squares(_res, {"A": 1.0, "k": 0.1}, args=(y,), positive=["q"])
    with pytest.raises(ValueError, match="not finite"):
        fit_least_squares(_res, {"A": 1.0, "k": 0.1}, args=(y * jnp.nan,))
    with pytest.raises(TypeError, match="complex"):
        fit_least_squares(lambda p, y: _res(p, y) * (1 + 1j), {"A": 1.0, "k": 0.1}, args=(y,))
