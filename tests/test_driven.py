"""Paper 004 (energy diffusion under a slow linear drive): the model `thermojax.models.driven`.

Exact evolution (conservation, eps = 0, agreement of the three paths, Magnus order,
Landau-Zener), coarse graining, linear response (sum rule, the GOE correlation function,
closed forms), the Smoluchowski PDE (heat kernel, conservation, level flow, eq. 47's
source), regimes and input errors.
"""

import math

import diffrax as dfx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special

import thermojax as tj
from thermojax.models import driven as dr

TIGHT = tj.ODE(dfx.Dopri8(), dfx.PIDController(rtol=1e-12, atol=1e-12))


@pytest.fixture(scope="module")
def small():
    """A GOE system (d = 40), four eigenstates near E = 0 and their evolution."""
    system = dr.DrivenSystem.goe(jax.random.key(3), 40, epsilon=0.05)
    idx = dr.nearest_levels(system.energies0, 0.0, 4)
    psi0 = system.eigenstates(idx)
    tsave = jnp.linspace(0.0, 8.0, 5)
    grid = dr.EnergyGrid(-2.4, 2.4, 12)
    return system, psi0, tsave, grid


@pytest.fixture(scope="module")
def big():
    """A GOE system (d = 400) and its linear response at E = 0 and E = 0.8."""
    system = dr.DrivenSystem.goe(jax.random.key(11), 400, epsilon=0.01)
    lr = dr.linear_response(system, [0.0, 0.8], half_width=0.25, s=jnp.linspace(0.0, 6.0, 25))
    return system, lr


# ----------------------------------------------------------------------------------
# exact evolution
# ----------------------------------------------------------------------------------


def occupations(system, states, tsave):
    es = [system.eigensystem(t) for t in np.asarray(tsave)]
    return np.stack([np.abs(np.asarray(e.ket_to_eigenbasis(states[:, k]))) ** 2 for k, e in enumerate(es)], axis=1)


def test_goe_scaling():
    system = dr.DrivenSystem.goe(jax.random.key(0), 200, 0.01, coupling_variance=0.002)
    e = np.asarray(system.energies0)
    assert abs(np.mean(e**2) - 1.0) < 0.05  # semicircle of radius 2 has <E^2> = R^2/4 = 1
    assert 1.85 < e.max() < 2.15 and -2.15 < e.min() < -1.85
    v = np.asarray(system.coupling)
    off = v[~np.eye(200, dtype=bool)]
    assert abs(np.mean(off**2) / 0.002 - 1.0) < 0.02  # basis-independent: Tr V^2 is invariant
    assert np.allclose(v, v.T)


def test_epsilon_zero_leaves_eta_unchanged():
    system = dr.DrivenSystem.goe(jax.random.key(1), 40, epsilon=0.0)
    tsave = jnp.linspace(0.0, 20.0, 5)
    grid = dr.EnergyGrid(-2.4, 2.4, 12)
    psi0 = system.eigenstates(dr.nearest_levels(system.energies0, 0.3, 4))
    # Magnus is exact for a constant H; the default ODE path to its tolerance (its RMS error
    # norm over the whole (d, B) batch dilutes the error of these one-component states)
    for method, tol in ((dr.Magnus(5.0), 1e-12), (None, 1e-6)):
        m = dr.measure(system, dr.evolve(system, psi0, tsave, method=method).states, tsave, grid)
        assert np.max(np.abs(m.eta - m.eta[:1])) < tol
        assert np.max(np.abs(m.occupations - m.occupations[:, :1])) < tol
        assert np.max(np.abs(m.variance - m.variance[0])) < tol  # levels do not move either


def test_norm_conserved_and_eps_moves_eta(small):
    system, psi0, tsave, grid = small
    res = dr.evolve(system, psi0, tsave)
    m = dr.measure(system, res.states, tsave, grid)
    assert np.max(np.abs(m.norm - 1.0)) < 1e-8
    assert np.max(np.abs(m.eta - m.eta[:1])) > 1e-2  # the drive spreads eta (the eps = 0 test can fail)
    assert np.allclose(jnp.sum(m.eta, -1) * grid.width + m.outside, 1.0, atol=1e-8)
    assert abs(float(m.index_variance[0]) - 1.25) < 1e-12  # four adjacent levels: Var{0, 1, 2, 3} = 5/4
    assert float(m.index_variance[-1]) > 2.0
    # mean and variance from the levels agree with the histogram's to the cell width
    assert np.allclose(m.mean, np.sum(m.eta * grid.centers[None, :], -1) * grid.width, atol=grid.width)


