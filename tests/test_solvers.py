"""The public solvers on user operators: against QuTiP, against closed forms, and their
batching, Result shapes, statuses and argument errors."""

import diffrax as dfx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import thermojax as tj
from thermojax.lindblad import Lindbladian, liouvillian
from thermojax.options import ODE, Eigen, EulerMaruyama, Expm, Options

qutip = pytest.importorskip("qutip")

TIGHT = ODE(dfx.Tsit5(), dfx.PIDController(rtol=1e-10, atol=1e-12))


def _driven_oscillator(n=10, kappa=0.5, drive=0.3, delta=0.2):
    a = qutip.destroy(n)
    H = delta * a.dag() * a + drive * (a + a.dag())
    return a, H, [np.sqrt(kappa) * a]


# ----------------------------------------------------------------------------- vs QuTiP


def test_mesolve_damped_driven_oscillator_matches_qutip():
    a, H, c_ops = _driven_oscillator()
    psi0 = qutip.coherent(10, 0.8)
    ts = np.linspace(0.0, 6.0, 25)
    ref = qutip.mesolve(H, psi0, ts, c_ops, e_ops=[a.dag() * a], options={"atol": 1e-12, "rtol": 1e-10})
    res = tj.mesolve(H, c_ops, psi0, ts, e_ops=[a.dag() * a], method=TIGHT, options=Options(normalize=True))
    assert res.success
    np.testing.assert_allclose(res.expect[0].real, ref.expect[0], atol=1e-6)
    # the states come back as Qobj with the input's dims
    q = res.to_qutip()
    assert q[-1].dims == [[10], [10]]
    assert abs((q[-1] - ref.final_state).norm()) < 1e-6 if hasattr(ref, "final_state") and ref.final_state else True


def test_sesolve_time_dependent_matches_qutip():
    sx, sz = qutip.sigmax(), qutip.sigmaz()
    f = lambda t: 0.7 * jnp.cos(1.3 * t)  # noqa: E731
    ts = np.linspace(0.0, 5.0, 21)
    psi0 = qutip.basis(2, 0)
    ref = qutip.sesolve([0.5 * sz, [sx, lambda t: 0.7 * np.cos(1.3 * t)]], psi0, ts, e_ops=[sz, sx],
                        options={"atol": 1e-12, "rtol": 1e-10})
    res = tj.sesolve((0.5 * sz, [(sx, f)]), psi0, ts, e_ops=[sz, sx], method=TIGHT)
    np.testing.assert_allclose(res.expect.real, np.array(ref.expect), atol=1e-6)
    # the same H as a callable H(t)
    h = lambda t: 0.5 * jnp.asarray(sz.full()) + f(t) * jnp.asarray(sx.full())  # noqa: E731
    res2 = tj.sesolve(h, psi0, ts, e_ops=[sz, sx], method=TIGHT)
    np.testing.assert_allclose(res2.expect, res.expect, atol=1e-9)


@pytest.mark.parametrize("unravelling", ["homodyne", "heterodyne"])
def test_ssesolve_ensemble_matches_mesolve_within_its_standard_errors(unravelling):
    n = 5
    a, H, c_ops = _driven_oscillator(n=n, kappa=0.6, drive=0.4)
    c_ops = c_ops + [np.sqrt(0.15) * a.dag()]  # a thermal pair, as in the Kerr benchmark
    psi0 = qutip.basis(n, 0)
    ts = np.linspace(0.0, 1.5, 6)
    units = [qutip.basis(n, i) * qutip.basis(n, j).dag() for i in range(n) for j in range(n)]
    e_ops = [a.dag() * a] + units
    me = tj.mesolve(H, c_ops, psi0, ts, e_ops=e_ops, method=TIGHT)
    res = tj.ssesolve(H, c_ops, psi0, ts, jax.random.key(7), ntraj=4000, unravelling=unravelling, e_ops=e_ops,
                      method=EulerMaruyama(0.0025))
    assert int(res.ensemble.n_diverged) == 0
    z = np.abs(np.asarray(res.expect - me.expect))[:, 1:] / np.asarray(res.expect_stderr)[:, 1:]
    # <a^dagger a> and every entry <psi|i><j|psi> = rho_ji, against mesolve, in units of the
    # ensemble's own standard error (t = 0 is deterministic and left out)
    assert z[0].max() < 4.0
    assert np.nanmax(z[1:]) < 4.5  # 150 entries x 5 times: the max of ~750 |N(0,1)| plus the O(dt) bias
    # and the ensemble density matrix is that of mesolve
    assert np.abs(np.asarray(res.states - me.states)).max() < 0.05


