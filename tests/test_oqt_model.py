"""OQT / SUI model (A. Mukherjee, arXiv:2504.16197; docs/models/oqt.md) against exact facts."""

import math

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
import scipy.optimize
from jax.flatten_util import ravel_pytree

import thermojax as tj
from thermojax.lindblad import lindblad_rhs, liouvillian
from thermojax.models.oqt import (
    OQTSSE,
    OQTModel,
    canonical_steady_state,
    d_chi,
    diagnostics,
    given_steady_state,
    ket_diagnostics,
    microcanonical_steady_state,
    oqt_jump_ops,
)
from thermojax.spectra import eigh, goe_matrix, ket_to_dm, partial_trace
from thermojax.thermal import microcanonical_window
from thermojax.trajectories import AbstractSDE, simulate_trajectories

# ----------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------


def _ket(key, d):
    k1, k2 = jax.random.split(key)
    psi = jax.random.normal(k1, (d,)) + 1j * jax.random.normal(k2, (d,))
    return psi / jnp.linalg.norm(psi)


def _rho(key, d, rank=2):
    k1, k2 = jax.random.split(key)
    a = jax.random.normal(k1, (d, rank)) + 1j * jax.random.normal(k2, (d, rank))
    rho = a @ a.conj().T
    return rho / jnp.trace(rho)


def _unitary(key, d):
    q, _ = jnp.linalg.qr(_rho(key, d, rank=d) * d + jnp.eye(d) * 0.1j)
    return q


def _projectors(key, d, sizes):
    """Complete orthogonal projectors of ranks `sizes` in a random basis."""
    u = _unitary(key, d)
    out, start = [], 0
    for s in sizes:
        cols = u[:, start : start + s]
        out.append(cols @ cols.conj().T)
        start += s
    return jnp.stack(out)


@pytest.fixture
def setup(getkey):
    d = 5
    h = goe_matrix(getkey(), d)
    psi0 = _ket(getkey(), d)
    model = OQTModel.microcanonical(h, psi0, alpha_N=0.7)
    rho0 = ket_to_dm(model.eigensystem.ket_to_eigenbasis(psi0))
    return model, rho0


def _noise_basis(sde):
    """The columns G_j of the linear map dw -> g(psi) dw, as (n_noise, d)."""
    zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), sde.noise_shape())
    flat, unravel = ravel_pytree(zeros)
    return jax.jit(
        lambda psi: jax.vmap(lambda e: sde.diffusion_mv(0.0, psi, None, unravel(e)))(
            jnp.eye(flat.shape[0])
        )
    )


TIGHT = tj.ODE(dfx.Tsit5(), dfx.PIDController(rtol=1e-12, atol=1e-14))


def _diffrax(model, rho0, ts):
    """Tight-tolerance diffrax solve of the model's structured right-hand side, through
    ``thermojax.mesolve`` with the model as a generator object (compiled once per model
    structure: the rates are array fields)."""
    return tj.mesolve(model, [], rho0, ts, method=TIGHT).states


def _dense(model, rho0, ts):
    """Exact dense-Liouvillian exponential (``mesolve`` with ``Expm``), the replacement of
    the old ``OQTModel.evolve_dense``."""
    return tj.mesolve(model, [], rho0, ts, method=tj.Expm()).states


# ----------------------------------------------------------------------------------
# master equation: three paths
# ----------------------------------------------------------------------------------


def test_structured_rhs_equals_generic_gksl(getkey):
    d = 16
    h = goe_matrix(getkey(), d)
    model = OQTModel.microcanonical(
        h, _ket(getkey(), d), 1.3, Gamma=0.4, projectors=_projectors(getkey(), d, (5, 8, 3))
    )
    rho = _rho(getkey(), d, rank=3)
    rho_eig = model.eigensystem.op_to_eigenbasis(rho)
    fast = model.rhs(0.0, rho_eig)
    generic = lindblad_rhs(rho_eig, model.hamiltonian_eig(), model.jump_ops())
    np.testing.assert_allclose(fast, generic, atol=1e-12)
    # dense superoperator, row-major vec
    lv = model.liouvillian() @ rho_eig.reshape(-1)
    np.testing.assert_allclose(lv.reshape(d, d), fast, atol=1e-12)
    # basis independence: generic GKSL in the original basis gives the same generator
    es = model.eigensystem
    ops_orig = es.op_from_eigenbasis(model.jump_ops())
    np.testing.assert_allclose(
        es.op_from_eigenbasis(fast), lindblad_rhs(rho, h.astype(complex), ops_orig), atol=1e-11
    )
    # batch axes
    both = model.rhs(0.0, jnp.stack([rho_eig, 2 * rho_eig]))
    np.testing.assert_allclose(both[1], 2 * fast, atol=1e-12)


def test_closed_form_and_dense_agree(setup):
    model, rho0 = setup
    gamma = float(model.alpha_N)
    ts = jnp.linspace(0.0, 4.0, 9)
    closed = model.evolve(rho0, ts).states
    dense = _dense(model, rho0, ts)
    assert closed.shape == (9, 5, 5)
    np.testing.assert_allclose(dense, closed, atol=1e-9, rtol=0)
    # batched over initial states: (*batch, T, d, d), batch first
    two = model.evolve(jnp.stack([rho0, model.chi_matrix()]), ts)
    assert two.states.shape == (2, 9, 5, 5) and two.success.shape == (2,)
    np.testing.assert_allclose(two.states[0], closed, atol=1e-15)
    np.testing.assert_allclose(two.states[1], jnp.broadcast_to(model.chi_matrix(), (9, 5, 5)))
    # mesolve batches the same way
    both = tj.mesolve(model, [], jnp.stack([rho0, model.chi_matrix()]), ts, method=tj.Expm()).states
    np.testing.assert_allclose(both, two.states, atol=1e-9, rtol=0)
    # D_chi(t) = D_chi(0) exp(-2 gamma t) (paper, after eq. 6)
    expected = d_chi(model, rho0) * jnp.exp(-2 * gamma * ts)
    np.testing.assert_allclose(d_chi(model, closed), expected, rtol=1e-12)
    np.testing.assert_allclose(d_chi(model, dense), expected, rtol=1e-8)