def test_three_exact_paths_agree(small):
    system, psi0, tsave, _ = small
    p_se = occupations(system, dr.evolve(system, psi0, tsave, method=TIGHT).states, tsave)
    p_mg = occupations(system, dr.evolve(system, psi0, tsave, method=dr.Magnus(0.02)).states, tsave)
    p_bt = occupations(system, dr.evolve(system, psi0, tsave).states, tsave)
    assert np.max(np.abs(p_se - p_mg)) < 1e-8
    assert np.max(np.abs(p_se - p_bt)) < 1e-8
    assert np.max(np.abs(p_se[:, -1] - p_se[:, 0])) > 1e-2  # not a trivial agreement


@pytest.mark.parametrize("order, low, high", [(2, 3.5, 4.5), (4, 13.0, 19.0)])
def test_magnus_order(small, order, low, high):
    system, psi0, tsave, _ = small
    ref = dr.evolve(system, psi0, tsave, method=TIGHT).states[:, -1]
    errs = [float(jnp.max(jnp.abs(dr.evolve(system, psi0, tsave, method=dr.Magnus(h, order)).states[:, -1] - ref)))
            for h in (0.4, 0.2)]
    assert low < errs[0] / errs[1] < high


def test_landau_zener():
    # H(t) = g sx + eps t sz / 2 swept from -T to T: P(jump to the excited level) = exp(-2 pi g^2 / eps)
    g, eps, big_t = 0.2, 0.5, 120.0
    system = dr.DrivenSystem.from_matrices(g * jnp.array([[0.0, 1.0], [1.0, 0.0]]), jnp.diag(jnp.array([0.5, -0.5])),
                                           eps)
    tsave = jnp.array([-big_t, big_t])
    ground = system.eigensystem(-big_t).vectors[:, 0]
    res = dr.evolve(system, ground.astype(complex), tsave, method=TIGHT)
    p_up = float(jnp.abs(jnp.vdot(system.eigensystem(big_t).vectors[:, 1], res.states[-1])) ** 2)
    assert abs(p_up - math.exp(-2 * math.pi * g**2 / eps)) < 5e-3


def test_user_basis_round_trip():
    key1, key2 = jax.random.split(jax.random.key(4))
    h0 = tj.spectra.goe_matrix(key1, 6)
    v = tj.spectra.goe_matrix(key2, 6)
    system = dr.DrivenSystem.from_matrices(h0, v, 0.3)
    # H(t) in the stored basis is the user's H(t) rotated
    h_user = system.vectors0 @ system.hamiltonian(1.7) @ system.vectors0.T
    assert np.allclose(h_user, h0 + 0.3 * 1.7 * v, atol=1e-12)
    psi = jnp.ones(6) / jnp.sqrt(6.0)
    assert np.allclose(system.vectors0 @ system.ket_to_eigenbasis(psi), psi)


# ----------------------------------------------------------------------------------
# coarse graining and linear response
# ----------------------------------------------------------------------------------


def test_coarse_grain_counts():
    e = jnp.array([-0.95, -0.5, -0.49, 0.0, 0.99, 1.5])
    eta, out = dr.coarse_grain(e, jnp.ones(6), dr.EnergyGrid(-1.0, 1.0, 4))
    assert eta.tolist() == [2.0, 4.0, 2.0, 2.0] and float(out) == 1.0


def test_sum_rule(big):
    _, lr = big
    assert float(jnp.max(lr.sum_rule_error())) < 1e-12
    assert np.allclose(lr.correlation[:, 0], lr.c0, atol=1e-12)


def test_sum_rule_check_fails_on_wrong_input(big):
    _, lr = big
    import equinox as eqx

    wrong = eqx.tree_at(lambda r: r.drift, lr, lr.drift + 0.05)
    assert float(jnp.min(wrong.sum_rule_error())) > 1e-4


def test_correlation_function_is_semicircle_transform(big):
    # C_E=0(s) - plateau = sigma^2 sum_m e^{-i E_m s} -> d sigma^2 J1(2 s)/s for the radius-2 semicircle
    system, lr = big
    s = np.asarray(lr.s)
    expected = np.where(s > 0, scipy.special.j1(2 * s) / np.where(s > 0, s, 1.0), 1.0)
    got = np.real(np.asarray(lr.correlation[0])) - float(lr.level_velocity_variance[0])
    assert np.max(np.abs(got / (400 * float(jnp.mean(lr.offdiag_all)) / 399) - expected)) < 0.08