def test_ssesolve_detects_a_wrong_master_equation():
    """The SE-based comparison has power: a 50% wrong decay rate is seen."""
    n = 5
    a, H, c_ops = _driven_oscillator(n=n, kappa=0.6, drive=0.4)
    psi0 = qutip.basis(n, 0)
    ts = np.linspace(0.0, 1.5, 6)
    wrong = tj.mesolve(H, [np.sqrt(0.9) * a], psi0, ts, e_ops=[a.dag() * a], method=TIGHT)
    res = tj.ssesolve(H, c_ops, psi0, ts, jax.random.key(7), ntraj=4000, e_ops=[a.dag() * a],
                      method=EulerMaruyama(0.0025))
    z = np.abs(np.asarray(res.expect - wrong.expect))[0, 1:] / np.asarray(res.expect_stderr)[0, 1:]
    assert z.max() > 6.0


# ----------------------------------------------------------------------------- exact results


def test_sesolve_eigen_and_ode_agree_and_give_rabi_oscillations():
    sx = jnp.array([[0.0, 1.0], [1.0, 0.0]])
    ts = jnp.linspace(0.0, 3.0, 7)
    p1 = jnp.diag(jnp.array([0.0, 1.0]))
    ode = tj.sesolve(0.5 * sx, jnp.array([1.0, 0.0]), ts, e_ops=[p1], method=TIGHT)
    eig = tj.sesolve(0.5 * sx, jnp.array([1.0, 0.0]), ts, e_ops=[p1], method=Eigen())
    np.testing.assert_allclose(eig.expect[0].real, np.sin(np.asarray(ts) / 2) ** 2, atol=1e-12)
    np.testing.assert_allclose(ode.expect, eig.expect, atol=1e-9)


def test_mesolve_decay_closed_form_three_ways():
    """Amplitude damping: p1(t) = e^{-gamma t}, coherence e^{-gamma t / 2}, for ODE, Expm and a
    generator object."""
    gamma = 0.7
    sm = jnp.array([[0.0, 1.0], [0.0, 0.0]])
    rho0 = jnp.full((2, 2), 0.5, complex)
    ts = jnp.linspace(0.0, 2.0, 5)
    expected_p1 = 0.5 * np.exp(-gamma * np.asarray(ts))
    expected_coh = 0.5 * np.exp(-gamma * np.asarray(ts) / 2)
    for res in (
        tj.mesolve(jnp.zeros((2, 2)), [np.sqrt(gamma) * sm], rho0, ts, method=TIGHT),
        tj.mesolve(jnp.zeros((2, 2)), [np.sqrt(gamma) * sm], rho0, ts, method=Expm()),
        tj.mesolve(Lindbladian(jnp.zeros((2, 2)), [np.sqrt(gamma) * sm]), [], rho0, ts, method=TIGHT),
    ):
        np.testing.assert_allclose(np.real(res.states[:, 1, 1]), expected_p1, atol=1e-9)
        np.testing.assert_allclose(np.real(res.states[:, 0, 1]), expected_coh, atol=1e-9)


def test_lindbladian_rhs_equals_dense_liouvillian(getkey):
    d = 4
    k1, k2, k3 = getkey(), getkey(), getkey()
    h = jax.random.normal(k1, (d, d)) + 1j * jax.random.normal(k2, (d, d))
    h = h + h.conj().T
    ops = jax.random.normal(k3, (3, d, d)).astype(complex)
    gen = Lindbladian(h, ops)
    x = jax.random.normal(getkey(), (d, d)) + 1j * jax.random.normal(getkey(), (d, d))
    big = liouvillian(h, ops)
    np.testing.assert_allclose(gen.rhs(0.0, x).reshape(-1), big @ x.reshape(-1), atol=1e-12)
    rho = x @ x.conj().T
    np.testing.assert_allclose(gen.rhs_hermitian(0.0, rho), gen.rhs(0.0, rho), atol=1e-12)