@pytest.mark.slow  # the same physics has faster tests in the default run
def test_diffrax_agrees_with_closed_form_and_dense(getkey):
    """Structured rhs through diffrax (one compilation: Gamma is an array field)."""
    d = 5
    model = OQTModel.microcanonical(
        goe_matrix(getkey(), d),
        _ket(getkey(), d),
        0.5,
        Gamma=1.5,
        projectors=_projectors(getkey(), d, (2, 3)),
    )
    rho0 = model.eigensystem.op_to_eigenbasis(_rho(getkey(), d))
    ts = jnp.linspace(0.0, 3.0, 7)
    # with collapse: against the dense-Liouvillian exponential
    dense = _dense(model, rho0, ts)
    np.testing.assert_allclose(_diffrax(model, rho0, ts), dense, atol=1e-9, rtol=0)
    np.testing.assert_allclose(jnp.trace(dense, axis1=-2, axis2=-1), 1.0, atol=1e-12)
    with pytest.raises(ValueError, match="SUI"):
        model.evolve(rho0, ts)
    # Gamma = 0 (projectors still present): the closed form of the plain OQT model
    plain = OQTModel(model.eigensystem, model.steady, model.alpha_N)
    off = eqx.tree_at(lambda m: m.Gamma, model, jnp.asarray(0.0))
    ys = _diffrax(off, rho0, ts)
    closed = plain.evolve(rho0, ts).states
    np.testing.assert_allclose(ys, closed, atol=1e-9, rtol=0)
    np.testing.assert_allclose(_dense(plain, rho0, ts), closed, atol=1e-9, rtol=0)
    expected = d_chi(plain, rho0) * jnp.exp(-2 * float(plain.alpha_N) * ts)
    np.testing.assert_allclose(d_chi(plain, ys), expected, rtol=1e-8)
    # the trace distance to chi never increases (docs/models/oqt.md)
    td = diagnostics(plain, ys).trace_distance
    assert np.all(np.diff(np.asarray(td)) <= 1e-12)


def test_energy_and_second_moment_relax(setup):
    model, rho0 = setup
    e = model.energies
    gamma = model.alpha_N

    def moment(t, k):
        rho = model.evolve(rho0, jnp.array([t])).states[0]
        return jnp.real(jnp.sum(jnp.diagonal(rho) * e**k))

    for t in [0.0, 0.3, 2.0]:
        for k in [1, 2]:
            dm_dt = jax.grad(moment)(t, k)
            expected = gamma * (jnp.sum(model.chi * e**k) - moment(t, k))
            np.testing.assert_allclose(dm_dt, expected, rtol=1e-10, atol=1e-13)
    # the mismatch is reported, not hidden: Tr(chi H) - E0
    e0 = jnp.real(jnp.sum(jnp.diagonal(rho0) * e))
    np.testing.assert_allclose(model.energy_mismatch, jnp.sum(model.chi * e) - e0, atol=1e-14)
    assert abs(float(model.energy_mismatch)) > 1e-6  # generic small system: not conserved


def test_gradient_wrt_alpha_n(setup):
    model, rho0 = setup
    t = 0.8

    def loss(m):
        return d_chi(m, m.evolve(rho0, jnp.array([t])).states[0])

    grads = eqx.filter_grad(loss)(model)
    gamma = float(model.alpha_N)
    exact = -2 * t * float(d_chi(model, rho0)) * math.exp(-2 * gamma * t)
    np.testing.assert_allclose(grads.alpha_N, exact, rtol=1e-10)
    # and against central finite differences
    eps = 1e-6
    plus = eqx.tree_at(lambda m: m.alpha_N, model, model.alpha_N + eps)
    minus = eqx.tree_at(lambda m: m.alpha_N, model, model.alpha_N - eps)
    np.testing.assert_allclose(grads.alpha_N, (loss(plus) - loss(minus)) / (2 * eps), rtol=1e-6)


def test_rate_gradients_through_rhs(sui_model, getkey):
    rho = sui_model.eigensystem.op_to_eigenbasis(_rho(getkey(), 5))
    names = ["alpha_N", "Gamma"] if sui_model.sui else ["alpha_N"]
    for name in names:

        @jax.jit
        def loss(rate):
            m = eqx.tree_at(lambda m: getattr(m, name), sui_model, rate)
            return jnp.real(jnp.sum(jnp.abs(m.rhs(0.0, rho)) ** 2))

        x = getattr(sui_model, name)
        g = jax.grad(loss)(x)
        eps = 1e-6
        fd = (loss(x + eps) - loss(x - eps)) / (2 * eps)
        assert abs(float(g)) > 1e-3
        np.testing.assert_allclose(g, fd, rtol=1e-6)


# ----------------------------------------------------------------------------------
# steady states chi
# ----------------------------------------------------------------------------------


def test_microcanonical_window_rules():
    e = jnp.array([0.0, 1.0, 1.0, 2.0, 3.0])
    assert microcanonical_window(e, 1.5, 0.25).tolist() == [False, True, True, True, False]
    # near-degenerate pair (gap 1e-12 < atol) enters as a whole
    e2 = jnp.array([0.0, 1.0, 1.0 + 1e-12, 2.0])
    w = microcanonical_window(e2, 0.5, 0.25, degeneracy_atol=1e-10)
    assert w.tolist() == [True, True, True, False]
    # empty window (possible only through rounding): nearest level(s)
    e3 = jnp.array([0.0, 1.0, 2.0])
    assert microcanonical_window(e3, 0.6, 0.0, degeneracy_atol=0.0).tolist() == [
        False, True, False
    ]
    assert microcanonical_window(e3, 0.5, 0.0, degeneracy_atol=0.0).tolist() == [
        True, True, False
    ]


def test_microcanonical_eigenstate_and_degenerate_levels(getkey):
    u = _unitary(getkey(), 5)
    energies = jnp.array([-1.0, 0.0, 0.5, 0.5, 2.0])
    h = u @ jnp.diag(energies) @ u.conj().T
    es = eigh(h)
    # non-degenerate eigenstate: chi is its own projector, no energy mismatch
    v = es.vectors
    m = OQTModel.microcanonical(h, v[:, 1], 1.0)
    np.testing.assert_allclose(m.chi, [0, 1, 0, 0, 0], atol=1e-15)
    assert abs(float(m.energy_mismatch)) < 1e-12
    # a state inside the degenerate level: the whole level, uniformly
    psi = (0.6 * v[:, 2] + 0.8j * v[:, 3]) * jnp.exp(0.3j)
    m = OQTModel.microcanonical(h, psi, 1.0)
    np.testing.assert_allclose(m.chi, [0, 0, 0.5, 0.5, 0], atol=1e-15)
    # eigenstate is stationary under the master equation
    rho = ket_to_dm(es.ket_to_eigenbasis(v[:, 1]))
    m1 = OQTModel.microcanonical(h, v[:, 1], 1.0)
    np.testing.assert_allclose(m1.rhs(0.0, rho), 0.0, atol=1e-12)
    # superposition of levels -1 and 2 (p = 1/2 each): E0 = 0.5, sqrt(V0) = 1.5
    psi2 = (v[:, 0] + v[:, 4]) / math.sqrt(2)
    st = microcanonical_steady_state(es.energies, es.ket_to_eigenbasis(psi2))
    np.testing.assert_allclose(st.energy, 0.5, atol=1e-14)
    np.testing.assert_allclose(st.energy_variance, 2.25, atol=1e-13)
    np.testing.assert_allclose(st.chi, [0.2] * 5, atol=1e-15)
    assert bool(jnp.isnan(st.beta))


