"""Planck's law from counting and from shell dynamics (thermojax.models.solid, part 2).

Exact checks: counting against brute-force enumeration (exact rationals), normalisation up
to N = Q = 1e6, the log-space evaluation against an independent product of exact ratios, the
large-N law of the counting-versus-Planck difference; the matrix-free shell operators against
an independent Fock-space construction; unitary shell dynamics conserving norm, quanta and
energy and matching SciPy's expm_multiply; OQT's photon distribution against OQTModel.evolve.
"""

import itertools
import math
from fractions import Fraction

import diffrax as dfx
import jax
import jax.numpy as jnp
import numpy as np
import pydantic
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import expm_multiply

import thermojax
from thermojax.experiments.solid import planck_counting, planck_dynamics
from thermojax.models import solid
from thermojax.models.oqt import OQTModel
from thermojax.spectra import eigh
from thermojax.thermal import bose_einstein

# ----------------------------------------------------------------------------------
# counting
# ----------------------------------------------------------------------------------


def _brute_force(n, q):
    """P(n) by enumerating every occupation of N matter modes + 1 radiation mode (exact)."""
    counts = [0] * (q + 1)
    for occ in itertools.product(range(q + 1), repeat=n + 1):
        if sum(occ) == q:
            counts[occ[-1]] += 1
    total = sum(counts)
    return [Fraction(c, total) for c in counts]


@pytest.mark.parametrize("n,q", [(1, 4), (2, 5), (3, 3), (4, 6)])
def test_counting_equals_brute_force_enumeration(n, q):
    exact = _brute_force(n, q)
    got = np.asarray(solid.photon_distribution(n, q))
    np.testing.assert_allclose(got, [float(x) for x in exact], rtol=1e-13, atol=0)
    assert sum(exact) == 1
    assert float(np.sum(got)) == pytest.approx(1.0, abs=1e-14)
    # the uniform ensemble on the enumerated shell gives the same marginal
    np.testing.assert_allclose(solid.ShellBasis.build(n, q).counting_distribution(), got, rtol=1e-13)


@pytest.mark.parametrize("n,q", [(10, 7), (1000, 3000), (10**5, 10**6), (10**6, 10**6)])
def test_counting_is_normalised_and_has_the_exact_mean(n, q):
    p = np.asarray(solid.photon_distribution(n, q))
    assert abs(p.sum() - 1) < 1e-13
    assert np.sum(np.arange(q + 1) * p) == pytest.approx(solid.counting_mean_photon_number(n, q), rel=1e-12)


@pytest.mark.parametrize("n,q", [(1000, 3000), (10**6, 10**6)])
def test_log_space_gammaln_formula_within_its_stated_precision(n, q):
    """The gammaln form loses ~eps ln Gamma(Q+N+1) (differences of numbers ~1e7 at 1e6)."""
    ref = np.asarray(solid.photon_distribution(n, q))
    got = np.asarray(solid.photon_distribution(n, q, method="gammaln"))
    tol = 4 * np.finfo(float).eps * math.lgamma(q + n + 1)
    bulk = ref > 1e-200
    assert np.max(np.abs(np.log(got[bulk]) - np.log(ref[bulk]))) < tol
    assert abs(got.sum() - 1) < tol


def test_log_space_counting_against_exact_rationals():
    """The first entries at N = Q = 1e6 as exact fractions, P(0) = N/(Q+N) and
    P(n)/P(n-1) = (Q-n+1)/(Q-n+N)."""
    n = q = 10**6
    got = np.asarray(solid.photon_distribution(n, q))
    f = Fraction(n, q + n)
    for j in range(6):
        if j:
            f *= Fraction(q - j + 1, q - j + n)
        assert got[j] == pytest.approx(float(f), rel=1e-14)


def test_density_of_states_and_beta():
    assert float(jnp.exp(solid.log_density_of_states(4, 3))) == pytest.approx(math.comb(6, 3), rel=1e-12)
    # beta = d ln g / dE: digamma against a finite difference of the gammaln expression
    n, q, h = 50, 80.0, 1e-4
    fd = (solid.log_density_of_states(n + 1, q + h) - solid.log_density_of_states(n + 1, q - h)) / (2 * h)
    assert float(solid.counting_beta(n, int(q))) == pytest.approx(float(fd), rel=1e-8)
    fd_m = (solid.log_density_of_states(n, q + h) - solid.log_density_of_states(n, q - h)) / (2 * h)
    assert float(solid.counting_beta(n, int(q), reservoir="matter")) == pytest.approx(float(fd_m), rel=1e-8)