def test_correlation_function_against_heisenberg_picture(small):
    # C_E(s) = <(V(s) - u)(V - u)>_E with V(s) = e^{iHs} V e^{-iHs}, by scipy.linalg.expm
    import scipy.linalg

    system = small[0]
    s = np.array([0.0, 0.7, 2.3])
    lr = dr.linear_response(system, [0.5], half_width=0.4, s=s)
    h, v = np.asarray(system.hamiltonian(0.0)), np.asarray(system.coupling)
    e, w = np.linalg.eigh(h)
    win = np.flatnonzero(np.abs(e - 0.5) <= 0.4)
    u = np.mean([w[:, n] @ v @ w[:, n] for n in win])
    expected = []
    for si in s:
        vs = scipy.linalg.expm(1j * h * si) @ v @ scipy.linalg.expm(-1j * h * si)
        expected.append(np.mean([w[:, n].conj() @ vs @ v @ w[:, n] for n in win]) - u**2)
    assert np.max(np.abs(np.asarray(lr.correlation[0]) - np.array(expected))) < 1e-10
    assert np.max(np.abs(np.imag(expected))) > 1e-3  # the phase convention is tested, not only Re C


def test_golden_rule_and_g2_closed_forms(big):
    system, lr = big
    d, s2 = 400, 1.0 / 400
    closed = np.asarray(dr.goe_golden_rule(lr.centers, 0.0, d, s2))
    assert np.allclose(lr.golden, closed, rtol=0.15)  # ~5% noise: near-resonant pairs of one draw
    assert np.allclose(lr.g2 / 2, closed, rtol=0.10)
    assert np.allclose(lr.offdiag_all, (d - 1) * s2, rtol=0.03)
    assert np.allclose(lr.level_density, dr.goe_level_density(lr.centers, 0.0, d, s2), rtol=0.08)
    assert np.allclose(lr.level_velocity_variance, 2 * s2, rtol=0.3)  # GOE diagonal variance 2 sigma^2


def test_goe_closed_forms_at_finite_lambda():
    d, s2, lam = 300, 1.0 / 300, 0.8
    system = dr.DrivenSystem.goe(jax.random.key(5), d, 1.0, coupling_variance=s2)
    es = system.eigensystem(lam)
    e = np.asarray(es.energies)
    v_eig = np.asarray(es.vectors.T @ system.coupling @ es.vectors)
    # u(E) = alpha E: regression slope of V_nn on E_n
    slope = np.polyfit(e, np.diag(v_eig), 1)[0]
    assert abs(slope / float(dr.goe_level_velocity(1.0, lam, d, s2)) - 1) < 0.05
    off = v_eig[~np.eye(d, dtype=bool)]
    assert abs(np.mean(off**2) / float(dr.goe_offdiagonal_variance(lam, d, s2)) - 1) < 0.03
    assert abs(np.mean(e**2) / (1 + lam**2 * d * s2) - 1) < 0.05  # semicircle radius 2 sqrt(1 + x)
    eta, _ = dr.coarse_grain(jnp.asarray(e), jnp.ones(d), dr.EnergyGrid(-1.0, 1.0, 5))
    assert np.allclose(eta, dr.goe_level_density(dr.EnergyGrid(-1.0, 1.0, 5).centers, lam, d, s2), rtol=0.12)


def test_level_flow_continuity_identity():
    # eq. 24: d Sigma / d lambda + d(Sigma u)/dE = 0 for the closed forms
    d, s2 = 200, 0.004

    def residual(e, lam):
        ds = jax.grad(dr.goe_level_density, argnums=1)(e, lam, d, s2)
        dj = jax.grad(lambda x: dr.goe_level_density(x, lam, d, s2) * dr.goe_level_velocity(x, lam, d, s2))(e)
        return ds + dj

    for e, lam in [(0.3, 0.2), (-1.1, 0.7), (0.0, 1.5)]:
        assert abs(float(residual(e, lam))) < 1e-10
    assert abs(float(jax.grad(dr.goe_level_density, argnums=1)(0.3, 0.7, d, s2))) > 1e-2  # not trivially zero


# ----------------------------------------------------------------------------------
# regimes
# ----------------------------------------------------------------------------------