def test_microcanonical_density_matrix_input(setup):
    model, rho0 = setup
    psi_eig = jnp.sqrt(jnp.real(jnp.diagonal(rho0)))  # same populations
    a = microcanonical_steady_state(model.energies, rho0)
    b = microcanonical_steady_state(model.energies, psi_eig)
    np.testing.assert_array_equal(a.window, b.window)
    np.testing.assert_allclose(a.chi, model.chi, atol=1e-15)
    np.testing.assert_allclose(a.energy_mismatch, model.energy_mismatch, atol=1e-14)
    np.testing.assert_allclose(jnp.sum(a.chi), 1.0, rtol=1e-15)


def test_canonical_steady_state(getkey):
    e = jnp.sort(jax.random.normal(getkey(), (5,)))
    es = (e, jnp.eye(5))
    psi = _ket(getkey(), 5)
    st = canonical_steady_state(e, psi)
    e0 = jnp.sum(jnp.abs(psi) ** 2 * e)
    assert abs(float(st.energy_mismatch)) < 1e-11
    np.testing.assert_allclose(jnp.sum(st.chi * e), e0, atol=1e-11)

    def mean_energy(beta):
        w = np.exp(-beta * (np.asarray(e) - float(e[0])))
        return float(np.sum(w * e) / np.sum(w))

    ref = scipy.optimize.brentq(lambda b: mean_energy(b) - float(e0), -100, 100, xtol=1e-14)
    np.testing.assert_allclose(st.beta, ref, rtol=1e-9)
    model = OQTModel.canonical(es, psi, 0.2)
    np.testing.assert_allclose(model.chi, st.chi, atol=1e-14)
    # above the infinite-temperature energy: negative beta
    hot = canonical_steady_state(e, energy=0.9 * float(e[-1]) + 0.1 * float(jnp.mean(e)))
    assert float(hot.beta) < 0
    # implicit differentiation: d beta / d E0 = -1 / Var_beta(H)
    beta_of = lambda x: canonical_steady_state(e, energy=x).beta
    var = jnp.sum(st.chi * e**2) - jnp.sum(st.chi * e) ** 2
    np.testing.assert_allclose(jax.grad(beta_of)(e0), -1.0 / var, rtol=1e-6)
    # ends of the spectrum: limiting states
    ground = canonical_steady_state(e, energy=e[0])
    np.testing.assert_allclose(ground.chi, jnp.eye(5)[0], atol=1e-15)
    assert float(ground.beta) == np.inf
    top = canonical_steady_state(e, energy=e[-1])
    assert float(top.beta) == -np.inf
    flat = canonical_steady_state(jnp.zeros(3), jnp.ones(3) / math.sqrt(3))
    np.testing.assert_allclose(flat.chi, [1 / 3] * 3, atol=1e-15)
    assert float(flat.beta) == 0.0
    with pytest.raises(ValueError, match="outside the range"):
        canonical_steady_state(e, energy=float(e[-1]) + 1.0)
    with pytest.raises(ValueError, match="exactly one"):
        canonical_steady_state(e)


def test_given_steady_state():
    e = jnp.array([0.0, 1.0, 2.0])
    st = given_steady_state(e, [0.25, 0.75, 0.0], jnp.array([0.0, 0.0, 1.0]))
    np.testing.assert_allclose(st.energy_mismatch, 0.75 - 2.0)
    assert st.window.tolist() == [True, True, False]
    m = OQTModel(jnp.diag(e), [0.25, 0.75, 0.0], 1.0)
    assert bool(jnp.isnan(m.energy_mismatch))
    with pytest.raises(ValueError, match="`chi`.*>= 0"):
        given_steady_state(e, [-0.25, 1.25, 0.0])
    with pytest.raises(ValueError, match="`chi`.*sum to 1"):
        given_steady_state(e, [0.2, 0.2, 0.2])
    with pytest.raises(ValueError, match="`chi`.*shape"):
        given_steady_state(e, [0.5, 0.5])
    with pytest.raises(ValueError, match="`chi`.*real"):
        given_steady_state(e, jnp.array([0.5, 0.5, 0.0]) + 0j)


# ----------------------------------------------------------------------------------
# stationary state of the hybrid generator
# ----------------------------------------------------------------------------------


def test_stationary_state_limits(getkey):
    d = 5
    # Gamma -> 0 (no collapse), H != 0: chi
    model = OQTModel.microcanonical(goe_matrix(getkey(), d), _ket(getkey(), d), 0.9)
    st = model.stationary_state()
    assert float(st.residual) < 1e-12 and int(st.null_dim) == 1
    np.testing.assert_allclose(st.rho, model.chi_matrix(), atol=1e-12)

    # H = 0 with collapse: unique state (gamma chi + Gamma D(chi)) / (gamma + Gamma)
    chi = jnp.array([0.1, 0.2, 0.3, 0.15, 0.25])
    proj = _projectors(getkey(), d, (2, 2, 1))
    rho0 = _rho(getkey(), d, rank=2)
    born = jnp.einsum("kab,bc,kcd->ad", proj, rho0, proj)
    dephase = lambda r: jnp.einsum("kab,bc,kcd->ad", proj, r, proj)
    for gamma, big_gamma in [(0.5, 2.0), (1e-3, 2.0)]:
        m = OQTModel(jnp.zeros((d, d)), chi, gamma, Gamma=big_gamma, projectors=proj)
        es = m.eigensystem
        st = m.stationary_state()
        rho = es.op_from_eigenbasis(st.rho)
        chi_orig = es.op_from_eigenbasis(m.chi_matrix())
        expected = (gamma * chi_orig + big_gamma * dephase(chi_orig)) / (gamma + big_gamma)
        assert float(st.residual) < 1e-12 and int(st.null_dim) == 1
        np.testing.assert_allclose(rho, expected, atol=1e-10)
        # unique: the projection of any rho0 gives the same state
        st0 = m.stationary_state(es.op_to_eigenbasis(rho0))
        np.testing.assert_allclose(es.op_from_eigenbasis(st0.rho), expected, atol=1e-8)
        # ... which is NOT the Born state of rho0 (limits do not commute)
        assert float(jnp.max(jnp.abs(rho - born))) > 1e-2

    # gamma = 0 exactly: degenerate null space, the projection of rho0 is the Born state
    m = OQTModel(jnp.zeros((d, d)), chi, 0.0, Gamma=2.0, projectors=proj)
    es = m.eigensystem
    st = m.stationary_state(es.op_to_eigenbasis(rho0))
    assert int(st.null_dim) == 4 + 4 + 1  # block-diagonal matrices: 2^2 + 2^2 + 1
    assert float(st.residual) < 1e-12
    np.testing.assert_allclose(es.op_from_eigenbasis(st.rho), born, atol=1e-10)
    # and agrees with long-time evolution
    late = _dense(m, es.op_to_eigenbasis(rho0), jnp.array([0.0, 30.0]))[-1]
    np.testing.assert_allclose(es.op_from_eigenbasis(late), born, atol=1e-10)


