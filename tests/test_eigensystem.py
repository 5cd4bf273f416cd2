"""Evolution layer: the eigensystem propagator, the diffrax path (`solve_ode`), batching, checks."""

import diffrax as dfx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

import thermojax as tj
from thermojax._checks import check_memory
from thermojax.spectra import Eigensystem

TIGHT = tj.ODE(stepsize_controller=dfx.PIDController(rtol=1e-10, atol=1e-10))


def _random_hermitian(key, d):
    a = jax.random.normal(key, (d, d)) + 1j * jax.random.normal(jax.random.fold_in(key, 1), (d, d))
    return (a + a.conj().T) / 2


def test_solve_ode_complex_matches_closed_form():
    omega = 1.3
    ts = jnp.linspace(0, 10, 11)
    res = tj.solve_ode(lambda t, y, w: -1j * w * y, jnp.array([1.0 + 0j, 0.5j]), ts, args=omega, method=TIGHT)
    ref = np.exp(-1j * omega * np.asarray(ts))[:, None] * np.array([1.0, 0.5j])
    assert res.states.shape == (11, 2)  # (T, *y0.shape)
    np.testing.assert_allclose(res.states, ref, atol=1e-8)
    assert bool(res.success) and res.status == tj.Status.successful
    assert int(res.stats["num_steps"]) > 0


def test_solve_ode_e_ops_are_batch_first():
    ts = jnp.linspace(0, 2, 5)
    res = tj.solve_ode(lambda t, y, a: -y, jnp.array([1.0, 2.0]), ts, e_ops=lambda y: jnp.stack([y[0], y[0] + y[1]]),
                       method=TIGHT, options=tj.Options(save_states=False))
    assert res.states is None and res.expect.shape == (2, 5)  # (E, T)
    np.testing.assert_allclose(res.expect[1], 3 * np.exp(-np.asarray(ts)), rtol=1e-8)


def test_eigen_propagator_matches_expm_and_diffrax(getkey):
    h = _random_hermitian(getkey(), 12)
    es = Eigensystem.from_hamiltonian(h)
    psi0 = jnp.zeros(12, complex).at[0].set(1.0)
    ts = jnp.linspace(0, 3, 4)
    out = es.evolve(psi0, ts).states
    assert out.shape == (4, 12)
    for t, y in zip(ts, out):
        ref = scipy.linalg.expm(-1j * np.asarray(h) * float(t)) @ np.asarray(psi0)
        np.testing.assert_allclose(y, ref, atol=1e-11)
        np.testing.assert_allclose(es.propagator(t) @ psi0, ref, atol=1e-11)
    ctrl = tj.ODE(stepsize_controller=dfx.PIDController(rtol=1e-11, atol=1e-11))
    via = tj.solve_ode(lambda t, y, a: -1j * (h @ y), psi0, ts, method=ctrl).states
    np.testing.assert_allclose(via, out, atol=1e-8)


def test_density_matrices_evolve_as_u_rho_u_dagger(getkey):
    h = _random_hermitian(getkey(), 6)
    es = Eigensystem.from_hamiltonian(h)
    psi = jax.random.normal(getkey(), (2, 6)) + 0j
    psi = psi / jnp.linalg.norm(psi, axis=-1, keepdims=True)
    rho = jnp.einsum("bi,bj->bij", psi, psi.conj())
    ts = jnp.array([0.0, 0.4, 1.3])
    out = es.evolve(rho, ts).states
    assert out.shape == (2, 3, 6, 6)  # batch first, then time
    kets = es.evolve(psi, ts).states
    np.testing.assert_allclose(out, jnp.einsum("bti,btj->btij", kets, kets.conj()), atol=1e-12)
    u = es.propagator(1.3)
    np.testing.assert_allclose(out[1, -1], u @ rho[1] @ u.conj().T, atol=1e-12)


def test_batches_and_rows(getkey):
    h = _random_hermitian(getkey(), 8)
    es = Eigensystem.from_hamiltonian(h)
    psis = jnp.eye(8, dtype=complex)[:3]
    ts = jnp.array([0.0, 0.7])
    full = es.evolve(psis, ts).states
    assert full.shape == (3, 2, 8)
    np.testing.assert_allclose(jnp.linalg.norm(full, axis=-1), 1.0, atol=1e-12)
    part = es.evolve(psis, ts, rows=slice(2, 5), kind="ket").states
    np.testing.assert_allclose(part, full[..., 2:5], atol=1e-13)
    # a callable e_ops sees one time's (rows of the) states; expect is (*batch, E, T)
    pops = es.evolve(psis, ts, e_ops=lambda x: jnp.abs(x) ** 2, save_states=False, kind="ket")
    assert pops.states is None and pops.expect.shape == (3, 8, 2)
    np.testing.assert_allclose(pops.expect, jnp.swapaxes(jnp.abs(full) ** 2, -1, -2), atol=1e-13)
    batched = tj.sesolve(h, psis, ts, method=TIGHT)
    assert batched.states.shape == (3, 2, 8)
    np.testing.assert_allclose(batched.states, full, atol=1e-7)


def test_batch_over_parameters():
    ts = jnp.linspace(0, 1, 3)
    rates = jnp.array([0.5, 1.0, 2.0])
    solve = jax.vmap(lambda k, y0: tj.solve_ode(lambda t, y, k: -k * y, y0, ts, args=k, method=TIGHT))
    res = solve(rates, jnp.ones((3, 1)))
    np.testing.assert_allclose(res.states[..., 0], np.exp(-np.outer(rates, ts)), atol=1e-8)


def test_bad_inputs(getkey):
    with pytest.raises(ValueError, match="strictly increasing"):
        tj.solve_ode(lambda t, y, a: y, jnp.ones(2), jnp.array([0.0, 1.0, 0.5]))
    with pytest.raises(ValueError, match="1-D"):
        tj.solve_ode(lambda t, y, a: y, jnp.ones(2), jnp.ones((2, 2)))
    with pytest.raises(TypeError, match="method"):
        tj.solve_ode(lambda t, y, a: y, jnp.ones(2), jnp.array([0.0, 1.0]), method=tj.Expm())
    with pytest.raises(ValueError, match="Hermitian"):
        Eigensystem.from_hamiltonian(jnp.array([[0.0, 1.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="square"):
        Eigensystem.from_hamiltonian(jnp.ones((2, 3)))
    es = Eigensystem.from_hamiltonian(jnp.eye(3))
    with pytest.raises(ValueError, match=r"`state0`.*\(4,\)"):
        es.evolve(jnp.ones(4) / 2, jnp.array([0.0]))
    with pytest.raises(ValueError, match="normalised"):
        es.evolve(jnp.ones(3), jnp.array([0.0]))
    with pytest.raises(ValueError, match="rows"):
        es.evolve(jnp.eye(3) / 3, jnp.array([0.0]), rows=slice(0, 2))
    with pytest.raises(MemoryError, match="needs about"):
        check_memory(10 * 2**30, "test array", budget=2**30)
