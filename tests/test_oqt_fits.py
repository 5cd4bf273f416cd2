"""alpha_N fits from SSE trajectory ensembles and gradients through trajectory batches.

A. Mukherjee, arXiv:2504.16197, eqs. 5-6 (`thermojax.experiments.oqt.common`;
docs/models/oqt.md).
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import thermojax as tj
from thermojax.experiments.oqt.common import fit_alpha_n, pooled_variance
from thermojax.models.heat_chain import random_band_state
from thermojax.models.oqt import InteractionPictureSSE, OQTModel, population_closed_form
from thermojax.spectra import goe_matrix, ket_to_dm
from thermojax.stats import batch_means
from thermojax.trajectories import ensemble_mean, simulate_trajectories

D, GAMMA, DT = 8, 1.0, 0.01
TS = np.linspace(0.0, 2.0, 11)
M_VALUES = (500, 2000, 8000)
N_BATCHES = 100


def _setup(seed=3, d=D, gamma=GAMMA):
    k_h, k_psi = jax.random.split(jax.random.key(seed))
    model = OQTModel.microcanonical(goe_matrix(k_h, d), random_band_state(k_psi, d), gamma)
    psi0 = model.eigensystem.ket_to_eigenbasis(random_band_state(k_psi, d))
    return model, psi0


def _fit_ops(model):
    e = np.asarray(model.energies)
    return np.stack([(~np.asarray(model.steady.window)).astype(float), e, e**2])


def _obs(ops):
    """Diagonal observables: populations (the same in both pictures) times `ops`."""
    ops = jnp.asarray(ops)
    return {"obs": lambda t, y: ops @ (jnp.abs(y) ** 2)}


def _ensemble(sde, psi0, ts, key, m, ops, n_batches=N_BATCHES, chunk_size=500, **options):
    res = simulate_trajectories(
        sde, psi0, ts, key, ntraj=m, method=tj.EulerMaruyama(DT), observables=_obs(ops), n_batches=n_batches,
        options=tj.Options(chunk_size=chunk_size, **options),
    )
    return res.ensemble


class _Fits(dict):
    """alpha_N fits by ensemble size, each computed on first use (independent ensembles,
    keys fold_in(key(11), index of M in M_VALUES))."""

    def __missing__(self, m):
        model, psi0 = _setup()
        ops = _fit_ops(model)
        sde = InteractionPictureSSE(model.sse())
        key = jax.random.fold_in(jax.random.key(11), M_VALUES.index(m))
        self[m] = fit_alpha_n(model, ket_to_dm(psi0), _ensemble(sde, psi0, TS, key, m, ops), TS, ops,
                              init=0.5 * GAMMA)
        return self[m]


@pytest.fixture(scope="module")
def fits():
    return _Fits()


# M = 8000 is 3/4 of the trajectories: its checks run with -m slow
M_PARAMS = [500, 2000, pytest.param(8000, marks=pytest.mark.slow)]


@pytest.mark.parametrize("m", M_PARAMS)
def test_alpha_n_recovered_within_three_stderr(fits, m):
    f = fits[m]
    assert f["converged"] and f["n_valid"] == m
    assert abs(f["value"] - GAMMA) < 3 * f["stderr"], f
    # correlated residuals: the curvature error of the fit is far too small
    assert f["stderr_curvature"] < 0.5 * f["stderr"]


def test_alpha_n_stderr_shrinks_as_inverse_sqrt_m_fast(fits):
    """500 -> 2000 trajectories: the batch-means error halves (as the full test below)."""
    a, b = fits[500]["stderr"], fits[2000]["stderr"]
    assert abs(a / b / 2.0 - 1.0) < 0.3, (a, b)


@pytest.mark.slow
def test_alpha_n_stderr_shrinks_as_inverse_sqrt_m(fits):
    errs = [fits[m]["stderr"] for m in M_VALUES]
    for a, b in zip(errs[:-1], errs[1:]):
        assert abs(a / b / 2.0 - 1.0) < 0.3, errs  # sqrt(4) = 2 per step
    scaled = np.asarray(errs) * np.sqrt(M_VALUES)
    assert scaled.max() / scaled.min() < 1.4


def test_interaction_picture_is_the_same_sse():
    """Drift and noise of the wrapper are the SSE's, rotated, minus the -iE psi term."""
    model, psi0 = _setup(d=5)
    sde, ip = model.sse("literal"), InteractionPictureSSE(model.sse("literal"))
    t = 0.37
    u = jnp.exp(-1j * model.energies * t)
    phi = jnp.conj(u) * psi0
    dw = {"oqt": jax.random.normal(jax.random.key(2), (5, 5))}
    expected = jnp.conj(u) * (sde.drift(t, psi0, None) + 1j * model.energies * psi0)
    np.testing.assert_allclose(ip.drift(t, phi, None), expected, atol=1e-14)
    np.testing.assert_allclose(
        ip.diffusion_mv(t, phi, None, dw), jnp.conj(u) * sde.diffusion_mv(t, psi0, None, dw), atol=1e-14
    )


