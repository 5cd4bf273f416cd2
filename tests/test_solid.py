"""Thawed-Gaussian FPU-beta lattice (thermojax.models.solid, part 1) and its two experiments.

Exact checks: the harmonic chain keeps every normal-mode energy; a single harmonic oscillator's
Gaussian is exact (closed form and grid); the two representations (A itself, and X, P) agree;
the local flow conserves H(q, p) and the averaged flow <H>; beta-FPU keeps parity sectors apart.
The anharmonic oscillator's error against exact grid evolution is measured and bounded.

Compile budget: every chain run goes through `_common.integrate` with N = 8, 201 save times and
array tolerances, so each (forces, representation) pair compiles once for all tests.
"""


import diffrax as dfx
import jax
import jax.numpy as jnp
import numpy as np
import pydantic
import pytest

import thermojax
from thermojax.experiments.solid import collision, localization
from thermojax.experiments.solid._common import ChainSection, crossing_time, integrate
from thermojax.models import solid
from thermojax.models.solid import FPUChain, GaussianState, QuarticOscillator, ThawedGaussian, mode_energies

N = 8
T = 201


def _method(tol):
    t = jnp.asarray(tol)  # array tolerances: one compiled solve per model structure
    return thermojax.ODE(dfx.Tsit5(), dfx.PIDController(rtol=t, atol=t), max_steps=10**7)


def _run(model, g0, t_max, tol):
    """Chain run through the experiments' path (shared compiled solve)."""
    return integrate(ChainSection(n_atoms=model.dim, rtol=tol), model, g0, np.linspace(0.0, t_max, T))


def _random_state(chain, mass, scale=0.3, seed=1):
    rng = np.random.default_rng(seed)
    q = scale * rng.standard_normal(chain.n_atoms)
    p = np.sqrt(mass) * scale * rng.standard_normal(chain.n_atoms)
    return GaussianState.normalized(jnp.asarray(q), jnp.asarray(p), chain.ground_state_width(mass))


# ----------------------------------------------------------------------------------
# normal modes, moments
# ----------------------------------------------------------------------------------


@pytest.mark.parametrize("boundary", ["fixed", "periodic"])
def test_normal_modes_diagonalise_the_harmonic_hessian(boundary):
    chain = FPUChain(7, 1.3, 0.0, boundary)
    mass = 2.0
    omega, vec = chain.normal_modes(mass)
    np.testing.assert_allclose(vec.T @ vec, np.eye(7), atol=1e-13)
    k = chain.hessian(jnp.zeros(7))
    np.testing.assert_allclose(vec.T @ k @ vec, np.diag(mass * omega**2), atol=1e-12)


def test_quartic_moments_against_quadrature():
    k, beta, mu, s2 = 1.3, 0.7, 0.4, 0.25
    r = np.linspace(-8, 8, 20001)
    w = np.exp(-((r - mu) ** 2) / (2 * s2)) / np.sqrt(2 * np.pi * s2)
    v = 0.5 * k * r**2 + 0.25 * beta * r**4
    dv = k * r + beta * r**3
    d2v = k + 3 * beta * r**2
    got = solid.quartic_moments(k, beta, jnp.asarray(mu), jnp.asarray(s2))
    for g, f in zip(got, (v, dv, d2v)):
        assert float(g) == pytest.approx(np.trapezoid(w * f, r), rel=1e-10)


def test_gaussian_energy_matches_observables_and_grid():
    osc = QuarticOscillator(1.0, 0.3)
    g = GaussianState.normalized(jnp.array([0.7]), jnp.array([0.4]), jnp.array([[0.2 + 0.6j]]))
    x, h = solid.fourier_grid_hamiltonian(osc, 1.5, 256, 10.0)
    psi = g.wavefunction(x[:, None]) * np.sqrt(float(x[1] - x[0]))
    exact = float(jnp.real(jnp.vdot(psi, h @ psi)))
    assert float(g.energy(osc, 1.5)) == pytest.approx(exact, rel=1e-10)
    model = ThawedGaussian(osc, 1.5)
    assert float(model.observe(model.pack(g)[None]).energy[0]) == pytest.approx(exact, rel=1e-10)


# ----------------------------------------------------------------------------------
# exact checks of the flow
# ----------------------------------------------------------------------------------