def test_counting_approaches_planck_as_one_over_n():
    """<n>_Planck / <n>_counting - 1 -> 1/N + 1/(2Q) (beta from g_{N+1}, digamma): 1.5/N at Q = N."""
    for n in (10**3, 10**4):
        row = planck_counting.compare(n, n)
        assert row["relative_difference"] * n == pytest.approx(1.5, rel=2e-3)
        assert row["planck"] == pytest.approx(float(bose_einstein(1.0, row["beta"])), rel=1e-14)
        assert row["counting_closed_form"] == pytest.approx(row["counting"], rel=1e-9)
    # the matter reservoir (g_N) gives 2/N + 1/(2Q) instead
    assert planck_counting.compare(10**4, 10**4, "matter")["relative_difference"] * 1e4 == pytest.approx(2.5, rel=2e-3)


def test_planck_distribution_mean_is_bose_einstein():
    beta = 0.37
    p = np.asarray(solid.planck_distribution(beta, 400))
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.sum(np.arange(401) * p) == pytest.approx(float(bose_einstein(1.0, beta)), rel=1e-10)


def test_total_variation_fails_on_different_inputs():
    p = jnp.array([0.5, 0.5])
    assert float(solid.total_variation(p, p)) == 0.0
    assert float(solid.total_variation(p, jnp.array([1.0, 0.0]))) == pytest.approx(0.5)
    assert float(solid.total_variation(jnp.array([0.5, 0.3]), jnp.array([0.5, 0.5]))) == pytest.approx(0.2)


# ----------------------------------------------------------------------------------
# the shell
# ----------------------------------------------------------------------------------


def _fock_ops(m, q):
    """Annihilators of m modes truncated at q quanta, as (q+1)^m dense matrices (kron order)."""
    a = np.diag(np.sqrt(np.arange(1, q + 1)), 1)
    eye = np.eye(q + 1)
    ops = []
    for k in range(m):
        o = np.array([[1.0]])
        for j in range(m):
            o = np.kron(o, a if j == k else eye)
        ops.append(o)
    return ops


@pytest.fixture(scope="module")
def small_shell():
    """N = 2 matter modes + radiation, Q = 3: Fock-space operators and the shell's embedding."""
    basis = solid.ShellBasis.build(2, 3)
    m, q = basis.n_modes, basis.quanta
    ops = _fock_ops(m, q)
    occ = np.asarray(basis.occupations)
    idx = [int(sum(int(x) * (q + 1) ** (m - 1 - j) for j, x in enumerate(row))) for row in occ]
    return basis, ops, idx


def test_shell_basis_enumerates_the_shell():
    basis = solid.ShellBasis.build(4, 5)
    occ = np.asarray(basis.occupations)
    assert basis.dim == math.comb(5 + 4, 4) == occ.shape[0]
    assert np.all(occ.sum(1) == 5) and np.all(occ >= 0)
    assert len({tuple(r) for r in occ}) == basis.dim
    np.testing.assert_array_equal(basis.index(occ), np.arange(basis.dim))


@pytest.mark.parametrize("kind", ["hopping", "two_body"])
def test_shell_hamiltonian_against_fock_space(small_shell, kind):
    basis, ops, idx = small_shell
    m = basis.n_modes
    key = jax.random.key(3)
    if kind == "hopping":
        g = np.asarray(solid.random_hopping(key, m, radiation_coupling=0.5))
        h_full = sum(g[i, j] * ops[i].T @ ops[j] for i in range(m) for j in range(m))
    else:
        g = np.asarray(solid.random_two_body(key, m, radiation_coupling=0.5))
        pairs = [(i, j) for i in range(m) for j in range(i, m)]
        lower = [ops[i] @ ops[j] / np.sqrt(1 + (i == j)) for i, j in pairs]
        h_full = sum(g[a, b] * lower[a].T @ lower[b] for a in range(len(pairs)) for b in range(len(pairs)))
    n_tot = sum(o.T @ o for o in ops)
    assert np.max(np.abs(h_full @ n_tot - n_tot @ h_full)) < 1e-12  # quanta conserved
    op = solid.ShellHamiltonian(basis, g, kind)
    dense = np.asarray(op.dense())
    np.testing.assert_allclose(dense, h_full[np.ix_(idx, idx)], atol=1e-12)
    r, c, v = op.coo()
    coo = np.zeros_like(dense)
    coo[r, c] = v
    np.testing.assert_allclose(coo, dense, atol=1e-12)