def test_stationary_state_general_hybrid(getkey):
    d = 5
    model = OQTModel.microcanonical(
        goe_matrix(getkey(), d), _ket(getkey(), d), 0.4, Gamma=1.0,
        projectors=_projectors(getkey(), d, (2, 2, 1)),
    )
    st = model.stationary_state()
    assert float(st.residual) < 1e-12 and int(st.null_dim) == 1
    np.testing.assert_allclose(jnp.trace(st.rho), 1.0, atol=1e-12)
    assert float(jnp.min(jnp.linalg.eigvalsh(st.rho))) > -1e-12
    late = _dense(model, _rho(getkey(), d), jnp.array([0.0, 80.0]))[-1]
    np.testing.assert_allclose(late, st.rho, atol=1e-10)


# ----------------------------------------------------------------------------------
# no signalling
# ----------------------------------------------------------------------------------


def test_no_signalling(getkey):
    da, db = 3, 2
    ha, hb = goe_matrix(getkey(), da), goe_matrix(getkey(), db) + 0.3 * jnp.array(
        [[0.0, 1j], [-1j, 0.0]]
    )
    esa = eigh(ha)
    chi_a = jnp.array([0.5, 0.3, 0.2])
    h = jnp.kron(ha, jnp.eye(db)) + jnp.kron(jnp.eye(da), hb)
    psi = _ket(getkey(), da * db)  # generically entangled
    rho0 = ket_to_dm(psi)
    ts = jnp.array([0.5, 1.5, 4.0])
    u_b = jax.vmap(lambda t: jax.scipy.linalg.expm(-1j * hb * t))(ts)
    rho_b0 = partial_trace(rho0, (da, db), (1,))
    rho_b_free = jnp.einsum("tab,bc,tdc->tad", u_b, rho_b0, u_b.conj())
    chi_a_orig = esa.op_from_eigenbasis(jnp.diag(chi_a).astype(complex))

    @jax.jit
    def run(gamma):
        ops_a = esa.op_from_eigenbasis(oqt_jump_ops(chi_a, gamma))  # |mu_A><nu_A|, A's basis
        ops = jax.vmap(lambda op: jnp.kron(op, jnp.eye(db)))(ops_a)
        lam = lindblad_rhs(rho0, jnp.zeros_like(h), ops)
        big = liouvillian(h, ops)
        rho_t = jax.vmap(lambda t: (jax.scipy.linalg.expm(big * t) @ rho0.reshape(-1)))(ts)
        return lam, rho_t.reshape(3, da * db, da * db)

    rho_a = []
    for gamma in [0.0, 0.7, 5.0]:
        lam, rho_t = run(gamma)
        # the generator is chi_A (x) Tr_A rho - rho
        expect = gamma * (jnp.kron(chi_a_orig, rho_b0) - rho0)
        np.testing.assert_allclose(lam, expect, atol=1e-12)
        np.testing.assert_allclose(
            partial_trace(rho_t, (da, db), (1,)), rho_b_free, atol=1e-10, rtol=0
        )
        rho_a.append(partial_trace(rho_t, (da, db), (0,)))
    # not vacuous: Alice's state does depend on the rate
    assert float(jnp.max(jnp.abs(rho_a[0] - rho_a[2]))) > 1e-2


class _ModelOnA(tj.AbstractGenerator):
    """An OQT model acting on subsystem A of A (x) B, with B evolving under its own H_B.

    Basis: A's eigenbasis (x) B's basis. On each block rho[:, b, :, b'] the model's own
    structured right-hand side acts (it is batched over leading axes), so nothing about
    OQT is rebuilt here: L_AB = L_A (x) id - i[1 (x) H_B, .]."""

    model: OQTModel
    hb: jax.Array

    @property
    def dim(self):
        return self.model.dim * self.hb.shape[0]

    def rhs(self, t, rho):
        da, db = self.model.dim, self.hb.shape[0]
        blocks = rho.reshape(da, db, da, db).transpose(1, 3, 0, 2)  # (b, b', a, a')
        out = self.model.rhs(t, blocks).transpose(2, 0, 3, 1).reshape(da * db, da * db)
        hb = jnp.kron(jnp.eye(da), self.hb).astype(rho.dtype)
        return out - 1j * (hb @ rho - rho @ hb)


def test_no_signalling_through_the_model_itself(getkey):
    """OQT on A only (the model's own generator and its own jump operators), H = H_A (x) 1 +
    1 (x) H_B, an entangled initial state: rho_B(t) is the free evolution under H_B whatever
    alpha_N, while rho_A(t) depends on it."""
    da, db = 3, 2
    ha = goe_matrix(getkey(), da)
    hb = goe_matrix(getkey(), db) + 0.3 * jnp.array([[0.0, 1j], [-1j, 0.0]])
    model_a = OQTModel.canonical(ha, _ket(getkey(), da), 1.0)  # chi_beta of a state of A: full rank
    assert int(jnp.sum(model_a.chi > 1e-3)) == da
    psi = _ket(getkey(), da * db)  # A-eigenbasis (x) B: generically entangled
    rho0 = ket_to_dm(psi)
    ts = jnp.array([0.0, 0.5, 1.5, 4.0])
    u_b = jax.vmap(lambda t: jax.scipy.linalg.expm(-1j * hb * t))(ts)
    rho_b0 = partial_trace(rho0, (da, db), (1,))
    rho_b_free = jnp.einsum("tab,bc,tdc->tad", u_b, rho_b0, u_b.conj())
    h_ab = jnp.kron(model_a.hamiltonian_eig(), jnp.eye(db)) + jnp.kron(jnp.eye(da), hb)
    rho_a = []
    for gamma in (0.0, 0.7, 5.0):
        m = eqx.tree_at(lambda q: q.alpha_N, model_a, jnp.asarray(gamma))
        rho_t = tj.mesolve(_ModelOnA(m, hb), [], rho0, ts, method=tj.Expm()).states
        np.testing.assert_allclose(partial_trace(rho_t, (da, db), (1,)), rho_b_free, atol=1e-10, rtol=0)
        # the same dynamics from the model's own jump operators, lifted to A (x) B
        ops = jax.vmap(lambda op: jnp.kron(op, jnp.eye(db)))(m.jump_ops())
        via_ops = tj.mesolve(h_ab, ops, rho0, ts, method=tj.Expm()).states
        np.testing.assert_allclose(via_ops, rho_t, atol=1e-10, rtol=0)
        rho_a.append(partial_trace(rho_t, (da, db), (0,)))
    # not vacuous: A's state does depend on the rate
    assert float(jnp.max(jnp.abs(rho_a[0] - rho_a[2]))) > 1e-2
    # and for a product state, A alone follows the model's closed form
    ra = ket_to_dm(_ket(getkey(), da))
    prod = jnp.kron(ra, rho_b0)
    rho_t = tj.mesolve(_ModelOnA(model_a, hb), [], prod, ts, method=tj.Expm()).states
    np.testing.assert_allclose(partial_trace(rho_t, (da, db), (0,)), model_a.evolve(ra, ts).states, atol=1e-10)