def test_harmonic_chain_keeps_every_mode_energy():
    chain, mass = FPUChain(N, 1.0, 0.0), 2.0
    g0 = _random_state(chain, mass)
    out = _run(ThawedGaussian(chain, mass), g0, 60.0, 1e-12)
    e = np.asarray(mode_energies(chain, mass, jnp.asarray(out["q"]), jnp.asarray(out["p"])))
    assert np.max(np.abs(e - e[0])) / e[0].sum() < 1e-10
    assert np.max(np.abs(out["norm"] - 1)) < 1e-10
    assert np.max(np.abs(out["energy"] / out["energy"][0] - 1)) < 1e-10  # exact Gaussian: <H> conserved too


def test_beta_fpu_keeps_parity_sectors_apart():
    """Started from mode 1, the even-k modes never receive energy; the odd ones do."""
    chain, mass = FPUChain(N, 1.0, 1.0), 2.0
    _, vec = chain.normal_modes(mass)
    g0 = GaussianState.normalized(1.5 * vec[:, 0], jnp.zeros(N), chain.ground_state_width(mass))
    out = _run(ThawedGaussian(chain, mass), g0, 60.0, 1e-12)
    e = np.asarray(mode_energies(chain, mass, jnp.asarray(out["q"]), jnp.asarray(out["p"])))
    frac = e / e.sum(1, keepdims=True)
    assert np.max(frac[:, 1::2]) < 1e-20  # k = 2, 4, ...
    assert np.max(frac[:, 2]) > 1e-4  # k = 3 is fed by the quartic term


def test_tangent_and_width_representations_agree():
    chain, mass = FPUChain(N, 1.0, 1.0), 2.0
    g0 = _random_state(chain, mass)
    ts = jnp.linspace(0.0, 20.0, T)
    w, t = ThawedGaussian(chain, mass), ThawedGaussian(chain, mass, representation="tangent")
    opts = thermojax.Options(throw=True)
    gw = w.unpack(w.evolve(g0, ts, method=_method(1e-12), options=opts).states)
    gt = t.unpack(t.evolve(g0, ts, method=_method(1e-12), options=opts).states)
    np.testing.assert_allclose(gt.q, gw.q, atol=1e-8)
    np.testing.assert_allclose(gt.A, gw.A, atol=1e-8)
    np.testing.assert_allclose(gt.spread(), gw.spread(), rtol=1e-8)
    # the tangent phase is exact up to the sign of psi (the branch of sqrt(det X))
    np.testing.assert_allclose(jnp.exp(2j * gt.gamma), jnp.exp(2j * gw.gamma), atol=1e-8)
    assert np.max(np.abs(gt.norm() - 1)) < 1e-9


def test_column_blocks_reproduce_the_whole_tangent_integration():
    """Under local forces the columns of X, P do not couple, so integrating them in blocks
    (each with its own copy of the centre) at a fixed step is the same computation: the
    reassembled states equal the whole integration to rounding, also when the block does not
    divide N. Blocks are refused where columns couple or steps would differ."""
    chain, mass = FPUChain(N, 1.0, 1.0), 1.5
    g0 = _random_state(chain, mass)
    model = ThawedGaussian(chain, mass, representation="tangent")
    ts = jnp.linspace(0.0, 3.0, 4)
    fixed = thermojax.ODE(dfx.Tsit5(), dfx.ConstantStepSize(), dt0=0.05, dense=False)
    whole = model.evolve(g0, ts, method=fixed)
    for b in (3, 8):
        blocks = model.evolve(g0, ts, method=fixed, column_block=b)
        assert blocks.states.shape == whole.states.shape
        assert int(blocks.stats["num_steps"]) == int(whole.stats["num_steps"]) == 60
        np.testing.assert_allclose(blocks.states, whole.states, rtol=0, atol=1e-12)
    g = model.unpack(whole.states[-1])
    assert abs(float(g.norm()) - 1) < 1e-7  # Tsit5 at dt = 0.05: 5e-9 here
    with pytest.raises(ValueError, match="fixed step"):
        model.evolve(g0, ts, method=_method(1e-8), column_block=4)
    with pytest.raises(ValueError, match="tangent"):
        ThawedGaussian(chain, mass, forces="averaged", representation="tangent").evolve(
            g0, ts, method=fixed, column_block=4)
    with pytest.raises(ValueError, match="column_block"):
        model.evolve(g0, ts, method=fixed, column_block=N + 1)


