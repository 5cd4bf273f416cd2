"""Heat-conduction chain (Michel, Gemmer, Mahler, PRE 73, 016101; docs/models/heat_chain.md)
against exact facts."""

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

import thermojax as tj
from thermojax.models.heat_chain import (
    HAMValidityWarning,
    HeatChain,
    deviation_d2,
    ham_populations,
    heat_capacity,
    log_partition_function,
    multiband_conductivity,
    path_laplacian,
    random_band_state,
    single_band_multiband_data,
    thermal_conductivity,
)

# A small chain satisfying both eq. 29 criteria: lambda n/de = 0.58, lambda^2 n/de^2 = 0.01.
N, n, WIDTH, LAM = 3, 32, 0.05, 9e-4


def _populations(chain, psi0, ts):
    """Exact subunit populations `(*batch, T, N)` through the eigensystem (`e_ops` callable)."""
    res = chain.eigensystem().evolve(psi0, ts, e_ops=chain.populations, save_states=False, kind="ket")
    return jnp.swapaxes(res.expect, -1, -2)


@pytest.fixture(scope="module")
def chain():
    return HeatChain.random(jax.random.key(1), N, n, band_width=WIDTH, coupling=LAM)


@pytest.fixture(scope="module")
def psi0(chain):
    return chain.local_state(random_band_state(jax.random.key(2), n))


def test_hamiltonian_hermitian_and_structure(chain):
    h = np.asarray(chain.hamiltonian())
    assert h.shape == (N * n, N * n)
    np.testing.assert_allclose(h, h.conj().T, atol=0)
    blocks = h.reshape(N, n, N, n)
    assert np.all(blocks[0, :, 2, :] == 0)  # only nearest neighbours couple
    np.testing.assert_allclose(np.diag(blocks[1, :, 1, :]).real, chain.band_energies())
    # block matvec equals the dense coupling
    v = np.asarray(jax.random.normal(jax.random.key(3), (N * n,)) + 0j)
    dense_v = (h - np.diag(np.diag(h))) / LAM
    np.testing.assert_allclose(chain.apply_coupling(jnp.asarray(v)), dense_v @ v, atol=1e-12)


def test_coupling_normalisation():
    big = HeatChain.random(jax.random.key(0), 2, 400, coupling=1e-5, warn=False)
    # E|v_ij|^2 = 1: the sample mean over 160000 entries is 1 within a few 1/400
    assert abs(float(jnp.mean(jnp.abs(big.couplings) ** 2)) - 1) < 0.01


def test_propagator_unitary_and_matches_expm(chain, psi0):
    es = chain.eigensystem()
    w = np.asarray(es.vectors)
    np.testing.assert_allclose(w.conj().T @ w, np.eye(chain.dim), atol=1e-12)
    t = 123.4
    ref = scipy.linalg.expm(-1j * np.asarray(chain.hamiltonian()) * t) @ np.asarray(psi0)
    out = es.evolve(psi0, jnp.array([0.0, t])).states
    np.testing.assert_allclose(out[1], ref, atol=1e-10)
    np.testing.assert_allclose(out[0], psi0, atol=1e-12)
    np.testing.assert_allclose(es.propagator(t) @ psi0, ref, atol=1e-10)


def test_probability_conserved_and_eigen_vs_diffrax(chain, psi0):
    ts = jnp.linspace(0, 2 / float(chain.kappa), 9)
    p_eig = _populations(chain, psi0, ts)
    p_dfx = tj.solve_ode(
        chain.interaction_vector_field, psi0, ts, e_ops=chain.populations,
        method=tj.ODE(dfx.Tsit5(), dfx.PIDController(rtol=1e-10, atol=1e-10)),
    ).expect.T
    np.testing.assert_allclose(p_eig.sum(-1), 1.0, atol=1e-12)
    np.testing.assert_allclose(p_dfx.sum(-1), 1.0, atol=1e-8)
    assert float(jnp.max(jnp.abs(p_eig - p_dfx))) < 1e-6
    assert float(jnp.max(jnp.abs(p_eig[-1] - p_eig[0]))) > 0.3  # something did happen


def test_ham_closed_form_against_matrix_exponential_and_diffrax():
    kappa, ts = 0.37, jnp.linspace(0, 6, 13)
    p0 = jnp.array([0.6, 0.3, 0.1, 0.0, 0.0])
    p = ham_populations(kappa, p0, ts)
    lap = np.asarray(path_laplacian(5))
    ref = np.stack([scipy.linalg.expm(-kappa * lap * t) @ np.asarray(p0) for t in ts])
    np.testing.assert_allclose(p, ref, atol=1e-13)
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-13)
    late = ham_populations(kappa, p0, jnp.array([200.0]))
    np.testing.assert_allclose(late[0], 0.2, atol=1e-12)  # relaxes to equipartition
    chain = HeatChain.random(jax.random.key(0), 5, 4, coupling=0.01, warn=False)
    rhs = lambda t, y, k: chain.ham_vector_field(t, y, k)
    ctrl = dfx.PIDController(rtol=1e-11, atol=1e-12)
    via_dfx = tj.solve_ode(rhs, p0, ts, args=kappa, method=tj.ODE(stepsize_controller=ctrl)).states
    np.testing.assert_allclose(via_dfx, p, atol=1e-9)
    # the two-subunit closed form: P1 = (1 + exp(-2 kappa t)) / 2
    p2 = ham_populations(kappa, jnp.array([1.0, 0.0]), ts)
    np.testing.assert_allclose(p2[:, 0], 0.5 * (1 + np.exp(-2 * kappa * ts)), atol=1e-14)