# ----------------------------------------------------------------------------------
# entropy and the constant offset of H
# ----------------------------------------------------------------------------------


def _binary_entropy(p):
    p = np.asarray(p)
    return -(p * np.log(p) + (1 - p) * np.log1p(-p))


def test_entropy_decreases_for_a_pure_chi():
    """The paper's claim dS/dt > 0 is false: E = (0, 1), rho0 = diag(0.9, 0.1) and the pure
    chi = |0><0| (|W| = 1) drive the von Neumann entropy from h(0.1) to 0, with
    p_1(t) = 0.1 e^{-gamma t}. What holds: D_chi and the trace distance to chi decrease
    monotonically. Both the closed form and the model's generator (mesolve, Expm) show it;
    a mixed chi = 1/2 (|W| = 2) instead raises S towards ln 2."""
    gamma = 0.8
    model = OQTModel(jnp.diag(jnp.array([0.0, 1.0])), jnp.array([1.0, 0.0]), gamma)
    rho0 = jnp.diag(jnp.array([0.9, 0.1])).astype(complex)
    ts = jnp.linspace(0.0, 6.0, 25)
    p1 = 0.1 * np.exp(-gamma * np.asarray(ts))
    for rhos in (model.evolve(rho0, ts).states, tj.mesolve(model, [], rho0, ts, method=tj.Expm()).states):
        diag = diagnostics(model, rhos)
        s = np.asarray(diag.entropy)
        np.testing.assert_allclose(s, _binary_entropy(p1), rtol=1e-8)
        assert s[0] == pytest.approx(0.3250829733914482, rel=1e-10)  # h(0.1) > 0
        assert np.all(np.diff(s) < 0)  # strictly decreasing ...
        assert s[-1] < 0.01  # ... towards the pure chi's 0
        assert np.all(np.diff(np.asarray(diag.d_chi)) < 0)
        assert np.all(np.diff(np.asarray(diag.trace_distance)) < 0)
        np.testing.assert_allclose(diag.trace_distance, p1, rtol=1e-8)
        np.testing.assert_allclose(diag.d_chi, 2 * p1**2, rtol=1e-8)
    # contrast: a mixed chi (both levels) and the same rho0: S rises towards ln 2
    mixed = OQTModel(jnp.diag(jnp.array([0.0, 1.0])), jnp.array([0.5, 0.5]), gamma)
    s_mixed = np.asarray(diagnostics(mixed, mixed.evolve(rho0, ts).states).entropy)
    assert np.all(np.diff(s_mixed) > 0) and abs(s_mixed[-1] - np.log(2)) < 1e-4


def test_chi_unchanged_when_a_constant_is_added_to_h(getkey):
    """H -> H + c 1 changes no steady state: the degeneracy tolerance scales with the
    spectrum's spread, not with max|E| (at c = 1e6 a max|E| scaling would be 1e-3 and merge
    the levels 0.3 and 0.3 + 1e-5 below)."""
    u = _unitary(getkey(), 6)
    energies = jnp.array([-1.0, -0.2, 0.3, 0.3 + 1e-5, 0.9, 1.4])
    h = u @ jnp.diag(energies).astype(complex) @ u.conj().T
    es = eigh(h)
    states = {
        "eigenstate": es.vectors[:, 2],  # its own level only, not its neighbour 1e-5 above
        "pair": (es.vectors[:, 2] + es.vectors[:, 3]) / math.sqrt(2),
        "generic": _ket(getkey(), 6),
        "mixed": _rho(getkey(), 6, rank=3),
    }
    expected_window = {"eigenstate": [0, 0, 1, 0, 0, 0], "pair": [0, 0, 1, 1, 0, 0]}
    for name, state in states.items():
        ref = OQTModel.microcanonical(h, state, 0.5)
        ref_can = OQTModel.canonical(h, state, 0.5)
        if name in expected_window:
            assert ref.steady.window.astype(int).tolist() == expected_window[name]
        for shift in (1e6, -1e6, 3.7):
            h_c = h + shift * jnp.eye(6)
            m = OQTModel.microcanonical(h_c, state, 0.5)
            assert m.steady.window.tolist() == ref.steady.window.tolist(), (name, shift)
            np.testing.assert_allclose(m.chi, ref.chi, atol=1e-12)
            np.testing.assert_allclose(m.energy_mismatch, ref.energy_mismatch, atol=1e-8)
            np.testing.assert_allclose(m.steady.energy, ref.steady.energy + shift, rtol=1e-14, atol=1e-8)
            c = OQTModel.canonical(h_c, state, 0.5)
            np.testing.assert_allclose(c.chi, ref_can.chi, atol=1e-7)
            np.testing.assert_allclose(c.steady.beta, ref_can.steady.beta, rtol=1e-6)


# ----------------------------------------------------------------------------------
# stochastic Schrödinger equation
# ----------------------------------------------------------------------------------


@pytest.fixture(params=[False, True], ids=["oqt", "sui"])
def sui_model(request, getkey):
    d = 5
    h = goe_matrix(getkey(), d)
    kw = {}
    if request.param:
        kw = dict(Gamma=0.8, projectors=_projectors(getkey(), d, (2, 1, 2)))
    return OQTModel.microcanonical(h, _ket(getkey(), d), 0.6, **kw)