@pytest.fixture(scope="module")
def shell_run():
    """Two-body coupling on N = 4, Q = 4 (D = 70): matrix-free diffrax against dense Eigen."""
    basis = solid.ShellBasis.build(4, 4)
    op = solid.ShellHamiltonian(basis, solid.random_two_body(jax.random.key(0), basis.n_modes), "two_body")
    psi0 = solid.cold_product_state(basis).astype(complex)
    ts = jnp.linspace(0.0, 3.0, 31)
    tol = jnp.asarray(1e-10)
    method = thermojax.ODE(dfx.Dopri8(), dfx.PIDController(rtol=tol, atol=tol), max_steps=10**7)
    sparse = thermojax.sesolve(op, psi0, ts, method=method, options=thermojax.Options(throw=True))
    dense = thermojax.sesolve(op.dense(), psi0, ts, method=thermojax.Eigen())
    return basis, op, psi0, ts, np.asarray(sparse.states), np.asarray(dense.states)


def test_unitary_shell_dynamics_conserves_quanta_norm_and_energy(shell_run):
    basis, op, psi0, ts, sparse, dense = shell_run
    np.testing.assert_allclose(sparse, dense, atol=1e-8)
    norm = np.linalg.norm(sparse, axis=-1)
    assert np.max(np.abs(norm - 1)) < 2e-8  # Dopri8 at rtol = atol = 1e-10 (Runge-Kutta is not unitary)
    assert np.max(np.abs(np.linalg.norm(dense, axis=-1) - 1)) < 1e-12  # the exact propagator is
    occ = np.asarray(basis.mode_occupations(jnp.asarray(sparse)))
    assert np.max(np.abs(occ.sum(-1) - basis.quanta * norm**2)) < 1e-12  # sum_k <n_k> = Q <psi|psi>
    assert np.max(np.abs(occ[:, -1])) > 1e-2  # while quanta do move into the radiation mode
    e = np.real(np.einsum("td,td->t", sparse.conj(), np.asarray(op.mv(0.0, jnp.asarray(sparse.T))).T)) / norm**2
    h_norm = float(np.max(np.abs(np.linalg.eigvalsh(np.asarray(op.dense())))))
    # energy error <= 2 ||H|| |psi - psi_exact| (~ 2 x 20 x 1e-8 here)
    assert np.max(np.abs(e - e[0])) < 2 * h_norm * np.max(np.linalg.norm(sparse - dense, axis=-1)) + 1e-12


def test_matrix_free_dynamics_matches_scipy_expm_multiply(shell_run):
    basis, op, psi0, ts, sparse, _ = shell_run
    r, c, v = op.coo()
    h = sp.csr_matrix((v, (r, c)), shape=(basis.dim, basis.dim))
    ref = expm_multiply(-1j * h, np.asarray(psi0), start=0.0, stop=float(ts[-1]), num=len(ts), endpoint=True)
    np.testing.assert_allclose(sparse, ref, atol=1e-8)


def test_oqt_photon_distribution_matches_oqt_model_evolve():
    basis = solid.ShellBasis.build(2, 3)
    op = solid.ShellHamiltonian(basis, solid.random_two_body(jax.random.key(1), basis.n_modes), "two_body")
    es = eigh(op.dense())
    psi0 = solid.cold_product_state(basis).astype(complex)
    model = OQTModel.microcanonical(es, psi0, 0.3)
    ts = jnp.linspace(0.0, 5.0, 11)
    rho0 = es.op_to_eigenbasis(jnp.outer(psi0, psi0.conj()))
    with jax.numpy_rank_promotion("allow"):  # OQTModel._evolve_closed multiplies (1,1,1) by (d,d) (core bug)
        rho_t = es.op_from_eigenbasis(model.evolve(rho0, ts).states)  # (T, D, D) in the Fock basis
    onehot = np.asarray(solid.RadiationDistribution(basis).onehot)
    p_ref = np.real(np.einsum("tdd,dk->kt", np.asarray(rho_t), onehot))
    p_u = np.asarray(es.evolve(psi0, ts, e_ops=solid.RadiationDistribution(basis)).expect.real)
    p_chi = onehot.T @ (np.abs(np.asarray(es.vectors)) ** 2 @ np.asarray(model.chi))
    got = planck_dynamics.oqt_radiation_distribution(jnp.asarray(p_u), jnp.asarray(p_chi), 0.3, ts)
    np.testing.assert_allclose(got, p_ref, atol=1e-12)