def test_heat_capacity_is_derivative_of_log_partition_function():
    n_lev, temps = 500, jnp.array([0.05, 0.147, 0.5, 3.0])
    # U = T^2 d lnZ/dT, c = dU/dT, by automatic and by finite differences
    u = lambda t: t**2 * jax.grad(log_partition_function)(t, n_lev)
    c_ad = jax.vmap(jax.grad(u))(temps)
    # eq. 49: c = beta^2 d^2 lnZ / d beta^2, by a central second difference in beta
    beta, h = 1 / temps, 1e-3
    lnz = lambda b: log_partition_function(1 / b, n_lev)
    c_fd = beta**2 * (lnz(beta + h) - 2 * lnz(beta) + lnz(beta - h)) / h**2
    c = heat_capacity(temps, n_lev)
    np.testing.assert_allclose(c, c_ad, rtol=1e-10)
    np.testing.assert_allclose(c, c_fd, rtol=1e-5)


def test_conductivity_is_kappa_times_c_and_eq47_reduces_to_eq51():
    kappa, n_lev = 1.5707963e-4, 500
    temps = jnp.linspace(0.05, 5, 7)
    kth = thermal_conductivity(temps, kappa, n_lev)
    np.testing.assert_allclose(kth, kappa * heat_capacity(temps, n_lev), rtol=1e-14)
    k47 = jnp.array([multiband_conductivity(t, *single_band_multiband_data(t, n_lev, kappa)) for t in temps])
    np.testing.assert_allclose(k47, kth, rtol=1e-12)
    # paper Fig. 8 numbers (PHYSICS.md): peak ~1.67e-3 at k_B T ~ 0.147
    tt = jnp.linspace(0.1, 0.2, 20001)
    k = thermal_conductivity(tt, kappa, n_lev)
    assert abs(float(k.max()) - 1.67e-3) < 0.01e-3
    assert abs(float(tt[jnp.argmax(k)]) - 0.147) < 0.002


def test_deviation_d2():
    ts = jnp.linspace(0, 2, 2001)
    assert float(deviation_d2(ts, jnp.zeros_like(ts), jnp.zeros_like(ts))) == 0.0
    np.testing.assert_allclose(deviation_d2(ts, ts, jnp.zeros_like(ts)), 4 / 3, rtol=1e-6)


def _lambda_loss(lam, chain, psi0, ts, data):
    c = eqx.tree_at(lambda m: m.coupling, chain, lam)
    p = _populations(c, psi0, ts)
    return jnp.sum((p - data) ** 2)


def test_lambda_gradient_through_exact_evolution_matches_finite_differences(chain, psi0):
    ts = jnp.linspace(0, 2 / float(chain.kappa), 7)
    data = _populations(chain, psi0, ts)
    lam = 0.8 * LAM
    g = jax.grad(_lambda_loss)(lam, chain, psi0, ts, data)
    h = 1e-4 * LAM
    loss = lambda lam: _lambda_loss(lam, chain, psi0, ts, data)
    fd = (loss(lam + h) - loss(lam - h)) / (2 * h)
    assert abs(float(g)) > 1.0  # a real slope, not a flat loss
    np.testing.assert_allclose(g, fd, rtol=1e-5)


def test_bad_inputs_raise_clear_errors():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="n_subunits"):
        HeatChain.random(key, 1, 10)
    with pytest.raises(ValueError, match="n_levels"):
        HeatChain.random(key, 2, 0)
    with pytest.raises(ValueError, match="n_levels"):
        HeatChain.random(key, 2, 10.0)
    with pytest.raises(ValueError, match="coupling"):
        HeatChain.random(key, 2, 10, coupling=-1e-3)
    with pytest.raises(ValueError, match="band_width"):
        HeatChain.random(key, 2, 10, band_width=0.0)
    with pytest.raises(ValueError, match="band_width"):
        HeatChain.random(key, 2, 10, band_width=3.0)
    ch = HeatChain.random(key, 2, 40, coupling=6.25e-4)
    with pytest.raises(ValueError, match="psi_band"):
        ch.local_state(jnp.ones(7))
    with pytest.raises(MemoryError, match=r"dimension 80 needs about .*KiB but only 1000 B"):
        ch.hamiltonian(budget=1000)


def test_validity_warning():
    with pytest.warns(HAMValidityWarning, match=r"lambda n / delta_eps >= 1/2"):
        HeatChain.random(jax.random.key(0), 2, 10, coupling=1e-4)
    with pytest.warns(HAMValidityWarning, match=r"lambda\^2 n / delta_eps\^2"):
        HeatChain.random(jax.random.key(0), 2, 100, coupling=0.01)