def test_sse_interface(sui_model):
    for noise, shape in [("reduced", (5, 2)), ("literal", (5, 5))]:
        sde = sui_model.sse(noise)
        assert isinstance(sde, AbstractSDE) and isinstance(sde, OQTSSE)
        ns = sde.noise_shape()
        assert ns["oqt"].shape == shape and ns["oqt"].dtype == jnp.float64
        assert ("sui" in ns) == sui_model.sui
        if sui_model.sui:
            assert ns["sui"].shape == (3,)
    with pytest.raises(ValueError, match="`noise`"):
        sui_model.sse("colored")
    with pytest.raises(ValueError, match="`expectation`"):
        sui_model.sse("reduced", "mean")


@pytest.mark.parametrize("expectation", ["normalized", "raw"])
@pytest.mark.parametrize("noise", ["reduced", "literal"])
def test_sse_one_step_reproduces_master_equation(sui_model, noise, expectation, getkey):
    """E[|psi'><psi'|] for one Euler–Maruyama step = rho + dt L(rho) + dt^2 f f^dagger."""
    sde = sui_model.sse(noise, expectation)
    basis = _noise_basis(sde)

    def first_order(psi):
        f = sde.drift(0.0, psi, None)
        g = basis(psi)  # (n_noise, d): g dW = sum_j g_j dW_j
        return jnp.outer(f, psi.conj()) + jnp.outer(psi, f.conj()) + g.T @ g.conj()

    for _ in range(2):
        psi = _ket(getkey(), 5)
        np.testing.assert_allclose(
            first_order(psi), sui_model.rhs(0.0, ket_to_dm(psi)), atol=1e-13
        )
        # Itô norm conservation, also for an unnormalised psi
        psi_u = 1.7 * psi
        dn = 2 * jnp.real(jnp.vdot(psi_u, sde.drift(0.0, psi_u, None))) + jnp.sum(
            jnp.abs(basis(psi_u)) ** 2
        )
        assert abs(float(dn)) < 1e-12
        # off the unit sphere the one-step mean is still the linear generator ...
        np.testing.assert_allclose(
            first_order(psi_u), sui_model.rhs(0.0, ket_to_dm(psi_u)), atol=1e-12
        )
        # ... but only the normalised form has no first-order noise in the norm
        norm_noise = jnp.abs(jnp.real(basis(psi_u) @ psi_u.conj()))
        if expectation == "normalized":
            np.testing.assert_allclose(norm_noise, 0.0, atol=1e-13)
        else:
            assert float(jnp.max(norm_noise)) > 1e-2


@pytest.mark.parametrize("expectation", ["normalized", "raw"])
def test_reduced_noise_has_literal_covariance(sui_model, expectation, getkey):
    reduced = _noise_basis(sui_model.sse("reduced", expectation))
    literal = _noise_basis(sui_model.sse("literal", expectation))
    d = 5
    real = jax.random.normal(getkey(), (d,)) + 0j
    states = [
        _ket(getkey(), d),
        real / jnp.linalg.norm(real) * jnp.exp(0.7j),  # Re, Im parallel: rank-one covariance
        jnp.array([1.0, 1j, 0, 0, 0]) / math.sqrt(2),  # sum psi^2 = 0
        2.0 * _ket(getkey(), d),  # unnormalised
    ]
    for psi in states:
        gr, gl = reduced(psi), literal(psi)
        # covariance and pseudo-covariance of the complex noise vector
        np.testing.assert_allclose(gr.T @ gr.conj(), gl.T @ gl.conj(), atol=1e-13)
        np.testing.assert_allclose(gr.T @ gr, gl.T @ gl, atol=1e-13)


def test_reduced_noise_monte_carlo(getkey):
    d = 5
    model = OQTModel.microcanonical(goe_matrix(getkey(), d), _ket(getkey(), d), 1.0)
    chi = jnp.array([0.4, 0.3, 0.2, 0.1, 0.0])
    model = OQTModel(model.eigensystem, chi, 1.0)
    sde_r, sde_l = model.sse("reduced"), model.sse("literal")
    psi = _ket(getkey(), d)
    dt, n = 0.01, 40_000
    w = jnp.sqrt(dt) * jax.random.normal(getkey(), (n, d, 2))
    samples = jax.jit(jax.vmap(lambda x: sde_r.diffusion_mv(0.0, psi, None, {"oqt": x})))(w)
    gl = _noise_basis(sde_l)(psi)
    for emp, exact in [
        (jnp.einsum("na,nb->nab", samples, samples.conj()), dt * gl.T @ gl.conj()),
        (jnp.einsum("na,nb->nab", samples, samples), dt * gl.T @ gl),
    ]:
        mean = jnp.mean(emp, axis=0)
        stderr = (jnp.std(emp.real, axis=0) + 1j * jnp.std(emp.imag, axis=0)) / math.sqrt(n)
        assert np.all(np.abs((mean - exact).real) <= 5 * stderr.real + 1e-15)
        assert np.all(np.abs((mean - exact).imag) <= 5 * stderr.imag + 1e-15)


def test_rows_outside_window_contribute_nothing(getkey):
    d = 5
    model = OQTModel(goe_matrix(getkey(), d), jnp.array([0.0, 0.5, 0.5, 0.0, 0.0]), 1.0)
    sde = model.sse("literal")
    psi = _ket(getkey(), d)
    g = _noise_basis(sde)(psi).reshape(d, d, d)  # (mu, nu, component)
    np.testing.assert_allclose(g[jnp.array([0, 3, 4])], 0.0, atol=0)


# Euler-Maruyama allowance of the ensemble rho of this system (Schrödinger picture, E_max^2
# ~ 1.9, gamma = 1): the one-step mean is rho + dt L(rho) + dt^2 E[f f^dagger] (f the drift),
# so the weak bias after time t is O(t dt (E_max + gamma)^2 |rho|). Measured with the same
# system and key, M = 40000: max |mean - rho(t)| over entries and t <= 1 was 0.41 dt at
# dt = 0.02 and 0.50 dt at dt = 0.01 (each including ~4 stderr of noise, 4.8e-3); rounded up
# to 0.5 dt. At dt = 0.005 that is 2.5e-3, below 4 stderr of M = 4000 (~1.5e-2 at most).
TRAJ_DT, TRAJ_M, TRAJ_BIAS_PER_DT = 0.005, 4000, 0.5

RHO_OBSERVABLES = {
    "rho_re": lambda t, y: jnp.real(ket_to_dm(y)),
    "rho_im": lambda t, y: jnp.imag(ket_to_dm(y)),
}


