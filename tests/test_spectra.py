"""Tests of thermojax.spectra against NumPy/SciPy/QuTiP and exact facts."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import qutip
import scipy.linalg

from thermojax.spectra import (
    Eigensystem,
    degenerate_levels,
    eigh,
    expect,
    goe_matrix,
    hilbert_schmidt_distance,
    ket_to_dm,
    partial_trace,
    purity,
    trace_distance,
    von_neumann_entropy,
)


def _random_rho(key, d, rank=None):
    rank = d if rank is None else rank
    k1, k2 = jax.random.split(key)
    a = jax.random.normal(k1, (d, rank)) + 1j * jax.random.normal(k2, (d, rank))
    rho = a @ a.conj().T
    return rho / jnp.trace(rho)


def _random_hermitian(key, d):
    k1, k2 = jax.random.split(key)
    a = jax.random.normal(k1, (d, d)) + 1j * jax.random.normal(k2, (d, d))
    return 0.5 * (a + a.conj().T)


# --- eigen-decompositions ------------------------------------------------------------


def test_eigh_reconstructs_and_sorts(getkey):
    h = _random_hermitian(getkey(), 7)
    es = eigh(h)
    assert es.energies.shape == (7,) and es.vectors.shape == (7, 7)
    assert np.all(np.diff(np.asarray(es.energies)) >= 0)
    np.testing.assert_allclose(es.matrix(), h, atol=1e-12)
    np.testing.assert_allclose(es.energies, np.linalg.eigvalsh(np.asarray(h)), atol=1e-12)
    # basis changes are inverse to each other, for operators and kets, with batch axes
    ops = jnp.stack([h, h @ h])
    np.testing.assert_allclose(es.op_from_eigenbasis(es.op_to_eigenbasis(ops)), ops, atol=1e-11)
    np.testing.assert_allclose(es.op_to_eigenbasis(h), jnp.diag(es.energies), atol=1e-12)
    psi = jnp.arange(7.0) + 1j
    np.testing.assert_allclose(es.ket_from_eigenbasis(es.ket_to_eigenbasis(psi)), psi, atol=1e-12)


def test_eigh_rejects_bad_matrices():
    with pytest.raises(ValueError, match="`hamiltonian`.*Hermitian"):
        eigh(jnp.array([[0.0, 1.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="`h0`.*Hermitian"):
        eigh(jnp.array([[0.0, 1j], [1j, 0.0]]), name="h0")
    with pytest.raises(ValueError, match="square"):
        eigh(jnp.ones((2, 3)))


def test_eigensystem_direct_checks():
    v = jnp.eye(3)
    Eigensystem(jnp.array([0.0, 1.0, 2.0]), v)  # fine
    with pytest.raises(ValueError, match="ascending"):
        Eigensystem(jnp.array([1.0, 0.0, 2.0]), v)
    with pytest.raises(ValueError, match="unitary"):
        Eigensystem(jnp.array([0.0, 1.0, 2.0]), 2 * v)
    with pytest.raises(ValueError, match="shape"):
        Eigensystem(jnp.array([0.0, 1.0]), v)
    with pytest.raises(ValueError, match="real"):
        Eigensystem(jnp.array([0.0, 1.0, 2.0]) + 0j, v)


def test_degenerate_levels():
    e = jnp.array([-1.0, 0.0, 1e-13, 2e-13, 1.0, 1.0, 3.0])
    assert degenerate_levels(e, 1e-9).tolist() == [0, 1, 1, 1, 2, 2, 3]
    assert degenerate_levels(e, 0.0).tolist() == [0, 1, 2, 3, 4, 4, 5]


# --- random matrices ---------------------------------------------------------------


def test_goe_moments_and_determinism(getkey):
    key = getkey()
    d, radius = 300, 2.0
    h = goe_matrix(key, d, radius=radius)
    np.testing.assert_array_equal(h, goe_matrix(key, d, radius=radius))
    np.testing.assert_array_equal(h, h.T)
    # E[Tr H^2]/d = (d + 1) v with v = R^2/(4d); std of Tr H^2/d is ~ sqrt(2) v
    v = radius**2 / (4 * d)
    m2 = float(jnp.trace(h @ h)) / d
    assert abs(m2 - (d + 1) * v) < 6 * math.sqrt(2.0) * v
    # semicircle: spectrum inside [-R, R] up to edge fluctuations ~ d^(-2/3)
    e = np.linalg.eigvalsh(np.asarray(h))
    assert e.max() < radius * 1.1 and e.min() > -radius * 1.1
    with pytest.raises(ValueError, match="`d`"):
        goe_matrix(key, 0)
    with pytest.raises(ValueError, match="`radius`"):
        goe_matrix(key, 3, radius=-1.0)


# --- state functionals -------------------------------------------------------------


def test_entropy_and_purity(getkey):
    d = 5
    np.testing.assert_allclose(von_neumann_entropy(jnp.eye(d) / d), math.log(d), rtol=1e-13)
    psi = jnp.ones(d) / math.sqrt(d)
    assert abs(float(von_neumann_entropy(ket_to_dm(psi)))) < 1e-12
    np.testing.assert_allclose(purity(ket_to_dm(psi)), 1.0, rtol=1e-13)
    np.testing.assert_allclose(purity(jnp.eye(d) / d), 1.0 / d, rtol=1e-13)
    rhos = jnp.stack([_random_rho(getkey(), d) for _ in range(3)])
    s = von_neumann_entropy(rhos)
    assert s.shape == (3,)
    for r, si in zip(np.asarray(rhos), np.asarray(s)):
        ref = -np.trace(r @ scipy.linalg.logm(r)).real
        np.testing.assert_allclose(si, ref, rtol=1e-9)
        np.testing.assert_allclose(si, qutip.entropy_vn(qutip.Qobj(r)), rtol=1e-9)


def test_trace_distance_against_references(getkey):
    d = 4
    rho, sigma = _random_rho(getkey(), d), _random_rho(getkey(), d, rank=2)
    td = float(trace_distance(rho, sigma))
    ref = 0.5 * np.linalg.norm(np.asarray(rho - sigma), "nuc")
    np.testing.assert_allclose(td, ref, rtol=1e-12)
    np.testing.assert_allclose(td, qutip.tracedist(qutip.Qobj(rho), qutip.Qobj(sigma)), rtol=1e-9)
    # fails on a wrong input: different states are at positive distance
    assert td > 1e-3
    assert float(trace_distance(rho, rho)) < 1e-14
    e0, e1 = jnp.eye(2)[0], jnp.eye(2)[1]
    np.testing.assert_allclose(trace_distance(ket_to_dm(e0), ket_to_dm(e1)), 1.0, rtol=1e-14)
    # batched with broadcasting of sigma
    both = trace_distance(jnp.stack([rho, sigma]), jnp.stack([sigma, sigma]))
    np.testing.assert_allclose(both, [td, 0.0], atol=1e-14)


def test_hilbert_schmidt_distance(getkey):
    rho, sigma = _random_rho(getkey(), 3), _random_rho(getkey(), 3)
    hs = float(hilbert_schmidt_distance(rho, sigma))
    np.testing.assert_allclose(hs, np.linalg.norm(np.asarray(rho - sigma)), rtol=1e-13)
    assert hs > 1e-3
    assert float(hilbert_schmidt_distance(rho, rho)) == 0.0
    # squared HS distance = Tr[(rho - sigma)^2] for Hermitian arguments
    diff = np.asarray(rho - sigma)
    np.testing.assert_allclose(hs**2, np.trace(diff @ diff).real, rtol=1e-12)


def test_ket_to_dm_and_expect(getkey):
    psi = jax.random.normal(getkey(), (4, 3)) + 0j
    rho = ket_to_dm(psi)
    assert rho.shape == (4, 3, 3)
    np.testing.assert_allclose(rho[1], np.outer(psi[1], psi[1].conj()), atol=1e-15)
    op = _random_hermitian(getkey(), 3)
    np.testing.assert_allclose(expect(op, rho), np.einsum("bi,ij,bj->b", psi.conj(), op, psi))


def test_partial_trace_against_qutip(getkey):
    dims = (2, 3, 2)
    rho = _random_rho(getkey(), 12)
    q = qutip.Qobj(np.asarray(rho), dims=[list(dims), list(dims)])
    for keep in [(0,), (1,), (2,), (0, 2), (1, 2)]:
        np.testing.assert_allclose(
            partial_trace(rho, dims, keep), q.ptrace(list(keep)).full(), atol=1e-13
        )
    # product states factorise; batch axes pass through
    ra, rb = _random_rho(getkey(), 2), _random_rho(getkey(), 3)
    batch = jnp.stack([jnp.kron(ra, rb), jnp.kron(rb, ra)])
    np.testing.assert_allclose(partial_trace(batch[:1], (2, 3), (0,))[0], ra, atol=1e-14)
    np.testing.assert_allclose(partial_trace(batch[:1], (2, 3), (1,))[0], rb, atol=1e-14)
    assert partial_trace(batch, (3, 2), (1,)).shape == (2, 2, 2)
    with pytest.raises(ValueError, match="`rho`"):
        partial_trace(rho, (2, 2), (0,))
    with pytest.raises(ValueError, match="`keep`"):
        partial_trace(rho, dims, (3,))