def test_regimes():
    lz, prt = dr.regime_boundaries(0.01, 0.05, 2.0)
    assert math.isclose(lz, 0.01**2 / 0.05) and math.isclose(prt, math.sqrt(0.01 / 8) / 0.05)
    assert [dr.classify_regime(e, lz, prt) for e in (1e-3, 1e-2, 1.0)] == list(dr.REGIMES)
    with pytest.raises(ValueError, match="level_spacing"):
        dr.regime_boundaries(-1.0, 0.05, 2.0)


# ----------------------------------------------------------------------------------
# the Smoluchowski PDE
# ----------------------------------------------------------------------------------

HEAT_GRID = dr.EnergyGrid(-1.0, 1.0, 400)


def test_heat_kernel():
    d_coef, var0, mu = 0.005, 0.01, 0.1
    pde = dr.Smoluchowski.from_functions(HEAT_GRID, [0.0], level_density=lambda e, t: 3.0 + 0 * e,
                                         diffusion=lambda e, t: d_coef + 0 * e)
    tsave = jnp.linspace(0.0, 1.0, 5)
    res = pde.solve(dr.heat_kernel_cells(HEAT_GRID, mu, var0), tsave)
    exact = dr.heat_kernel_cells(HEAT_GRID, mu, var0 + 2 * d_coef * tsave)
    assert float(jnp.max(jnp.abs(res.states - exact))) < 1e-6
    assert float(jnp.max(jnp.abs(res.states[-1] - res.states[0]))) > 0.5  # it did spread


def random_smooth(key, grid, knots, scale, offset):
    c = jax.random.normal(key, (3, 3))
    def f(e, t):
        return offset + scale * (0.5 + 0.2 * jnp.tanh(c[0, 0] * e + c[0, 1] * t) + 0.1 * jnp.sin(3 * c[1, 0] * e))
    return f


PDE_GRID = dr.EnergyGrid(-1.2, 1.2, 240)  # shared shapes: one compilation per order
PDE_KNOTS = 41
PDE_TIMES = 5


def random_pde(getkey, order, n=PDE_GRID.n):
    grid = dr.EnergyGrid(-1.0, 1.0, n)
    knots = jnp.linspace(0.0, 3.0, PDE_KNOTS)
    return dr.Smoluchowski.from_functions(
        grid, knots, level_density=random_smooth(getkey(), grid, knots, 1.0, 1.0),
        diffusion=random_smooth(getkey(), grid, knots, 0.02, 0.0),
        velocity=random_smooth(getkey(), grid, knots, 0.3, -0.15), order=order,
    )


@pytest.mark.parametrize("order", [2, 4])
def test_divergence_operator_is_conservative(getkey, order):
    pde = random_pde(getkey, order, n=30)
    eta = jax.random.uniform(getkey(), (30,))
    rates = jnp.stack([pde.vector_field(t, eta) for t in (0.0, 1.3, 3.0)])
    assert float(jnp.max(jnp.abs(jnp.sum(rates, -1)))) < 1e-13 * float(jnp.max(jnp.abs(rates)))
    assert float(jnp.max(jnp.abs(rates))) > 1e-2


def test_divergence_form_conserves_probability(getkey):
    pde = random_pde(getkey, 4)
    eta0 = dr.heat_kernel_cells(pde.grid, 0.2, 0.02)
    res = pde.solve(eta0, jnp.linspace(0.0, 3.0, PDE_TIMES))
    norms = dr.distribution_moments(res.states, pde.grid)[0]
    assert float(jnp.max(jnp.abs(norms - norms[0]))) < 1e-10
    assert float(jnp.max(jnp.abs(res.states[-1] - eta0))) > 0.1


def test_stationary_uniform_occupation():
    # eta proportional to Sigma (uniform occupation per level) is stationary without drift
    grid = dr.EnergyGrid(-1.0, 1.0, 40)
    sigma = lambda e, t: 1.0 + 0.5 * jnp.cos(2 * e)
    pde = dr.Smoluchowski.from_functions(grid, [0.0], level_density=sigma, diffusion=lambda e, t: 0.1 + 0.05 * e)
    eta = pde.level_density[0]
    assert float(jnp.max(jnp.abs(pde.vector_field(0.0, eta)))) < 1e-12
    assert float(jnp.max(jnp.abs(pde.vector_field(0.0, jnp.ones(40))))) > 1e-3