def _rho_max_z(ens, reference, bias):
    """Largest |ensemble rho - reference| / (stderr + bias / 4) over the entries (Re and Im
    parts; Im of the diagonal, identically 0, left out) and the save times after t = 0, so
    z <= 4 means |err| <= 4 stderr + bias. The stderr is the batch's own."""
    ref = np.asarray(reference)[1:]
    mean_re, mean_im = np.asarray(ens.mean["rho_re"])[1:], np.asarray(ens.mean["rho_im"])[1:]
    se_re, se_im = np.asarray(ens.stderr("rho_re"))[1:], np.asarray(ens.stderr("rho_im"))[1:]
    assert mean_re.shape == ref.shape and np.all(np.isfinite(mean_re)) and np.all(se_re > 0)
    off = np.broadcast_to(~np.eye(ref.shape[-1], dtype=bool), ref.shape)
    z_re = np.abs(mean_re - ref.real) / (se_re + bias / 4)
    z_im = np.abs(mean_im - ref.imag)[off] / (se_im[off] + bias / 4)
    return float(max(z_re.max(), z_im.max()))


def test_rho_max_z_fails_on_wrong_input():
    class Ens:
        mean = {"rho_re": np.zeros((2, 2, 2)), "rho_im": np.zeros((2, 2, 2))}

        @staticmethod
        def stderr(name):
            return np.full((2, 2, 2), 0.01)

    ref = np.zeros((2, 2, 2), complex)
    assert _rho_max_z(Ens, ref, 0.0) == 0.0
    ref[1, 0, 1] = 0.05j  # one off-diagonal imaginary part 5 stderr away
    assert _rho_max_z(Ens, ref, 0.0) == pytest.approx(5.0)
    assert _rho_max_z(Ens, ref, 0.01) == pytest.approx(4.0)  # 5 stderr = 4 stderr + bias 0.01
    ref[0, 0, 0] = 1.0  # t = 0 is not compared
    assert _rho_max_z(Ens, ref, 0.0) == pytest.approx(5.0)


def test_trajectory_mean_converges_to_closed_form(getkey):
    """SSE ensemble rho against the closed form within 4 of the batch's own standard errors
    plus the stated Euler-Maruyama allowance (``TRAJ_BIAS_PER_DT``); the same comparison
    rejects alpha_N off by a factor 2 (either way)."""
    d = 5
    h = goe_matrix(getkey(), d)
    psi0 = _ket(getkey(), d)
    model = OQTModel.microcanonical(h, psi0, 1.0)
    psi0_eig = model.eigensystem.ket_to_eigenbasis(psi0)
    ts = jnp.array([0.0, 0.5, 1.0])
    dt = TRAJ_DT
    res = simulate_trajectories(
        model.sse(), psi0_eig, ts, getkey(), ntraj=TRAJ_M, method=tj.EulerMaruyama(dt),
        observables=RHO_OBSERVABLES, accumulate_outer=True, options=tj.Options(record_norm=True),
    )
    ens = res.ensemble
    assert int(ens.n) == TRAJ_M and int(ens.n_diverged) == 0
    rho0 = ket_to_dm(psi0_eig)
    exact = model.evolve(rho0, ts).states
    bias = TRAJ_BIAS_PER_DT * dt
    z = _rho_max_z(ens, exact, bias)
    assert 0.5 < z <= 4.0, z  # within errors, and the errors are not vacuously large
    # Result.states is the streamed mean of psi psi^dagger: the same average
    np.testing.assert_allclose(res.states, ens.mean["rho_re"] + 1j * ens.mean["rho_im"], atol=1e-12)
    assert float(jnp.max(ens.stderr("rho_re"))) < 1.0 / math.sqrt(TRAJ_M)
    # the comparison has teeth: alpha_N off by a factor 2 either way is rejected
    for factor in (2.0, 0.5):
        wrong = eqx.tree_at(lambda m: m.alpha_N, model, factor * model.alpha_N)
        assert _rho_max_z(ens, wrong.evolve(rho0, ts).states, bias) > 8.0
    # per-trajectory norm drift is reported: a random walk of O(dt) steps, max over
    # 4000 paths ~ 4 sqrt(dt t) (measured 0.08)
    assert 0.0 < float(jnp.max(ens.norm_drift)) < 4 * math.sqrt(dt * 1.0) + 0.05


@pytest.mark.slow
def test_born_rule_histogram(getkey):
    """H = 0, alpha_N = 0: each trajectory ends in one sector with Born probability."""
    d, sizes = 5, (2, 2, 1)
    proj = _projectors(getkey(), d, sizes)
    psi0 = _ket(getkey(), d)
    model = OQTModel(jnp.zeros((d, d)), jnp.ones(d) / d, 0.0, Gamma=1.0, projectors=proj)
    es = model.eigensystem
    born = np.asarray(jnp.real(jnp.einsum("a,kab,b->k", psi0.conj(), proj, psi0)))
    n_traj = 1000
    res = simulate_trajectories(
        model.sse(), es.ket_to_eigenbasis(psi0), jnp.array([0.0, 10.0]), getkey(),
        ntraj=n_traj, method=tj.EulerMaruyama(0.02), options=tj.Options(store_trajectories=True),
    )
    final = res.ensemble.trajectories[:, -1]
    pk = jnp.real(jnp.einsum("na,kab,nb->nk", final.conj(), model.projectors, final))
    pk = pk / jnp.sum(pk, axis=1, keepdims=True)
    assert float(jnp.min(jnp.max(pk, axis=1))) > 0.99  # collapsed
    counts = np.bincount(np.asarray(jnp.argmax(pk, axis=1)), minlength=3)
    chi2 = np.sum((counts - n_traj * born) ** 2 / (n_traj * born))
    assert chi2 < 13.8  # chi-square, 2 dof, p = 0.001 (fixed key)


# ----------------------------------------------------------------------------------
# diagnostics
# ----------------------------------------------------------------------------------


def test_diagnostics(setup):
    model, rho0 = setup
    ts = jnp.array([0.0, 1.0, 50.0])
    rhos = model.evolve(rho0, ts).states
    diag = diagnostics(model, rhos)
    assert diag.populations.shape == (3, 5) and diag.entropy.shape == (3,)
    np.testing.assert_allclose(diag.norm, 1.0, atol=1e-13)
    np.testing.assert_allclose(diag.d_chi, d_chi(model, rhos))
    # at long times everything equals chi's values
    w = int(jnp.sum(model.steady.window))
    np.testing.assert_allclose(diag.entropy[-1], math.log(w), atol=1e-12)
    np.testing.assert_allclose(diag.purity[-1], 1 / w, atol=1e-13)
    assert float(diag.trace_distance[-1]) < 1e-13 and float(diag.d_chi[-1]) < 1e-20
    np.testing.assert_allclose(diag.energy_mismatch[-1], 0.0, atol=1e-13)
    np.testing.assert_allclose(diag.energy_mismatch[0], model.energy_mismatch, atol=1e-13)
    # the comparisons detect a different state
    assert float(diag.trace_distance[0]) > 1e-2 and float(diag.d_chi[0]) > 1e-3
    # pure initial state: entropy 0, purity 1
    np.testing.assert_allclose(diag.entropy[0], 0.0, atol=1e-10)
    np.testing.assert_allclose(diag.purity[0], 1.0, atol=1e-13)
    # kets, batched, with norm drift reported
    psi = jnp.stack([jnp.sqrt(jnp.real(jnp.diagonal(rho0))), 1.1 * jnp.eye(5)[0]])
    kd = ket_diagnostics(model, psi)
    np.testing.assert_allclose(kd.norm_drift, [0.0, 0.21], atol=1e-13)
    np.testing.assert_allclose(kd.energy[1], model.energies[0], atol=1e-14)
    np.testing.assert_allclose(kd.energy_variance[1], 0.0, atol=1e-14)
    np.testing.assert_allclose(kd.energy[0], diag.energy[0], atol=1e-13)