def test_streamed_batch_means_match_the_stored_trajectories():
    """`simulate_trajectories(n_batches=...)` (what the fit uses, replacing the experiment's
    own batch runner) against `stats.batch_means` of the stored trajectories (same key, so
    the same paths): batch means, counts, pooled variance; whatever the chunk size."""
    model, psi0 = _setup(d=4)
    ts = np.array([0.0, 0.2, 0.4])
    ops = _fit_ops(model)
    sde = model.sse()
    ens = _ensemble(sde, psi0, ts, jax.random.key(4), 12, ops, n_batches=3, chunk_size=5, store_trajectories=True)
    per_traj = np.einsum("kd,ntd->ntk", ops, np.abs(np.asarray(ens.trajectories)) ** 2)  # (M, T, K)
    means_b, counts, mean, pooled = batch_means(per_traj, ~np.asarray(ens.diverged), 3)
    np.testing.assert_allclose(ens.batch_mean["obs"], means_b, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(ens.batch_n, counts)
    np.testing.assert_allclose(ens.mean["obs"], mean, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(pooled_variance(ens, "obs"), pooled, rtol=1e-8, atol=1e-14)
    other = _ensemble(sde, psi0, ts, jax.random.key(4), 12, ops, n_batches=3, chunk_size=12)
    np.testing.assert_allclose(other.batch_mean["obs"], ens.batch_mean["obs"], rtol=1e-12, atol=1e-14)
    # a different key gives different batches: the comparison is not vacuous
    third = _ensemble(sde, psi0, ts, jax.random.key(5), 12, ops, n_batches=3)
    assert np.max(np.abs(np.asarray(third.batch_mean["obs"]) - means_b)) > 1e-3


def test_batch_means_helper():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    valid = np.ones(40, bool)
    means_b, counts, mean, pooled = batch_means(x, valid, 4)
    np.testing.assert_allclose(means_b, x.reshape(4, 10, 3).mean(1))
    np.testing.assert_allclose(mean, x.mean(0))
    np.testing.assert_allclose(pooled, x.reshape(4, 10, 3).var(1, ddof=1).mean(0))
    valid[3] = False  # a diverged trajectory is left out everywhere
    means_b, counts, mean, _ = batch_means(x, valid, 4)
    assert counts.tolist() == [9, 10, 10, 10]
    np.testing.assert_allclose(mean, x[valid].mean(0))


def test_gradient_through_trajectories_matches_master_equation():
    r"""d/d alpha_N of the ensemble mean population outside the window, pathwise through
    the trajectory batch (ensemble_mean inside jax.grad), against jax.grad of eq. 6."""
    model, psi0 = _setup(seed=5, d=6)
    out_mask = jnp.asarray(~np.asarray(model.steady.window), float)
    t_obs = 1.0
    ts = [0.0, t_obs]

    def observable(t, y):
        return jnp.sum(out_mask * jnp.abs(y) ** 2)

    @jax.jit
    def grad_batch(alpha, key):
        def f(a):
            sde = eqx.tree_at(lambda s: s.alpha_N, model.sse(), a)
            return ensemble_mean(sde, psi0, ts, key, observable, ntraj=128, method=tj.EulerMaruyama(0.01))[-1]

        return jax.grad(f)(alpha)

    alpha = jnp.asarray(GAMMA)
    grads = np.array([float(grad_batch(alpha, jax.random.key(100 + i))) for i in range(8)])
    mean, err = grads.mean(), grads.std(ddof=1) / math.sqrt(len(grads))

    def closed(a):
        m = eqx.tree_at(lambda q: q.alpha_N, model, a)
        return jnp.sum(out_mask * population_closed_form(m, jnp.abs(psi0) ** 2, jnp.array([t_obs]))[0])

    exact = float(jax.grad(closed)(alpha))
    assert exact < 0 and err > 0
    assert abs(mean - exact) < 4 * err, (mean, err, exact)
    assert err < 0.2 * abs(exact)  # the check has teeth