def _thermalisation(n, q, realisations, n_times):
    cfg = planck_dynamics.PlanckDynamicsConfig(shells=[[n, q]], n_realisations=realisations, time={"n_times": n_times})
    tv = {}
    for kind in ("hopping", "two_body"):
        out = planck_dynamics._shell(cfg, n, q, kind, jax.random.key(7))
        tv[kind] = out["tv_time_average"]
        np.testing.assert_allclose(out["p_bar"].sum(-1), 1.0, atol=1e-10)
        if kind == "two_body":  # hopping's near-degenerate levels dephase too slowly for a finite window
            np.testing.assert_allclose(out["tv_diagonal_ensemble"], out["tv_time_average"], atol=0.02)
    return tv


def test_two_body_coupling_thermalises_better_than_hopping():
    """The headline of planck_dynamics at a small size (N = Q = 4, D = 70): the two-body
    coupling's time-averaged P(n) is closer to counting than hopping's, by more than three
    standard deviations of the realisations."""
    tv = _thermalisation(4, 4, 6, 61)
    assert tv["two_body"].mean() + 3 * tv["two_body"].std() < tv["hopping"].mean()


@pytest.mark.slow
def test_two_body_distance_shrinks_with_the_shell_while_hopping_does_not():
    small, large = _thermalisation(4, 4, 6, 101), _thermalisation(6, 6, 6, 101)
    assert large["two_body"].mean() < 0.5 * small["two_body"].mean()
    assert large["hopping"].mean() > 2 * large["two_body"].mean()


# ----------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="`quanta`"):
        solid.photon_distribution(3, -1)
    with pytest.raises(ValueError, match="`quanta`"):
        solid.ShellBasis.build(3, -2)
    with pytest.raises(ValueError, match="`quanta`"):
        solid.log_density_of_states(3, jnp.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="`n_oscillators`"):
        solid.photon_distribution(0, 3)
    with pytest.raises(ValueError, match="`quanta`"):
        solid.counting_beta(3, 0)
    with pytest.raises(ValueError, match="`reservoir`"):
        solid.counting_beta(3, 3, reservoir="bath")
    with pytest.raises(MemoryError, match="quanta`/`n_oscillators"):
        solid.ShellBasis.build(30, 30)  # C(60, 30) ~ 1e17 states
    with pytest.raises(MemoryError, match="quanta`/`n_oscillators"):
        solid.ShellBasis.build(6, 6, memory_budget=10_000)
    basis = solid.ShellBasis.build(2, 2)
    with pytest.raises(MemoryError, match="quanta`/`n_oscillators"):
        solid.ShellHamiltonian(basis, jnp.eye(3), memory_budget=100)
    with pytest.raises(ValueError, match="`coupling`"):
        solid.ShellHamiltonian(basis, jnp.eye(4))
    with pytest.raises(ValueError, match="`coupling`"):
        solid.ShellHamiltonian(basis, jnp.triu(jnp.ones((3, 3))))
    with pytest.raises(ValueError, match="`quanta`"):
        solid.ShellHamiltonian(solid.ShellBasis.build(2, 1), jnp.eye(6), "two_body")
    with pytest.raises(ValueError, match="`occupations`"):
        basis.index([1, 1, 1])
    with pytest.raises(pydantic.ValidationError, match="shells"):
        planck_dynamics.PlanckDynamicsConfig(shells=[[3, 1]])
    with pytest.raises(pydantic.ValidationError, match="quanta"):
        planck_counting.PlanckCountingConfig(quanta=-1)