def test_level_flow_carries_occupations():
    # drift alone (D = 0) keeps the occupation per level, eta / Sigma, constant along the
    # level flow (eq. 44); the GOE semicircle stretches by s = sqrt(1 + lambda^2 d sigma^2), so
    # a Gaussian eta becomes N(s mu, s^2 var)
    d, s2, eps, t1 = 100, 0.01, 0.05, 20.0
    grid = PDE_GRID
    pde = dr.goe_smoluchowski(grid, jnp.linspace(0.0, t1, PDE_KNOTS), epsilon=eps, dim=d, coupling_variance=s2,
                              form="constant", scale=0.0)
    res = pde.solve(dr.heat_kernel_cells(grid, 0.3, 0.01), jnp.linspace(0.0, t1, PDE_TIMES))
    s = math.sqrt(1 + (eps * t1) ** 2 * d * s2)
    expected = dr.heat_kernel_cells(grid, 0.3 * s, 0.01 * s**2)
    assert float(jnp.max(jnp.abs(res.states[-1] - expected))) < 2e-3  # of a peak ~3
    assert float(jnp.max(jnp.abs(res.states[0] - expected))) > 0.5


def test_eq47_source_breaks_conservation():
    d, s2, eps = 100, 0.01, 0.05
    grid = dr.EnergyGrid(-0.8, 0.8, 64)
    knots = jnp.array([0.0])
    pde = dr.goe_smoluchowski(grid, knots, epsilon=eps, dim=d, coupling_variance=s2, form="eq47")
    eta0 = dr.heat_kernel_cells(grid, 0.0, 0.01)
    rate = float(jnp.sum(pde.vector_field(0.0, eta0)) * grid.width)
    # narrow eta at E = 0: d/dt int eta = -(eps^2/2) G2''(0) = eps^2 d s2 / 4
    assert abs(rate / (eps**2 * d * s2 / 4) - 1) < 0.05
    classical = dr.goe_smoluchowski(grid, knots, epsilon=eps, dim=d, coupling_variance=s2, form="eq47_classical")
    assert abs(float(jnp.sum(classical.vector_field(0.0, eta0)) * grid.width)) < 1e-14
    golden = dr.goe_smoluchowski(grid, knots, epsilon=eps, dim=d, coupling_variance=s2)
    assert np.allclose(classical.conductance, 2 * golden.conductance)


def test_moments_sheppard():
    grid = dr.EnergyGrid(-3.0, 3.0, 30)
    norm, mean, var = dr.distribution_moments(dr.heat_kernel_cells(grid, 0.2, 0.25), grid)
    assert abs(float(norm) - 1) < 1e-6 and abs(float(mean) - 0.2) < 1e-6 and abs(float(var) - 0.25) < 1e-4


# ----------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------


def test_errors(small):
    system, psi0, tsave, grid = small
    sym = jnp.eye(3)
    bad = jnp.array([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    with pytest.raises(ValueError, match="`h0` must be Hermitian"):
        dr.DrivenSystem.from_matrices(bad, sym, 0.1)
    with pytest.raises(ValueError, match="`v` must be Hermitian"):
        dr.DrivenSystem.from_matrices(sym, bad, 0.1)
    with pytest.raises(ValueError, match="`epsilon` must be finite and >= 0"):
        dr.DrivenSystem.from_matrices(sym, sym, -0.1)
    with pytest.raises(ValueError, match="`epsilon`"):
        dr.DrivenSystem.goe(jax.random.key(0), 10, -1e-3)
    with pytest.raises(ValueError, match="holds no level"):
        dr.window_levels(system.energies0, 5.0, 0.1)
    with pytest.raises(ValueError, match="holds no level"):
        dr.nearest_levels(system.energies0, -3.0, 2)
    with pytest.raises(ValueError, match="coarser than the spectrum"):
        dr.EnergyGrid(-10.0, 10.0, 4).check(system.energies0)
    with pytest.raises(ValueError, match="finer than the mean level spacing"):
        dr.EnergyGrid(-2.0, 2.0, 400).check(system.energies0)
    with pytest.raises(ValueError, match="level_density"):
        dr.goe_smoluchowski(dr.EnergyGrid(-2.5, 2.5, 10), [0.0], epsilon=0.1, dim=40, coupling_variance=0.025)
    with pytest.raises(ValueError, match="`dt`"):
        dr.Magnus(0.0)
    with pytest.raises(TypeError, match="`method`"):
        dr.evolve(system, psi0, tsave, method=tj.Eigen())
    with pytest.raises(ValueError, match="`psi0`"):
        dr.evolve(system, 2 * psi0, tsave)
    with pytest.raises(ValueError, match="`states`"):
        dr.measure(system, psi0, tsave, grid)
    with pytest.raises(ValueError, match="`indices`"):
        system.eigenstates([40])