def test_mesolve_accepts_an_oqt_model_and_matches_its_closed_form(getkey):
    from thermojax.models.oqt import OQTModel
    from thermojax.spectra import goe_matrix, ket_to_dm, random_ket

    h = goe_matrix(getkey(), 6)
    psi = random_ket(getkey(), 6)
    model = OQTModel.microcanonical(h, psi, alpha_N=0.8)
    rho0 = ket_to_dm(model.eigensystem.ket_to_eigenbasis(psi))
    ts = jnp.linspace(0.0, 2.0, 5)
    res = tj.mesolve(model, [], rho0, ts, method=TIGHT)
    np.testing.assert_allclose(res.states, model.evolve(rho0, ts).states, atol=1e-9)


# ----------------------------------------------------------------------------- batching and Result


def test_cartesian_batching_shapes_and_elements():
    sx = jnp.array([[0.0, 1.0], [1.0, 0.0]])
    sm = jnp.array([[0.0, 1.0], [0.0, 0.0]])
    Hb = jnp.stack([0.5 * sx, sx, 2 * sx])  # (3, 2, 2)
    Lb = jnp.stack([sm[None], 2 * sm[None]])  # (2, 1, 2, 2)
    rho = jnp.stack([jnp.diag(jnp.array([0.0, 1.0])), jnp.diag(jnp.array([1.0, 0.0]))]).astype(complex)
    ts = jnp.linspace(0.0, 1.0, 3)
    res = tj.mesolve(Hb, Lb, rho, ts, e_ops=[sx, sm])
    assert res.states.shape == (3, 2, 2, 3, 2, 2)
    assert res.expect.shape == (3, 2, 2, 2, 3)
    assert res.status._value.shape == (3, 2, 2)
    one = tj.mesolve(Hb[2], Lb[1], rho[0], ts, e_ops=[sx, sm])
    np.testing.assert_allclose(res.states[2, 1, 0], one.states, atol=1e-12)
    np.testing.assert_allclose(res.expect[2, 1, 0], one.expect, atol=1e-12)
    psis = jnp.eye(2)
    se = tj.sesolve(Hb, psis, ts, e_ops=[sx])
    assert se.states.shape == (3, 2, 3, 2) and se.expect.shape == (3, 2, 1, 3)


def test_parameters_batch_by_vmap():
    sx = jnp.array([[0.0, 1.0], [1.0, 0.0]])
    p1 = jnp.diag(jnp.array([0.0, 1.0]))
    ts = jnp.linspace(0.0, 1.0, 3)

    def final_population(omega):
        return tj.sesolve(0.5 * omega * sx, jnp.array([1.0, 0.0]), ts, e_ops=[p1], method=Eigen()).expect[0, -1].real

    omegas = jnp.array([0.5, 1.0, 2.0])
    np.testing.assert_allclose(jax.vmap(final_population)(omegas), np.sin(np.asarray(omegas) / 2) ** 2, atol=1e-12)
    # and it is differentiable: d/d omega sin^2(omega t / 2) at t = 1
    g = jax.grad(final_population)(1.0)
    np.testing.assert_allclose(g, 0.5 * np.sin(1.0), atol=1e-10)


def test_status_reports_max_steps_instead_of_garbage():
    sx = jnp.array([[0.0, 1.0], [1.0, 0.0]])
    res = tj.sesolve(sx, jnp.array([1.0, 0.0]), jnp.linspace(0, 10, 3), method=ODE(max_steps=3))
    assert not bool(res.success)
    assert bool(res.status == tj.Status.max_steps_reached)
    with pytest.raises(RuntimeError, match="maximum number of solver steps"):
        tj.sesolve(sx, jnp.array([1.0, 0.0]), jnp.linspace(0, 10, 3), method=ODE(max_steps=3),
                   options=Options(throw=True))


def test_save_states_false_keeps_only_expect():
    sx = jnp.array([[0.0, 1.0], [1.0, 0.0]])
    res = tj.sesolve(sx, jnp.array([1.0, 0.0]), jnp.linspace(0, 1, 3), e_ops=[sx], options=Options(save_states=False))
    assert res.states is None and res.expect.shape == (1, 3)
    with pytest.raises(ValueError, match="No states were saved"):
        res.final_state  # noqa: B018


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("H", "psi0", "match"),
    [
        (jnp.array([[0.0, 1.0], [0.0, 0.0]]), jnp.array([1.0, 0.0]), "`H` must be Hermitian"),
        (jnp.array([[0.0, jnp.nan], [jnp.nan, 0.0]]), jnp.array([1.0, 0.0]), "NaN"),
        (jnp.zeros((2, 3)), jnp.array([1.0, 0.0]), "square"),
        (jnp.eye(2), jnp.array([1.0, 0.0, 0.0]), "`psi0` must be a ket"),
        (jnp.eye(2), jnp.array([3.0, 0.0]), "`psi0` must be normalised"),
    ],
)
def test_sesolve_bad_input_names_the_argument(H, psi0, match):
    with pytest.raises(ValueError, match=match):
        tj.sesolve(H, psi0, jnp.linspace(0, 1, 3))