def test_heat_chain_hamiltonian_input(getkey):
    """Any dense Hermitian H works, e.g. the heat chain's (docs/models/heat_chain.md). With zero
    coupling the two subunits' bands are exactly degenerate pairs: whole levels enter."""
    from thermojax.models.heat_chain import HeatChain

    chain = HeatChain.random(getkey(), 2, 3, band_width=0.05, coupling=0.0, warn=False)
    h = chain.hamiltonian()
    psi0 = jnp.zeros(6, complex).at[0].set(1.0)  # subunit 1, lowest band level
    model = OQTModel.microcanonical(h, psi0, 0.2)
    # the level of psi0 is doubly degenerate (subunit 1 or 2 excited): chi = 1/2 on both
    np.testing.assert_allclose(jnp.sort(model.chi)[-2:], [0.5, 0.5], atol=1e-15)
    assert int(jnp.sum(model.chi > 0)) == 2
    assert abs(float(model.energy_mismatch)) < 1e-12
    rho0 = ket_to_dm(model.eigensystem.ket_to_eigenbasis(psi0))
    late = model.eigensystem.op_from_eigenbasis(model.evolve(rho0, jnp.array([100.0])).states[0])
    np.testing.assert_allclose(jnp.real(jnp.diagonal(late))[jnp.array([0, 3])], 0.5, atol=1e-8)


# ----------------------------------------------------------------------------------
# bad inputs
# ----------------------------------------------------------------------------------


def test_bad_inputs_raise(getkey):
    d = 5
    h = goe_matrix(getkey(), d)
    psi = _ket(getkey(), d)
    chi = jnp.ones(d) / d
    with pytest.raises(ValueError, match="`hamiltonian`.*Hermitian"):
        OQTModel.microcanonical(h + jnp.triu(jnp.ones((d, d)), 1), psi, 1.0)
    with pytest.raises(ValueError, match="`hamiltonian`.*square"):
        OQTModel(jnp.ones((d, d + 1)), chi, 1.0)
    with pytest.raises(ValueError, match="`state0`.*shape"):
        OQTModel.microcanonical(h, jnp.ones(d + 1), 1.0)
    with pytest.raises(ValueError, match="normalised.*normalize=True"):
        OQTModel.microcanonical(h, 2 * psi, 1.0)
    m = OQTModel.microcanonical(h, 2 * psi, 1.0, normalize=True)
    np.testing.assert_allclose(m.chi, OQTModel.microcanonical(h, psi, 1.0).chi)
    with pytest.raises(ValueError, match="normalised"):
        OQTModel.canonical(h, 0.5 * ket_to_dm(psi), 1.0)
    with pytest.raises(ValueError, match="positive semidefinite"):
        OQTModel.microcanonical(h, jnp.diag(jnp.array([1.5, -0.5, 0.0, 0.0, 0.0])), 1.0)
    with pytest.raises(ValueError, match="Hermitian density"):
        OQTModel.microcanonical(h, jnp.eye(d) / d + 0.1j * jnp.triu(jnp.ones((d, d)), 1), 1.0)
    with pytest.raises(ValueError, match="nonzero"):
        OQTModel.microcanonical(h, jnp.zeros(d), 1.0, normalize=True)
    with pytest.raises(ValueError, match="`alpha_N`.*>= 0"):
        OQTModel(h, chi, -0.1)
    with pytest.raises(ValueError, match="`alpha_N`.*>= 0"):
        OQTModel(h, chi, float("nan"))
    with pytest.raises(ValueError, match="`alpha_N`.*scalar"):
        OQTModel(h, chi, jnp.ones(2))
    proj = _projectors(getkey(), d, (2, 3))
    with pytest.raises(ValueError, match="`Gamma`.*>= 0"):
        OQTModel(h, chi, 1.0, Gamma=-1.0, projectors=proj)
    with pytest.raises(ValueError, match="`projectors`.*complete"):
        OQTModel(h, chi, 1.0, Gamma=1.0, projectors=proj[:1])
    bad = proj.at[0].set(proj[0] + 0.1 * proj[1])
    bad = bad.at[0].set(0.5 * (bad[0] + bad[0].conj().T))
    with pytest.raises(ValueError, match="`projectors`.*orthogonal"):
        OQTModel(h, chi, 1.0, Gamma=1.0, projectors=bad)
    with pytest.raises(ValueError, match="`projectors`.*Hermitian"):
        OQTModel(h, chi, 1.0, Gamma=1.0, projectors=proj.at[0, 0, 1].add(0.1))
    with pytest.raises(ValueError, match="`projectors`.*shape"):
        OQTModel(h, chi, 1.0, Gamma=1.0, projectors=proj[0])
    with pytest.raises(ValueError, match="`chi`"):
        OQTModel(h, jnp.array([1.0, 1.0, -1.0, 0.0, 0.0]), 1.0)
    with pytest.raises(ValueError, match="`chi`"):
        OQTModel(h, jnp.array([0.5, 0.5]), 1.0)
    with pytest.raises(ValueError, match="`rho0`"):
        m.evolve(jnp.eye(d + 1), jnp.array([0.0]))
    with pytest.raises(ValueError, match="`rho`"):
        d_chi(m, jnp.eye(d + 1))


def test_traced_rate_is_checked_inside_jit(getkey):
    d = 5
    h = goe_matrix(getkey(), d)
    chi = jnp.ones(d) / d
    rho = jnp.eye(d, dtype=complex) / d

    @jax.jit
    def f(a):
        return OQTModel(h, chi, a).rhs(0.0, rho)

    f(jnp.asarray(0.5))
    with pytest.raises(Exception, match="alpha_N"):
        jax.block_until_ready(f(jnp.asarray(-0.5)))
