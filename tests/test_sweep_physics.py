"""The shipped sweeps' physics: the band's second-order time tau(t) against its limits,
the continuum closed form and the exact dynamics; one sweep point equal to the paper
experiments' own fits (heat_chain_relaxation's kappa, oqt_relaxation's alpha_N); the
power-law fit across a grid recovering known exponents and refusing wrong ones."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special

from thermojax.experiments.sweeps import alpha_n, kappa_scaling
from thermojax.experiments.sweeps.kappa_scaling import KappaScalingConfig, _power_law
from thermojax.models.heat_chain import HeatChain, HeatChainParams, memory_time, random_band_state
from thermojax.sweep import run_point

W = 0.05


def _band(n, width=W):
    return 1.0 - width / 2 + (jnp.arange(n) + 0.5) * width / n


def test_memory_time_short_times_is_first_order_perturbation_theory():
    # kappa tau = lambda^2 n t^2 for t << 1/de, i.e. tau = de t^2 / 2 pi
    ts = jnp.array([1e-3, 1e-2, 0.1]) / W
    tau = memory_time(_band(50), ts, W)
    np.testing.assert_allclose(tau, W * ts**2 / (2 * np.pi), rtol=1e-3)


def test_memory_time_matches_the_continuum_closed_form():
    r"""Dense flat band, t well below the Heisenberg time 2 pi n / de:
    tau = H(de t)/de, H(u) = (2/pi)[u Si(u) + cos u - 1 - Cin(u)], Cin = gamma + ln u - Ci."""
    n = 3000
    u = np.array([0.5, 2.0, 10.0, 40.0, 120.0])
    si, ci = scipy.special.sici(u)
    cin = np.euler_gamma + np.log(u) - ci
    closed = 2 / np.pi * (u * si + np.cos(u) - 1 - cin) / W
    tau = np.asarray(memory_time(_band(n), jnp.asarray(u / W), W))
    np.testing.assert_allclose(tau, closed, rtol=2e-3)
    # and its long-time form t - (2 / pi de)(1 + gamma + ln de t): the lag of plain HAM
    lag = u[-1] / W - tau[-1]
    assert lag == pytest.approx(2 / (np.pi * W) * (1 + np.euler_gamma + np.log(u[-1])), rel=5e-3)


@pytest.mark.slow  # the same physics has faster tests in the default run
def test_memory_time_is_the_exact_early_decay_of_a_chain():
    """Population leaving subunit 1 of N = 2 chains (exact eigen-evolution; 8 chains x 16
    random states) against HAM in tau(t), P_1 = (1 + exp(-2 kappa tau)) / 2: they agree
    where HAM in t is off by 1.8-13x."""
    from thermojax.experiments.heat_chain.relaxation import _populations_at
    from thermojax.models.heat_chain import ham_populations

    n, lam = 64, 4e-4
    ts = jnp.array([0.5, 1.0, 2.0, 4.0]) / W
    loss = []
    for k in jax.random.split(jax.random.key(7), 8):
        k1, k2 = jax.random.split(k)
        chain = HeatChain.random(k1, 2, n, band_width=W, coupling=lam)
        psis = chain.local_state(random_band_state(k2, n, (16,)), 0)
        loss.append(1.0 - np.asarray(_populations_at(chain, psis, ts))[:, :, 0].mean(0))
    loss = np.mean(loss, axis=0)
    p0 = jnp.array([1.0, 0.0])
    tau = memory_time(chain.band_energies(), ts, W)
    memory = 1.0 - np.asarray(ham_populations(chain.kappa, p0, tau))[:, 0]
    plain = 1.0 - np.asarray(ham_populations(chain.kappa, p0, ts))[:, 0]
    np.testing.assert_allclose(loss, memory, rtol=0.03)
    assert np.all(plain / loss > 1.7)  # 12.6, 6.3, 3.2, 1.8


@pytest.mark.slow  # ~20 s: compiles the relaxation experiment's path beside the sweep's
def test_kappa_point_reproduces_heat_chain_relaxation():
    """Same config, same seed: the sweep point's plain fit is heat_chain_relaxation's kappa fit."""
    from thermojax.experiments.heat_chain.relaxation import RelaxationConfig, RelaxationFit, _exact, _fit_kappa, _setup

    model = HeatChainParams(n_subunits=2, n_levels=24, band_width=W, coupling=1.5e-3)
    rcfg = RelaxationConfig(model=model, fit=RelaxationFit(n_states=4), progress=False, seed=3)
    chain, ts, psis = _setup(rcfg)
    ex = _exact(rcfg, chain, ts, psis)
    ref = _fit_kappa(rcfg, chain, ts, chain.populations(psis[0]), ex["p_all"])
    kcfg = KappaScalingConfig(model=model, fit={"n_states": 4}, progress=False, seed=3)
    res = run_point(kappa_scaling.KERNEL, kcfg)
    np.testing.assert_allclose(res.arrays["ts"], ts, rtol=1e-14)
    np.testing.assert_allclose(res.arrays["p_mean"], ex["p_all"].mean(0), rtol=1e-12, atol=1e-14)
    assert res.headline["kappa_plain"]["value"] == pytest.approx(ref["fit"]["value"], rel=1e-9)
    np.testing.assert_allclose(res.arrays["singles_kappa_plain"], ref["singles"], rtol=1e-9)
    assert res.headline["kappa_plain"]["stderr"] == pytest.approx(ref["singles"].std(ddof=1) / 2, rel=1e-9)
    # the memory fit is the same data in tau(t): closer to the golden rule
    assert abs(res.headline["kappa"]["ratio"] - 1) < abs(res.headline["kappa_plain"]["ratio"] - 1)


@pytest.mark.slow  # the same physics has faster tests in the default run
def test_alpha_point_reproduces_oqt_relaxation():
    """Same config, same seed: the sweep point's fit is oqt_relaxation's fit at M = n_traj."""
    from thermojax.experiments.oqt.relaxation import (
        AlphaFitParams,
        GOEParams,
        RelaxationConfig,
        RelaxationTrajectories,
        _ensemble,
        _Setup,
    )

    model = GOEParams(dim=4, alpha_N=0.8)  # the sizes of tests/test_sweep.py: one compilation for both
    ocfg = RelaxationConfig(
        model=model, trajectories=RelaxationTrajectories(dt=0.05, t_max=0.4, n_times=5, n_show=0, chunk_size=32),
        fit=AlphaFitParams(M_values=[64], n_batches=4), progress=False, seed=2,
    )
    st = _Setup(ocfg)
    ref = _ensemble(ocfg, st, 64, jax.random.fold_in(st.k_traj, 0))["fit"]
    acfg = alpha_n.AlphaNConfig(
        model=model, trajectories={"dt": 0.05, "t_max": 0.4, "n_times": 5, "chunk_size": 32},
        fit={"n_traj": 64, "n_batches": 4}, progress=False, seed=2,
    )
    res = run_point(alpha_n.KERNEL, acfg)
    h = res.headline["alpha_N"]
    assert h["value"] == pytest.approx(ref["value"], rel=1e-9)
    assert h["stderr"] == pytest.approx(ref["stderr"], rel=1e-8)
    assert h["true"] == 0.8 and h["z"] == pytest.approx((ref["value"] - 0.8) / ref["stderr"], rel=1e-8)


def test_power_law_fit_recovers_exponents_and_detects_wrong_ones():
    rng = np.random.default_rng(0)
    lam, n = (a.ravel() for a in np.meshgrid([2e-4, 3e-4, 4e-4], [100.0, 150.0, 200.0]))
    lam, n = np.repeat(lam, 2), np.repeat(n, 2)
    rel = 0.02
    golden = 2 * np.pi * lam**2 * n / W
    k = golden * (1 + rel * rng.standard_normal(lam.size))
    fit, err, chi2 = _power_law(lam, n, k, rel * k)
    for v, true in (("p", 2.0), ("q", 1.0)):
        assert abs(float(fit.values[v]) - true) < 3 * err[v]
        assert 0.005 < err[v] < 0.05
    assert 0.3 < chi2 < 2.5
    # kappa ~ lambda^2.2: the fit must see it
    fit, err, _ = _power_law(lam, n, k * (lam / lam[0]) ** 0.2, rel * k)
    assert (float(fit.values["p"]) - 2.0) / err["p"] > 4