def test_energy_drift_at_the_default_step_size():
    """Stated tolerance (docs/models/solid.md): with Tsit5 at rtol = atol = 1e-8 (the default),
    over ~16 harmonic periods, the flow's invariant drifts by less than 1e-7 in the width
    representation and 3e-6 in the tangent one. Local forces conserve H(q, p); averaged ones <H>."""
    chain, mass = FPUChain(N, 1.0, 1.0), 1.0
    g0 = _random_state(chain, mass, seed=0)
    local_w = _run(ThawedGaussian(chain, mass), g0, 100.0, 1e-8)
    local_t = _run(ThawedGaussian(chain, mass, representation="tangent"), g0, 100.0, 1e-8)
    avg_t = _run(ThawedGaussian(chain, mass, forces="averaged", representation="tangent"), g0, 100.0, 1e-8)
    drift = lambda e: np.max(np.abs(e / e[0] - 1))  # noqa: E731
    assert drift(local_w["classical_energy"]) < 1e-7
    assert drift(local_t["classical_energy"]) < 3e-6
    assert drift(avg_t["energy"]) < 3e-6
    # the local flow does not conserve <H>: the Gaussian spreads in the quartic wells
    assert drift(local_t["energy"]) > 1.0


def test_single_harmonic_oscillator_is_exact():
    osc, mass = QuarticOscillator(1.3, 0.0), 0.7
    g0 = GaussianState.normalized(jnp.array([0.4]), jnp.array([-0.3]), jnp.array([[0.3 + 0.8j]]), phase=0.1)
    ts = jnp.linspace(0.0, 20.0, T)
    model = ThawedGaussian(osc, mass)
    g = model.unpack(model.evolve(g0, ts, method=_method(1e-12), options=thermojax.Options(throw=True)).states)
    ex = solid.harmonic_gaussian(g0, 1.3, mass, ts)
    for a, b in ((g.q, ex.q), (g.p, ex.p), (g.A, ex.A), (g.gamma, ex.gamma)):
        np.testing.assert_allclose(a, b, atol=1e-8)
    np.testing.assert_allclose(g.norm(), 1.0, atol=1e-10)


@pytest.fixture(scope="module")
def grid():
    """Fourier grid (256 points on [-10, 10)) and the exact-evolution helper."""

    def exact(beta, g0, ts):
        x, h = solid.fourier_grid_hamiltonian(QuarticOscillator(1.0, beta), 1.0, 256, 10.0)
        sq = np.sqrt(float(x[1] - x[0]))
        ref = thermojax.sesolve(h, g0.wavefunction(x[:, None]) * sq, ts, method=thermojax.Eigen()).states
        return x, sq, ref

    return exact


def _gaussian_on_grid(model, g0, ts, x, sq):
    g = model.unpack(model.evolve(g0, ts, method=_method(1e-11), options=thermojax.Options(throw=True)).states)
    return jax.vmap(lambda gg: gg.wavefunction(x[:, None]))(g) * sq


def test_harmonic_gaussian_equals_grid_wavefunction_including_phase(grid):
    g0 = GaussianState.normalized(jnp.array([1.5]), jnp.array([0.2]), jnp.array([[0.1 + 0.5j]]))
    ts = jnp.linspace(0.0, 20.0, T)
    x, sq, ref = grid(0.0, g0, ts)
    psi = _gaussian_on_grid(ThawedGaussian(QuarticOscillator(1.0, 0.0), 1.0), g0, ts, x, sq)
    assert float(jnp.max(jnp.linalg.norm(psi - ref, axis=-1))) < 1e-8