def test_mesolve_bad_input_names_the_argument():
    sm = jnp.array([[0.0, 1.0], [0.0, 0.0]])
    with pytest.raises(ValueError, match="`rho0` must be a Hermitian density matrix"):
        tj.mesolve(jnp.eye(2), [sm], jnp.array([[0.5, 0.5], [0.0, 0.5]]), jnp.linspace(0, 1, 3))
    with pytest.raises(ValueError, match="`jump_ops` holds operators of dimension 3"):
        tj.mesolve(jnp.eye(2), [jnp.eye(3)], jnp.array([1.0, 0.0]), jnp.linspace(0, 1, 3))
    with pytest.raises(ValueError, match="`tsave` must be strictly increasing"):
        tj.mesolve(jnp.eye(2), [sm], jnp.array([1.0, 0.0]), jnp.array([0.0, 1.0, 0.5]))
    with pytest.raises(TypeError, match="`method` must be ODE"):
        tj.mesolve(jnp.eye(2), [sm], jnp.array([1.0, 0.0]), jnp.linspace(0, 1, 3), method=EulerMaruyama(0.1))
    with pytest.raises(TypeError, match="`method` must be EulerMaruyama"):
        tj.ssesolve(jnp.eye(2), [sm], jnp.array([1.0, 0.0]), jnp.linspace(0, 1, 3), jax.random.key(0), ntraj=2)
    with pytest.raises(ValueError, match="`unravelling`"):
        tj.ssesolve(jnp.eye(2), [sm], jnp.array([1.0, 0.0]), jnp.linspace(0, 1, 3), jax.random.key(0), ntraj=2,
                    unravelling="photon", method=EulerMaruyama(0.1))


@pytest.mark.parametrize("chunk_elements", [2 * 36, 2**22], ids=["scanned-chunks", "one-chunk"])
def test_stacked_dense_jump_ops_match_the_kron_liouvillian(monkeypatch, chunk_elements):
    """Seven dense jump operators go through the stacked sandwich (chunks of 2, the last one
    zero-padded, or one chunk); both give the superoperator built from Kronecker products."""
    import thermojax.lindblad as lb

    monkeypatch.setattr(lb, "_SANDWICH_CHUNK_ELEMENTS", chunk_elements)
    rng = np.random.default_rng(3)
    d, k = 6, 7
    ops = rng.normal(size=(k, d, d)) + 1j * rng.normal(size=(k, d, d))
    h = rng.normal(size=(d, d))
    h = h + h.T
    rho = rng.normal(size=(d, d)) + 1j * rng.normal(size=(d, d))
    gen = Lindbladian(h, ops)
    assert all(o is None for o in gen.jump_offsets)
    want = (liouvillian(h, ops) @ rho.reshape(-1)).reshape(d, d)
    np.testing.assert_allclose(gen.rhs(0.0, rho), want, atol=1e-11)
    herm = rho @ rho.conj().T
    np.testing.assert_allclose(gen.rhs_hermitian(0.0, herm), (liouvillian(h, ops) @ herm.reshape(-1)).reshape(d, d),
                               atol=1e-11)


# ----------------------------------------------------------------------------- FusedERK


