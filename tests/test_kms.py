"""KMS open-system model (arXiv:2505.20064): exact facts of the five generators on the
reference Ising chain, independent implementations (NumPy kernel sums, SciPy quadrature,
QuTiP brmesolve), the finite bath, and bad input."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.linalg

import thermojax as tj
from thermojax import lindblad, spectra
from thermojax.models import kms

TAUS = [0.5, 2.0, 8.0, 32.0]


@pytest.fixture(scope="module")
def sys3():
    return kms.OpenSystem.ising(3)


@pytest.fixture(scope="module")
def gens3(sys3):
    return {name: kms.make_generator(name, sys3, tau=1.0) for name in kms.GENERATORS}


@pytest.fixture(scope="module")
def dense3(gens3):
    return {name: np.asarray(g.liouvillian()) for name, g in gens3.items()}


# ----------------------------------------------------------------------------------
# reference model and rate functions
# ----------------------------------------------------------------------------------


def _kron_ising(n, J=1.0, hx=0.9045, hz=0.809):
    x, z, one = np.array([[0, 1], [1, 0.0]]), np.diag([1.0, -1.0]), np.eye(2)

    def site(op, i):
        out = np.ones((1, 1))
        for k in range(n):
            out = np.kron(out, op if k == i else one)
        return out

    h = sum(J * site(z, i) @ site(z, i + 1) for i in range(n - 1))
    return h + sum(hx * site(x, i) + hz * site(z, i) for i in range(n))


@pytest.mark.parametrize("n", [1, 2, 4])
def test_ising_matches_kron_construction(n):
    np.testing.assert_allclose(np.asarray(kms.mixed_field_ising(n)), _kron_ising(n), atol=1e-14)


def test_ohmic_closed_form_and_zero_limit():
    bath = kms.OhmicSpectrum(eta=0.03, omega_c=5.0, beta=2.0)
    w = np.array([-3.0, -0.5, 0.7, 4.0])
    ref = 2 * np.pi * 0.03 * w * np.exp(-((w / 5.0) ** 2)) / (1 - np.exp(-2.0 * w))
    np.testing.assert_allclose(np.asarray(bath.gamma(w)), ref, rtol=1e-13)
    assert float(bath.gamma(0.0)) == pytest.approx(2 * np.pi * 0.03 / 2.0, rel=1e-15)
    assert float(bath.gamma(1e-9)) == pytest.approx(2 * np.pi * 0.03 / 2.0, rel=1e-8)
    assert kms.check_kms(bath) < 1e-12


def test_user_spectrum_violating_kms_is_refused():
    ok = kms.SpectralFunction(lambda w: jnp.exp(0.5 * w - w**2 / 8), beta=1.0)
    assert float(ok.gamma(0.0)) == 1.0
    with pytest.raises(ValueError, match="violates KMS"):
        kms.SpectralFunction(lambda w: jnp.exp(0.5 * w - w**2 / 8), beta=2.0)
    with pytest.raises(ValueError, match=">= 0"):
        kms.SpectralFunction(lambda w: -jnp.exp(0.5 * w - w**2 / 8), beta=1.0)
    with pytest.raises(TypeError, match="AbstractSpectralFunction"):
        kms.OpenSystem(np.eye(2), [np.eye(2)], lambda w: w)


def test_smoothed_rate_against_scipy_quad():
    bath = kms.OhmicSpectrum()
    s = 0.3
    for x in (-2.0, 0.0, 1.5):
        for kind, c in (("gamma", bath.gamma), ("h", bath.h)):
            f = lambda w, c=c, x=x: float(c(w)) * math.exp(-0.5 * ((w - x) / s) ** 2) / math.sqrt(2 * math.pi) / s
            ref = scipy.integrate.quad(f, x - 12 * s, x + 12 * s, epsabs=0, epsrel=1e-13, limit=200)[0]
            got = float(kms.smoothed_rate(bath, x, s, kind=kind))
            assert got == pytest.approx(ref, rel=1e-12)
    # h * N is even: what makes the exact-KMS kernel exactly balanced
    xs = jnp.array([0.3, 1.7, 4.0])
    np.testing.assert_allclose(kms.smoothed_rate(bath, xs, s, kind="h"), kms.smoothed_rate(bath, -xs, s, kind="h"),
                               rtol=1e-14)


def test_lamb_shift_against_scipy_cauchy():
    bath = kms.OhmicSpectrum()
    for w in (-2.0, 0.5, 3.0):
        pv = scipy.integrate.quad(lambda x: float(bath.gamma(x)), -60, 60, weight="cauchy", wvar=w, limit=400)[0]
        # S(w) = (1/2pi) P int gamma(w')/(w - w') dw' = -(1/2pi) P int gamma(w')/(w' - w) dw'
        assert float(kms.lamb_shift(bath, w)) == pytest.approx(-pv / (2 * np.pi), rel=1e-9, abs=1e-12)


# ----------------------------------------------------------------------------------
# every generator: fast form against the d^4 kernel form, physicality
# ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(kms.GENERATORS))
def test_fast_form_matches_kernel_form(name, gens3, dense3):
    gen = gens3[name]
    ker = np.asarray(gen.kernel_form().liouvillian())
    rel = np.max(np.abs(dense3[name] - ker)) / np.max(np.abs(ker))
    assert rel < 1e-10
    assert float(kms.quadrature_error(gen)) < 1e-10


def test_kernel_form_matches_numpy_einsum(sys3, gens3):
    # an independent evaluation of the shared kernel form with NumPy, for exact-KMS at tau = 1
    e = np.asarray(sys3.energies)
    nu = (e[None, :] - e[:, None]).reshape(-1)
    s, beta = 0.5, 1.0
    bath = sys3.spectrum
    w = np.linspace(-40, 40, 8001)
    hw = np.asarray(bath.h(w))
    mean = 0.5 * (nu[:, None] + nu[None, :])
    smooth = np.array([np.trapezoid(hw * np.exp(-0.5 * ((w - m) / s) ** 2), w) for m in mean.ravel()])
    smooth = smooth.reshape(mean.shape) / math.sqrt(2 * math.pi) / s
    alpha = np.exp(-0.5 * (nu[:, None] - nu[None, :]) ** 2) * np.exp(0.5 * beta * mean) * smooth
    a = np.asarray(sys3.couplings).reshape(2, -1)
    choi = np.einsum("IJ,aI,aJ->IJ", alpha, a, a.conj())
    ref = np.asarray(gens3["exact_kms"].kernel_form().choi).reshape(64, 64)
    assert np.max(np.abs(choi - ref)) < 1e-9 * np.max(np.abs(ref))


@pytest.mark.parametrize("name", list(kms.GENERATORS))
def test_trace_and_hermiticity_preserved(name, gens3):
    gen = gens3[name]
    assert float(lindblad.trace_preservation_error(gen)) < 1e-13
    assert float(lindblad.hermiticity_preservation_error(gen)) < 1e-13


def test_lindblad_forms_agree_with_core_lindbladian(gens3):
    rho = np.asarray(spectra.ket_to_dm(spectra.random_ket(jax.random.key(3), 8)))
    for name in ("davies", "exact_kms"):
        gen = gens3[name]
        core = gen.lindbladian()
        np.testing.assert_allclose(gen.rhs(0.0, rho), core.rhs(0.0, rho), atol=1e-13)
        np.testing.assert_allclose(gen.rhs_hermitian(0.0, rho), gen.rhs(0.0, rho), atol=1e-13)
    with pytest.raises(TypeError, match="no Lindblad form"):
        gens3["redfield"].jump_ops()


# ----------------------------------------------------------------------------------
# acceptance 1: exact facts
# ----------------------------------------------------------------------------------


@pytest.mark.parametrize("tau", TAUS)
def test_exact_kms_and_davies_fix_gibbs_at_every_tau(sys3, tau):
    gen = kms.ExactKMS(sys3, tau)
    assert float(kms.fixed_point_error(gen.kernel_form())) < 1e-12
    assert float(kms.fixed_point_error(gen)) < max(1e-12, float(kms.quadrature_error(gen)))
    assert float(kms.fixed_point_error(gen)) < 1e-10
    dav = kms.Davies(sys3)
    assert float(kms.fixed_point_error(dav)) < 1e-12
    assert float(kms.fixed_point_error(dav.kernel_form())) < 1e-12


def test_exact_kms_needs_its_coherent_term(sys3):
    ker = kms.ExactKMS(sys3, 1.0).kernel_form()
    for coherent in (jnp.zeros_like(ker.coherent), -ker.coherent):
        broken = kms.KernelGenerator(sys3, ker.choi, ker.k_total, coherent, ker.basis)
        assert float(kms.fixed_point_error(broken)) > 1e-5


def test_coarse_grained_fixed_point_error_falls_as_tau_minus_two(sys3):
    from thermojax.experiments.kms.fixed_point import fit_exponent

    taus = np.array([12.0, 16.0, 24.0, 32.0, 48.0])
    err = [float(kms.fixed_point_error(kms.kernel_generator("coarse_grained", sys3, tau=t))) for t in taus]
    fit = fit_exponent(taus, err, tau_min=10.0)
    assert abs(fit["value"] + 2.0) < 3 * fit["stderr"] + 1e-6
    assert fit["stderr"] < 1e-2


def test_detailed_balance(gens3):
    assert float(kms.gns_residual(gens3["davies"])) < 1e-12
    assert float(kms.kms_residual(gens3["davies"])) < 1e-12
    assert float(kms.kms_residual(gens3["exact_kms"])) < 1e-12
    assert float(kms.gns_residual(gens3["exact_kms"])) > 1e-3
    for name in ("coarse_grained", "redfield", "ule"):
        assert float(kms.kms_residual(gens3[name])) > 1e-4


def test_gns_residual_is_convention_free(gens3):
    # the other ordering Gamma(X) = X sigma gives the same verdicts
    system = gens3["davies"].system
    sig = jnp.diag(system.gibbs_weights()).astype(complex)
    eye = jnp.eye(8, dtype=complex)
    assert float(kms._balance_residual(gens3["davies"], eye, sig)) < 1e-12
    assert float(kms._balance_residual(gens3["exact_kms"], eye, sig)) > 1e-3


def test_complete_positivity(gens3):
    scale = max(float(jnp.max(jnp.abs(g.liouvillian()))) for g in gens3.values())
    for name in ("davies", "coarse_grained", "exact_kms", "ule"):
        assert float(kms.choi_min_eigenvalue(gens3[name])) > -1e-12 * scale
    assert float(kms.choi_min_eigenvalue(gens3["redfield"])) < -1e-3


def test_choi_detects_a_non_cp_generator():
    # amplitude damping with a negative rate is not completely positive
    sm = jnp.array([[0.0, 1.0], [0.0, 0.0]])
    good = lindblad.Lindbladian(jnp.zeros((2, 2)), [sm])
    assert float(kms._choi_min(good.liouvillian())) > -1e-14
    assert float(kms._choi_min(-good.liouvillian())) < -0.5


@pytest.mark.parametrize("name", ["coarse_grained", "exact_kms"])
def test_converges_monotonically_to_davies(sys3, gens3, name):
    dav = gens3["davies"]
    taus = (1.0, 4.0, 16.0, 64.0, 256.0)
    dist = [float(kms.distance_to_davies(kms.kernel_generator(name, sys3, tau=t), dav)) for t in taus]
    assert all(b < a for a, b in zip(dist, dist[1:]))
    assert dist[-1] < 1e-4
    # the fast form gives the same distance
    assert float(kms.distance_to_davies(gens3[name], dav)) == pytest.approx(dist[0], rel=1e-9)


def test_single_qubit_davies_rates_closed_form():
    w0 = 1.3
    bath = kms.OhmicSpectrum(eta=0.05, beta=0.7)
    system = kms.OpenSystem(jnp.diag(jnp.array([-w0 / 2, w0 / 2])), [jnp.array([[0.0, 1.0], [1.0, 0.0]])], bath)
    gen = kms.Davies(system)
    down, up = float(bath.gamma(w0)), float(bath.gamma(-w0))
    excited = jnp.diag(jnp.array([0.0, 1.0])).astype(complex)
    ground = jnp.diag(jnp.array([1.0, 0.0])).astype(complex)
    assert float(gen.rhs(0.0, excited)[0, 0].real) == pytest.approx(down, rel=1e-13)
    assert float(gen.rhs(0.0, ground)[1, 1].real) == pytest.approx(up, rel=1e-13)
    coh = jnp.array([[0.0, 1.0], [0.0, 0.0]], complex)
    assert complex(gen.rhs(0.0, coh)[0, 1]) == pytest.approx(-0.5 * (down + up) + 1j * w0, rel=1e-13)
    rates = sorted(float(r) for r in gen.rates)
    assert rates == pytest.approx(sorted([up, float(bath.gamma(0.0)), down]), rel=1e-13)


def test_davies_groups_degenerate_bohr_frequencies():
    # an equally spaced ladder: the gap 1 appears three times and must be one frequency
    h = jnp.diag(jnp.arange(4.0))
    a = jnp.asarray(np.diag(np.ones(3), 1) + np.diag(np.ones(3), -1))
    system = kms.OpenSystem(h, [a], kms.OhmicSpectrum())
    gen = kms.Davies(system)
    assert int(gen.frequencies.shape[0]) == 7  # -3 .. 3
    assert float(kms.fixed_point_error(gen)) < 1e-14
    assert float(kms.gns_residual(gen)) < 1e-13
    assert float(kms.distance_to_davies(kms.kernel_generator("exact_kms", system, tau=200.0), gen)) < 1e-5


def test_redfield_fixes_gibbs_only_without_lamb_shift(sys3):
    assert float(kms.fixed_point_error(kms.BlochRedfield(sys3))) < 1e-13
    lamb = kms.BlochRedfield(sys3, lamb_shift=True)
    assert float(kms.fixed_point_error(lamb)) > 1e-5
    ker = np.asarray(lamb.kernel_form().liouvillian())
    assert np.max(np.abs(np.asarray(lamb.liouvillian()) - ker)) < 1e-12 * np.max(np.abs(ker))


def test_redfield_matches_qutip_brmesolve():
    qutip = pytest.importorskip("qutip")
    n = 3
    system = kms.OpenSystem.ising(n)
    h = np.asarray(kms.mixed_field_ising(n))
    ops = [np.asarray(a) for a in kms.default_couplings(n)]
    bath = system.spectrum
    spec = lambda w: float(bath.gamma(w))
    psi0 = np.zeros(2**n)
    psi0[0] = 1.0
    ts = np.linspace(0.0, 20.0, 11)
    res = qutip.brmesolve(qutip.Qobj(h), qutip.Qobj(psi0), ts, a_ops=[(qutip.Qobj(a), spec) for a in ops],
                          sec_cutoff=-1, options={"atol": 1e-12, "rtol": 1e-10})
    ref = np.stack([s.full() for s in res.states])
    import diffrax

    method = tj.ODE(stepsize_controller=diffrax.PIDController(rtol=1e-10, atol=1e-12))
    ours = tj.mesolve(kms.BlochRedfield(system), [], jnp.asarray(psi0), jnp.asarray(ts), method=method)
    assert np.max(np.abs(np.asarray(ours.states) - ref)) < 1e-6


def test_mesolve_matches_dense_exponential(gens3):
    psi0 = jnp.zeros(8).at[0].set(1.0)
    ts = jnp.array([0.0, 3.0, 9.0])
    for name in ("exact_kms",):
        gen = gens3[name]
        res = tj.mesolve(gen, [], psi0, ts)
        ref = np.stack([(scipy.linalg.expm(np.asarray(gen.liouvillian()) * t) @ np.outer(psi0, psi0).ravel())
                        for t in ts]).reshape(3, 8, 8)
        assert np.max(np.abs(np.asarray(res.states) - ref)) < 1e-6


def test_interaction_picture_matches_dense_exponential(sys3):
    import diffrax

    gen = kms.ExactKMS(sys3, 1.0, basis="eigen")
    ip = kms.InteractionPicture(gen)
    rho0 = np.zeros((8, 8))
    rho0[0, 0] = 1.0  # all up, original basis
    ts = jnp.array([0.0, 4.0, 20.0])
    method = tj.ODE(stepsize_controller=diffrax.PIDController(rtol=1e-9, atol=1e-10))
    res = tj.mesolve(ip, [], ip.from_schrodinger(0.0, rho0), ts, method=method)
    big = np.asarray(kms.ExactKMS(sys3, 1.0).liouvillian())
    ref = np.stack([(scipy.linalg.expm(big * t) @ rho0.ravel()).reshape(8, 8) for t in ts])
    assert np.max(np.abs(np.asarray(ip.to_schrodinger(ts, res.states)) - ref)) < 1e-8
    with pytest.raises(ValueError, match="basis='eigen'"):
        kms.InteractionPicture(kms.Davies(sys3))


def test_gaps_dense_arnoldi_lanczos(sys3):
    gen = kms.ExactKMS(sys3, 1.0, basis="eigen")
    dense = float(kms.spectral_gap(gen))
    assert float(kms.spectral_gap(gen, method="arnoldi")) == pytest.approx(dense, rel=1e-7)
    dis = float(kms.dissipative_gap(gen))
    assert float(kms.dissipative_gap(gen, method="lanczos")) == pytest.approx(dis, rel=1e-7)
    assert 0 < dis <= dense + 1e-12
    dav = kms.Davies(sys3, basis="eigen")  # commutes with [H, .]: the two gaps coincide
    assert float(kms.dissipative_gap(dav, method="lanczos")) == pytest.approx(float(kms.spectral_gap(dav)), rel=1e-7)


def test_eigen_basis_is_the_same_generator(sys3, dense3):
    gen = kms.ExactKMS(sys3, 1.0, basis="eigen")
    v = np.asarray(sys3.eigensystem.vectors)
    s = np.kron(v, v.conj())
    np.testing.assert_allclose(s @ np.asarray(gen.liouvillian()) @ s.conj().T, dense3["exact_kms"], atol=1e-12)


# ----------------------------------------------------------------------------------
# finite bath
# ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_bath():
    return kms.goe_bath(jax.random.key(1), 24, radius=3.0, beta=0.8)


def test_reduced_evolution_matches_full_propagation(small_bath):
    hs, a = kms.mixed_field_ising(1), kms.site_operator("x", 0, 1)
    es = spectra.eigh(kms.coupled_hamiltonian(hs, a, small_bath, 0.3))
    rho0 = jnp.kron(jnp.array([[1.0, 0.0], [0.0, 0.0]]), small_bath.gibbs_state())
    ts = jnp.linspace(0.0, 12.0, 5)
    red = kms.reduced_evolution(es, rho0, ts, (2, 24))
    full = spectra.partial_trace(es.evolve(rho0, ts).states, (2, 24), (0,))
    assert float(jnp.max(jnp.abs(red - full))) < 1e-12
    with pytest.raises(ValueError, match="dims"):
        kms.reduced_evolution(es, rho0, ts, (2, 25))


def test_finite_bath_spectrum_is_exactly_kms_and_normalised(small_bath):
    sigma = 0.2
    spec = small_bath.spectrum(sigma)
    assert kms.check_kms(spec) < 1e-12
    # int gamma dw / 2pi = exp(beta^2 sigma^2 / 8) <B^2>_beta  (each peak weighted by e^{beta w/2})
    w = np.linspace(-20, 20, 20001)
    integral = np.trapezoid(np.asarray(spec.gamma(w)), w) / (2 * np.pi)
    b2 = float(jnp.trace(small_bath.gibbs_state() @ small_bath.coupling @ small_bath.coupling).real)
    assert integral == pytest.approx(math.exp(0.8**2 * sigma**2 / 8) * b2, rel=1e-9)


def test_lambda2_fit_gradient_matches_finite_differences(small_bath):
    from thermojax.experiments.kms.finite_bath import lambda2_residuals

    hs, a = kms.mixed_field_ising(1), kms.site_operator("x", 0, 1)
    system = kms.OpenSystem(hs, [a], small_bath.spectrum(0.2), 0.3)
    l0, l1 = kms.liouvillian_parts(kms.ExactKMS(system, 1.0))
    rho0 = jnp.zeros((2, 2), complex).at[0, 0].set(1.0)
    ts = jnp.linspace(1.0, 20.0, 6)
    from thermojax.experiments.kms.finite_bath import _propagate

    target = _propagate(l0, l1, 0.11, rho0, ts)
    loss = lambda x: 0.5 * jnp.sum(lambda2_residuals({"lambda2": x}, l0, l1, rho0, ts, target) ** 2)
    x0, h = 0.07, 1e-6
    fd = (loss(x0 + h) - loss(x0 - h)) / (2 * h)
    assert float(jax.grad(loss)(x0)) == pytest.approx(float(fd), rel=1e-6)
    # the fit itself (optax L-BFGS through the same residuals) is the slow test
    # tests/test_kms_experiments.py::test_finite_bath_fit_recovers_known_coupling


# ----------------------------------------------------------------------------------
# acceptance 4: bad input
# ----------------------------------------------------------------------------------


def test_bad_input_is_refused_with_named_arguments(sys3):
    with pytest.raises(ValueError, match="`hamiltonian`.*Hermitian"):
        kms.OpenSystem(np.array([[0.0, 1.0], [0.0, 0.0]]), [np.eye(2)])
    with pytest.raises(ValueError, match=r"`couplings\[1\]`.*Hermitian"):
        kms.OpenSystem(np.eye(2), [np.eye(2), np.array([[0.0, 1.0], [0.0, 0.0]])])
    with pytest.raises(ValueError, match="`couplings`"):
        kms.OpenSystem(np.eye(2), [np.eye(3)])
    for bad_tau in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="`tau`"):
            kms.ExactKMS(sys3, bad_tau)
        with pytest.raises(ValueError, match="`tau`"):
            kms.CoarseGrained(sys3, bad_tau)
    with pytest.raises(ValueError, match="`tau` is required"):
        kms.make_generator("exact_kms", sys3)
    with pytest.raises(ValueError, match="`name`"):
        kms.make_generator("lindblad", sys3)
    with pytest.raises(ValueError, match="`basis`"):
        kms.Davies(sys3, basis="site")
    with pytest.raises(MemoryError, match="n_sites"):
        kms.mixed_field_ising(17)
    with pytest.raises(MemoryError, match="n_sites"):
        kms.OpenSystem.ising(17)
    with pytest.raises(ValueError, match="`n_sites`"):
        kms.mixed_field_ising(0)
    with pytest.raises(ValueError, match="`coupling_strength`"):
        kms.OpenSystem.ising(2, coupling_strength=-0.1)
    with pytest.raises(ValueError, match="`beta`"):
        kms.OhmicSpectrum(beta=0.0)