def test_anharmonic_oscillator_error_against_grid(grid, capsys):
    """Infidelity 1 - |<psi_exact|psi_Gauss>|^2 of the coherent state q0 = 1.5 in
    x^2/2 + beta x^4/4: the local (Heller) Gaussian's error grows like beta^2 t^2 early
    (measured: 0.007 at beta = 0.01, 0.027 at 0.02, t = 10); the variational one is
    5-50x more accurate. The bounds are ~2x the measured values."""
    g0 = GaussianState.normalized(jnp.array([1.5]), jnp.array([0.0]), jnp.array([[0.5j]]))
    ts = jnp.linspace(0.0, 10.0, T)
    table = {}
    for beta in (0.01, 0.02):
        x, sq, ref = grid(beta, g0, ts)
        for forces in ("local", "averaged"):
            psi = _gaussian_on_grid(ThawedGaussian(QuarticOscillator(1.0, beta), 1.0, forces=forces), g0, ts, x, sq)
            table[beta, forces] = np.asarray(1 - jnp.abs(jnp.sum(jnp.conj(ref) * psi, axis=-1)) ** 2)
    with capsys.disabled():
        print("\ninfidelity at t = 1, 2, 5, 10:")
        for (beta, forces), inf in table.items():
            print(f"  beta={beta} {forces:8s}", " ".join(f"{inf[i]:.2e}" for i in (20, 40, 100, 200)))
    loc1, loc2 = table[0.01, "local"], table[0.02, "local"]
    assert loc1[200] < 0.015 and loc2[200] < 0.06
    assert 3.0 < loc2[200] / loc1[200] < 5.0  # ~ beta^2
    assert loc1[20] < loc1[100] < loc1[200]  # grows with time
    for beta in (0.01, 0.02):
        assert table[beta, "averaged"][200] < 0.2 * table[beta, "local"][200]


# ----------------------------------------------------------------------------------
# experiments
# ----------------------------------------------------------------------------------


def _collision_cfg(**kw):
    base = dict(
        chain=ChainSection(n_atoms=N),
        velocity=2.0,
        n_keys=2,
        smooth_width=9,
        time=collision.CollisionTime(t_max=300.0, n_times=T),
    )
    return collision.CollisionConfig(**(base | kw))


def test_equipartition_time_is_reproducible_with_a_fixed_key():
    cfg = _collision_cfg()
    a = collision.collide(cfg, jax.random.key(0))
    b = collision.collide(cfg, jax.random.key(0))
    c = collision.collide(cfg, jax.random.key(1))
    np.testing.assert_array_equal(a["n_eff"], b["n_eff"])
    fa, fb, fc = (collision.fit_equipartition(r["tau"], r["n_eff"], cfg.smooth_width) for r in (a, b, c))
    assert fa == fb
    assert fa["converged"] and 0 < fa["value"] < cfg.time.t_max and 0.5 < fa["n_eq"] < 0.8
    assert fc["value"] != fa["value"]  # another key seeds the odd-k sector differently


@pytest.mark.slow
def test_collision_experiment_runs_and_plots():
    cfg = _collision_cfg()
    res = collision.run(cfg)
    s = res.summary
    assert s["fits"]["equipartition_time"]["value"] > 0
    assert len(s["equipartition_time_per_key"]) == 2
    assert s["classical_energy_drift"] < 1e-5
    assert s["energy_per_atom"] == pytest.approx(0.5 * 2.0**2, rel=1e-3)
    assert set(collision.plot_figures(res, cfg)) == {"solid_collision"}


def _localization_cfg():
    return localization.LocalizationConfig(
        chain=ChainSection(n_atoms=N),
        masses=[1e4, 1e5, 1e6],
        energy_per_atom=0.5,
        ground_n_values=[4, N],
        fit_from=10.0,
        time=localization.LocalizationTime(t_max=100.0, n_times=T),
    )


def test_localization_time_grows_with_mass_and_harmonic_spread_stays_bounded():
    cfg = _localization_cfg()
    dyn = localization._dynamics(cfg)
    mean_a, mean_h = dyn["spread_anharmonic"].mean(-1), dyn["spread_harmonic"].mean(-1)
    t_loc = np.array([crossing_time(dyn["tau"], s, cfg.spread_threshold) for s in mean_a])
    assert np.all(np.isfinite(t_loc)) and np.all(np.diff(t_loc) > 0)
    assert np.max(mean_h / mean_h[:, :1]) < 1.5  # harmonic: bounded breathing, no growth
    # local flow: in units of sqrt(M/k) the spread is exactly M^(-1/4) times one function of time
    scaled = mean_a * np.asarray(cfg.masses)[:, None] ** 0.25
    np.testing.assert_allclose(scaled, np.broadcast_to(scaled[:1], scaled.shape), rtol=1e-4)  # solver error, width x1e3
    assert np.max(np.abs(dyn["norm_anharmonic"] - 1)) < 1e-4


