"""Evolution layer: diffrax path, eigen-propagator, batching, checks."""

import diffrax as dfx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from thermojax.evolve import EigenPropagator, check_memory, solve_ode, solve_ode_batched


def _random_hermitian(key, d):
    a = jax.random.normal(key, (d, d)) + 1j * jax.random.normal(jax.random.fold_in(key, 1), (d, d))
    return (a + a.conj().T) / 2


def test_solve_ode_complex_matches_closed_form():
    omega = 1.3
    ts = jnp.linspace(0, 10, 11)
    res = solve_ode(lambda t, y, w: -1j * w * y, jnp.array([1.0 + 0j, 0.5j]), ts, args=omega,
                    stepsize_controller=dfx.PIDController(rtol=1e-10, atol=1e-10))
    ref = np.exp(-1j * omega * np.asarray(ts))[:, None] * np.array([1.0, 0.5j])
    np.testing.assert_allclose(res.ys, ref, atol=1e-8)
    assert bool(res.success)
    assert int(res.stats["num_steps"]) > 0


def test_eigen_propagator_matches_expm_and_diffrax(getkey):
    h = _random_hermitian(getkey(), 12)
    prop = EigenPropagator.from_hamiltonian(h)
    psi0 = jnp.zeros(12, complex).at[0].set(1.0)
    ts = jnp.linspace(0, 3, 4)
    out = prop.evolve(psi0, ts).ys
    for t, y in zip(ts, out):
        ref = scipy.linalg.expm(-1j * np.asarray(h) * float(t)) @ np.asarray(psi0)
        np.testing.assert_allclose(y, ref, atol=1e-11)
    via = solve_ode(lambda t, y, a: -1j * (h @ y), psi0, ts,
                    stepsize_controller=dfx.PIDController(rtol=1e-11, atol=1e-11)).ys
    np.testing.assert_allclose(via, out, atol=1e-8)


def test_batches_and_rows(getkey):
    h = _random_hermitian(getkey(), 8)
    prop = EigenPropagator.from_hamiltonian(h)
    psis = jnp.eye(8, dtype=complex)[:3]
    ts = jnp.array([0.0, 0.7])
    full = prop.evolve(psis, ts).ys
    assert full.shape == (3, 2, 8)
    np.testing.assert_allclose(jnp.linalg.norm(full, axis=-1), 1.0, atol=1e-12)
    part = prop.evolve(psis, ts, rows=slice(2, 5)).ys
    np.testing.assert_allclose(part, full[..., 2:5], atol=1e-13)
    batched = solve_ode_batched(lambda t, y, a: -1j * (h @ y), psis, ts,
                                stepsize_controller=dfx.PIDController(rtol=1e-10, atol=1e-10))
    assert batched.ys.shape == (3, 2, 8)
    np.testing.assert_allclose(batched.ys, full, atol=1e-7)


def test_batch_over_parameters():
    ts = jnp.linspace(0, 1, 3)
    rates = jnp.array([0.5, 1.0, 2.0])
    res = solve_ode_batched(lambda t, y, k: -k * y, jnp.ones((3, 1)), ts, args=rates, args_axes=0,
                            stepsize_controller=dfx.PIDController(rtol=1e-10, atol=1e-10))
    np.testing.assert_allclose(res.ys[..., 0], np.exp(-np.outer(rates, ts)), atol=1e-8)


def test_bad_inputs(getkey):
    with pytest.raises(ValueError, match="strictly increasing"):
        solve_ode(lambda t, y, a: y, jnp.ones(2), jnp.array([0.0, 1.0, 0.5]))
    with pytest.raises(ValueError, match="1-D"):
        solve_ode(lambda t, y, a: y, jnp.ones(2), jnp.ones((2, 2)))
    with pytest.raises(ValueError, match="Hermitian"):
        EigenPropagator.from_hamiltonian(jnp.array([[0.0, 1.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="square"):
        EigenPropagator.from_hamiltonian(jnp.ones((2, 3)))
    prop = EigenPropagator.from_hamiltonian(jnp.eye(3))
    with pytest.raises(ValueError, match="last axis 3"):
        prop.evolve(jnp.ones(4), jnp.array([0.0]))
    with pytest.raises(MemoryError, match="needs about"):
        check_memory(10 * 2**30, "test array", budget=2**30)