@pytest.mark.parametrize("solver", [dfx.Tsit5(), dfx.Dopri5(), dfx.Dopri8()], ids=lambda s: type(s).__name__)
def test_fused_erk_takes_the_same_steps_as_the_diffrax_solver(solver):
    """The written-out step (`solvers._fused.FusedERK`) uses the wrapped solver's tableau,
    so with the same controller it takes as many steps and lands on the same numbers
    within the tolerance (a step agrees to rounding; rounding in the error estimate then
    shifts later step sizes by ulps); and the damped oscillator it solves is checked
    against its closed form. A wrong tableau entry changes the step count and the values."""
    from thermojax.solvers._fused import FusedERK, fusable

    assert fusable(solver) and not fusable(dfx.Euler()) and not fusable(dfx.Kvaerno5())

    def field(t, y, w):  # damped oscillator, x'' = -w^2 x - 0.1 x' (real state)
        return jnp.stack([y[1], -(w**2) * y[0] - 0.1 * y[1]])

    ts = jnp.linspace(0.0, 5.0, 11)
    y0 = jnp.array([1.0, 0.0])
    method = ODE(solver, dfx.PIDController(rtol=1e-9, atol=1e-9))
    fused = tj.solve_ode(field, y0, ts, args=2.0, method=method)
    unfused = ODE(solver, method.stepsize_controller, fused=False)
    plain = tj.solve_ode(field, y0, ts, args=2.0, method=unfused)
    assert fused.method == plain.method == type(solver).__name__
    assert int(fused.stats["num_steps"]) == int(plain.stats["num_steps"])
    np.testing.assert_allclose(fused.states, plain.states, rtol=0, atol=1e-8)
    om = np.sqrt(4.0 - 0.0025)
    exact = np.exp(-0.05 * np.asarray(ts)) * (np.cos(om * ts) + 0.05 / om * np.sin(om * ts))
    np.testing.assert_allclose(fused.states[:, 0], exact, atol=1e-7)
    # reverse mode through diffeqsolve's checkpointed loop works on the written-out step
    g = jax.grad(lambda w: tj.solve_ode(field, y0, ts, args=w, method=method).states[-1, 0])(2.0)
    g_ref = jax.grad(lambda w: tj.solve_ode(field, y0, ts, args=w, method=unfused).states[-1, 0])(2.0)
    np.testing.assert_allclose(g, g_ref, rtol=1e-8)
    # forward mode (diffrax's ForwardMode adjoint, as the driven PDE fits use)
    fwd = ODE(solver, method.stepsize_controller, adjoint=dfx.ForwardMode())
    gf = jax.jacfwd(lambda w: tj.solve_ode(field, y0, ts, args=w, method=fwd).states[-1, 0])(2.0)
    np.testing.assert_allclose(gf, g_ref, rtol=1e-6)
    with pytest.raises(TypeError, match="explicit Runge-Kutta"):
        FusedERK(dfx.Euler())


def test_saving_interval_by_interval_gives_the_same_solution():
    """`ODE(dense=False)` integrates from save time to save time instead of interpolating.
    At a fixed step whose grid holds the save times it is the same computation (same steps,
    values to rounding); with an adaptive controller it meets the closed form at its
    tolerance; a start `t0` before the first save time is integrated over first; reverse
    mode differentiates through it."""

    def field(t, y, w):  # damped oscillator, x'' = -w^2 x - 0.1 x'
        return jnp.stack([y[1], -(w**2) * y[0] - 0.1 * y[1]])

    ts = jnp.linspace(0.0, 5.0, 11)
    y0 = jnp.array([1.0, 0.0])
    om = np.sqrt(4.0 - 0.0025)
    exact = lambda t: np.exp(-0.05 * t) * (np.cos(om * t) + 0.05 / om * np.sin(om * t))  # noqa: E731
    fixed = ODE(dfx.Tsit5(), dfx.ConstantStepSize(), dt0=0.01)
    dense = tj.solve_ode(field, y0, ts, args=2.0, method=fixed)
    by_interval = tj.solve_ode(field, y0, ts, args=2.0, method=ODE(**{**vars(fixed), "dense": False}))
    assert int(by_interval.stats["num_steps"]) == int(dense.stats["num_steps"]) == 500
    np.testing.assert_allclose(by_interval.states, dense.states, rtol=0, atol=1e-13)
    adaptive = ODE(dfx.Tsit5(), dfx.PIDController(rtol=1e-10, atol=1e-10), dense=False)
    res = tj.solve_ode(field, y0, ts, args=2.0, method=adaptive, options=tj.Options(t0=-1.0))
    assert res.success
    np.testing.assert_allclose(res.states[:, 0], exact(np.asarray(ts) + 1.0), atol=1e-8)
    g = jax.grad(lambda w: tj.solve_ode(field, y0, ts, args=w, method=adaptive).states[-1, 0])(2.0)
    g_ref = jax.grad(lambda w: tj.solve_ode(field, y0, ts, args=w, method=ODE(dfx.Tsit5(), dfx.PIDController(
        rtol=1e-10, atol=1e-10))).states[-1, 0])(2.0)  # fmt: skip
    np.testing.assert_allclose(g, g_ref, rtol=1e-6)
