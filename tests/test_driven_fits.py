"""Paper 004: the fits of the diffusion coefficient (`thermojax.experiments.driven`).

The fitter recovers a known coefficient from PDE-generated data (noise-free and noisy),
its derivative is checked against finite differences, the jackknife against the exact
formula for a mean, the configs reject bad values, and one experiment runs end to end
at a tiny size.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from thermojax.config import ConfigError, validate
from thermojax.experiments import RunContext, get
from thermojax.experiments.driven import _common as cm
from thermojax.experiments.driven.coefficient import CoefficientConfig
from thermojax.experiments.driven.variance import VarianceConfig
from thermojax.models import driven as dr

TSAVE = jnp.linspace(0.0, 40.0, 9)


@pytest.fixture(scope="module")
def problem():
    """The GOE PDE (golden form) of a small config and data generated with c = 0.7."""
    cfg = CoefficientConfig(experiment="driven_coefficient", dim=200, cells=30, grid_half_width=0.6, realisations=8)
    pde = cm.goe_pde(cfg, 0.01, TSAVE, "golden")
    eta0 = dr.heat_kernel_cells(cfg.grid(), 0.0, 0.004)
    states = cm.scaled_pde_states(0.7, pde, eta0, TSAVE)
    var = dr.distribution_moments(states, cfg.grid())[2]
    return cfg, pde, eta0, states, var - var[0]


@pytest.mark.parametrize("kind", ["variance", pytest.param("profile", marks=pytest.mark.slow)])
def test_fit_recovers_known_coefficient(problem, kind):
    _, pde, eta0, states, increase = problem
    fit = cm.fit_scale(pde, eta0, TSAVE, increase if kind == "variance" else states, kind=kind, init=1.2)
    assert abs(float(fit.values["scale"]) - 0.7) < 1e-5


def test_fit_with_noise_within_its_error(problem):
    _, pde, eta0, _, increase = problem
    noise = 2e-5 * jax.random.normal(jax.random.key(7), increase.shape)
    fit = cm.fit_scale(pde, eta0, TSAVE, increase + noise.at[0].set(0.0), init=1.0)
    err = float(fit.stderr["scale"])
    assert 1e-4 < err < 0.05
    assert abs(float(fit.values["scale"]) - 0.7) < 3 * err


def test_fit_gradient_matches_finite_differences(problem):
    _, pde, eta0, _, increase = problem

    def loss(c):
        return jnp.sum(cm._variance_residuals({"scale": c}, pde, eta0, TSAVE, increase) ** 2)

    h = 1e-3
    fd = (loss(1.0 + h) - loss(1.0 - h)) / (2 * h)
    assert abs(float(jax.grad(loss)(1.0)) / float(fd) - 1) < 1e-3  # FD of an adaptive solve: ~1e-4 noise
    jac = jax.jacfwd(lambda c: cm._variance_residuals({"scale": c}, pde, eta0, TSAVE, increase))(1.0)
    jac_fd = (cm._variance_residuals({"scale": 1.0 + h}, pde, eta0, TSAVE, increase)
              - cm._variance_residuals({"scale": 1.0 - h}, pde, eta0, TSAVE, increase)) / (2 * h)
    assert float(jnp.max(jnp.abs(jac - jac_fd))) < 1e-3 * float(jnp.max(jnp.abs(jac_fd)))


def test_index_scale_recovers_known_multiplier():
    cfg = CoefficientConfig(experiment="driven_coefficient", dim=200, realisations=8)
    tsave = np.linspace(0.0, 40.0, 9)
    eps = 0.001  # lambda <= 0.04: the closed forms change by < 0.5% over the run
    unit = cm.fit_index_scale(cfg, {"index_variance": np.zeros((8, 9))}, tsave, eps)  # no spreading: c = 0
    assert abs(unit["scale"]) < 1e-12
    # D_golden Sigma^2 = eps^2 pi Sigma^3 sigma^2 at E = 0: data with c = 0.8 and realisation noise
    rate = eps**2 * np.pi * (200 / np.pi) ** 3 / 200
    noise = np.random.default_rng(1).normal(scale=0.005, size=(8, 9))
    data = {"index_variance": 2 * 0.8 * rate * tsave[None, :] + noise * tsave[None, :] / 40}
    fit = cm.fit_index_scale(cfg, data, tsave, eps)
    assert 0.0 < fit["stderr"] < 0.05 and abs(fit["scale"] - 0.8) < 3 * fit["stderr"] + 0.005


def test_jackknife_of_a_mean_is_the_standard_error():
    x = np.random.default_rng(0).normal(size=12)
    full, se, loo = cm.jackknife(lambda keep: x[keep].mean(), 12)
    assert np.isclose(full, x.mean()) and np.isclose(se, x.std(ddof=1) / np.sqrt(12)) and loo.shape == (12,)
    _, se_wrong, _ = cm.jackknife(lambda keep: x.mean(), 12)  # an estimator that ignores the data
    assert se_wrong == 0.0
    with pytest.raises(ValueError, match="n >= 2"):
        cm.jackknife(lambda keep: 0.0, 1)


@pytest.mark.parametrize(
    "cls, raw, key",
    [
        (CoefficientConfig, {"realisations": 4}, "realisations"),
        (CoefficientConfig, {"epsilon": -0.01}, "epsilon"),
        (CoefficientConfig, {"energy": 1.7, "grid_half_width": 0.5}, "band"),
        (CoefficientConfig, {"cells": 2000}, "level spacing"),
        (CoefficientConfig, {"n_states": 500}, "n_states"),
        (VarianceConfig, {"epsilons": [0.1, 0.01]}, "ascending"),
        (CoefficientConfig, {"dimension": 100}, "unknown key"),
    ],
)
def test_config_rejects_bad_values(cls, raw, key):
    name = "driven_variance" if cls is VarianceConfig else "driven_coefficient"
    with pytest.raises(ConfigError, match=key):
        validate(cls, {"experiment": name, **raw})


@pytest.mark.slow  # the notebook runs the three experiments in the default run
def test_coefficient_experiment_tiny():
    exp = get("driven_coefficient")
    cfg = exp.config(experiment="driven_coefficient", dim=60, n_states=4, realisations=8, cells=16,
                     grid_half_width=0.8, t_max=20.0, n_times=6, epsilon=0.02, fit_max_steps=20, progress=False)
    with RunContext():
        result = exp.run(cfg)
    fc = result.summary["fits"]["diffusion_coefficient"]
    for k in ("value", "stderr", "golden_rule", "eq47", "ratio_golden", "ratio_eq47"):
        assert np.isfinite(fc[k]), k
    assert result.summary["regime"] in dr.REGIMES
    assert fc["stderr"] > 0 and fc["error"].startswith("jackknife")
    assert abs(fc["eq47"] / fc["golden_rule"] - 2) < 0.3  # G2 is twice the golden rule
    assert result.summary["checks"]["sum_rule_error_max"] < 1e-10
    q = result.summary["quantum_term"]["norm_change_at_t_max"]
    assert abs(q["golden"]) < 1e-10 and q["eq47"] > 1e-6
