"""KMS experiments at tiny sizes: each runs, writes its summary keys, plots, and refuses bad configs.

The runs are marked slow: `notebooks/kms.ipynb`, executed in the default test run, runs
all four experiments at small sizes already; the config checks run by default."""

import numpy as np
import pytest

from thermojax.config import ConfigError, validate
from thermojax.experiments import get


def _run(name, **raw):
    exp = get(name)
    cfg = validate(exp.config, {"experiment": name, "progress": False, **raw})
    result = exp.run(cfg)
    figs = exp.plot(result, cfg)
    assert figs and all(hasattr(f, "savefig") for f in figs.values())
    return result


@pytest.mark.slow
def test_fixed_point_experiment():
    res = _run("kms_fixed_point", n_sites=2, taus=[1.0, 12.0, 16.0, 24.0, 32.0],
               generators=["davies", "coarse_grained", "exact_kms"])
    s = res.summary
    assert set(s["fixed_point_error"]) == {"davies", "coarse_grained", "exact_kms"}
    assert s["tau"] == [1.0, 12.0, 16.0, 24.0, 32.0]
    assert max(s["fixed_point_error"]["exact_kms"]) < 1e-12
    assert max(s["fixed_point_error_kernel"]["exact_kms"]) < 1e-12
    assert s["max_quadrature_error"] < 1e-10
    fit = s["fits"]["coarse_grained_exponent"]
    assert set(fit) >= {"value", "stderr"}
    assert abs(fit["value"] + 2) < 3 * fit["stderr"] + 1e-4


@pytest.mark.slow
def test_relaxation_experiment():
    res = _run("kms_relaxation", n_sites=[2], time={"t_max": 6.0, "n_times": 4},
               generators=["davies", "redfield", "exact_kms"])
    s = res.summary
    assert set(s["gaps"]["2"]) == {"davies", "redfield", "exact_kms"}
    assert all(s["solver_ok"]["2"].values())
    assert res.arrays["distance_exact_kms_N2"].shape == (4,)
    assert np.all(np.diff(res.arrays["energy_davies_N2"]) < 0)  # the all-up state sits high: energy falls


@pytest.mark.slow
def test_gap_experiment():
    res = _run("kms_gap", n_min=2, n_max=3, dense_max_sites=3)
    gap = res.summary["gap"]
    assert all(0 < g for g in gap["davies"])
    assert all(d <= f + 1e-12 for d, f in zip(gap["kms_dissipative"], gap["kms_full"]))


@pytest.mark.slow
def test_finite_bath_experiment():
    # 3 points in the growth window and 3 couplings: both power-law fits share one compiled fit
    res = _run("kms_finite_bath", bath_dim=16, lambdas=[0.1, 0.2, 0.4], time={"t_max": 8.0, "n_times": 5},
               growth_t_min=3.0, generators=["davies", "exact_kms"], fit=False)
    s = res.summary
    assert set(s["growth_exponent"]) == {"davies", "exact_kms"}
    assert res.arrays["exact_0"].shape == (5, 2, 2)
    assert np.allclose(np.trace(res.arrays["exact_0"], axis1=1, axis2=2), 1.0)
    assert s["heisenberg_time"] > 0


@pytest.mark.parametrize(
    "name, raw, key",
    [
        ("kms_fixed_point", {"taus": [2.0, 1.0, 4.0]}, "taus"),
        ("kms_fixed_point", {"n_sites": 9}, "n_sites"),
        ("kms_relaxation", {"tau": 0.0}, "tau"),
        ("kms_gap", {"n_min": 4, "n_max": 3}, "n_max"),
        ("kms_finite_bath", {"lambdas": [0.1, -0.2]}, "lambdas"),
        ("kms_finite_bath", {"n_system": 3}, "n_system"),
        ("kms_fixed_point", {"generators": ["lindblad"]}, "generators"),
    ],
)
def test_bad_configs_are_refused(name, raw, key):
    with pytest.raises(ConfigError, match=key):
        validate(get(name).config, {"experiment": name, **raw})


@pytest.mark.slow
def test_finite_bath_fit_recovers_known_coupling():
    # with the master equation itself as "exact" data the fit must return lambda^2
    import jax.numpy as jnp

    from thermojax.experiments.kms.finite_bath import _propagate, fit_lambda2
    from thermojax.models import kms

    bath = kms.goe_bath(__import__("jax").random.key(0), 24)
    system = kms.OpenSystem(kms.mixed_field_ising(1), [kms.site_operator("x", 0, 1)], bath.spectrum(0.2), 0.3)
    l0, l1 = kms.liouvillian_parts(kms.Davies(system))
    rho0 = jnp.zeros((2, 2), complex).at[0, 0].set(1.0)
    ts = jnp.linspace(2.0, 40.0, 20)
    fit = fit_lambda2(l0, l1, rho0, ts, _propagate(l0, l1, 0.09, rho0, ts), 0.05)
    assert fit["value"] == pytest.approx(0.09, rel=1e-6)