@pytest.mark.slow
def test_localization_experiment_runs_and_plots():
    cfg = _localization_cfg()
    res = localization.run(cfg)
    assert "localization_time_per_ln_mass" in res.summary["fits"]
    assert set(localization.plot_figures(res, cfg)) == {"solid_localization"}


def test_ground_state_spread_grows_like_sqrt_log_n_in_one_dimension():
    """sigma^2 of the middle atom ~ (ln N)/(2 pi sqrt(kM)); the bond spread does not grow."""
    rows = [localization.ground_state_spread(FPUChain(n, 1.0, 0.0), 100.0) for n in (64, 256, 1024)]
    atom2 = np.array([r[0] for r in rows]) ** 2
    slope = (atom2[2] - atom2[0]) / np.log(1024 / 64)
    assert slope == pytest.approx(1 / (2 * np.pi * np.sqrt(100.0)), rel=0.02)
    bonds = np.array([r[1] for r in rows])
    assert np.ptp(bonds) < 1e-3 * bonds[0]


def test_crossing_time():
    t = np.array([0.0, 1.0, 2.0])
    assert crossing_time(t, np.array([1.0, 2.0, 4.0]), 2.0) == pytest.approx(1.0)
    assert crossing_time(t, np.array([1.0, 2.0, 4.0]), 2.0 * np.sqrt(2)) == pytest.approx(1.5)
    assert np.isnan(crossing_time(t, np.array([1.0, 1.0, 1.0]), 5.0))


def test_fit_residual_gradients_match_finite_differences():
    t = jnp.linspace(0.0, 50.0, 30)
    y = jnp.linspace(0.1, 0.6, 30)
    p = {"tau": jnp.asarray(12.0), "logit_n_eq": jnp.asarray(0.4), "stretch": jnp.asarray(1.3)}
    f = lambda q: collision._equipartition_residuals(q, t, y, jnp.asarray(0.1))  # noqa: E731
    jac = jax.jacfwd(f)(p)
    for name in p:
        h = 1e-6 * max(1.0, abs(float(p[name])))
        up, dn = dict(p), dict(p)
        up[name], dn[name] = p[name] + h, p[name] - h
        np.testing.assert_allclose(jac[name], (f(up) - f(dn)) / (2 * h), rtol=1e-6, atol=1e-9)


# ----------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------


def test_bad_input_names_the_argument():
    chain = FPUChain(4)
    for mass in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="`mass`"):
            ThawedGaussian(chain, mass)
    with pytest.raises(ValueError, match="`mass`"):
        chain.normal_modes(-2.0)
    with pytest.raises(ValueError, match="`n_atoms`"):
        FPUChain(1)
    with pytest.raises(ValueError, match="`k`"):
        FPUChain(4, k=0.0)
    with pytest.raises(ValueError, match="`beta`"):
        FPUChain(4, beta=-1.0)
    with pytest.raises(ValueError, match="`boundary`"):
        FPUChain(4, boundary="open")
    with pytest.raises(ValueError, match="`forces`"):
        ThawedGaussian(chain, 1.0, forces="mean")
    with pytest.raises(ValueError, match="`representation`"):
        ThawedGaussian(chain, 1.0, representation="matrix")
    with pytest.raises(TypeError, match="`potential`"):
        ThawedGaussian("chain", 1.0)
    with pytest.raises(ValueError, match="`A`"):
        GaussianState.normalized(jnp.zeros(1), jnp.zeros(1), jnp.array([[1.0 - 0.5j]]))
    with pytest.raises(ValueError, match="`state`"):
        ThawedGaussian(chain, 1.0).pack(GaussianState.normalized(jnp.zeros(1), jnp.zeros(1), jnp.array([[0.5j]])))
    with pytest.raises(pydantic.ValidationError, match="masses"):
        localization.LocalizationConfig(masses=[1.0, 0.0])
    with pytest.raises(pydantic.ValidationError, match="n_atoms"):
        collision.CollisionConfig(chain={"n_atoms": 1})
