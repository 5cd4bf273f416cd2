"""Tests of `thermojax.trajectories` on toy SDEs with exactly known moments.

Reference values are the exact moments of the Euler–Maruyama chain (closed forms in
`dt`), which converge to the continuous closed forms at weak order 1 (tested too).
Stochastic comparisons use a fixed key and a tolerance of a few standard errors.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from thermojax.options import DiffraxSDE, EulerMaruyama, Options
from thermojax.sweep import canonical_key
from thermojax.trajectories import (
    AbstractSDE,
    ensemble_mean,
    estimate_memory,
    simulate_trajectories,
    solve_trajectory,
)

METHODS = ["scan", "diffrax"]
# diffrax compiles slowly on CPU; its paths equal the scan's (tested by default), so
# where a test only re-checks a property of the shared machinery it runs with `-m slow`.
METHODS_SLOW_DIFFRAX = ["scan", pytest.param("diffrax", marks=pytest.mark.slow)]


# ---------------------------------------------------------------------------------
# Toy models
# ---------------------------------------------------------------------------------


class GBM(AbstractSDE):
    """dy = -k y dt + sigma y dW, d independent components."""

    k: jax.Array
    sigma: jax.Array
    d: int = eqx.field(static=True, default=1)

    def drift(self, t, y, args):
        return -self.k * y

    def diffusion_mv(self, t, y, args, dw):
        return self.sigma * y * dw

    def noise_shape(self):
        return jax.ShapeDtypeStruct((self.d,), jnp.float64)


class OU(AbstractSDE):
    """dy = -k y dt + sigma dW (additive noise), d independent components."""

    k: jax.Array
    sigma: jax.Array
    d: int = eqx.field(static=True, default=1)

    def drift(self, t, y, args):
        return -self.k * y

    def diffusion_mv(self, t, y, args, dw):
        return self.sigma * dw

    def noise_shape(self):
        return jax.ShapeDtypeStruct((self.d,), jnp.float64)


class ComplexOU(AbstractSDE):
    """dz = -(k + i omega) z dt + sigma dW_c, dW_c = (dW_re + i dW_im)/sqrt(2) (pytree noise)."""

    k: jax.Array
    omega: jax.Array
    sigma: jax.Array
    d: int = eqx.field(static=True, default=1)

    def drift(self, t, y, args):
        return -(self.k + 1j * self.omega) * y

    def diffusion_mv(self, t, y, args, dw):
        return self.sigma * (dw["re"] + 1j * dw["im"]) / jnp.sqrt(2.0)

    def noise_shape(self):
        s = jax.ShapeDtypeStruct((self.d,), jnp.float64)
        return {"re": s, "im": s}


class Dephasing(AbstractSDE):
    """Complex SDE with a dense matvec: dpsi = (-iH psi - g/2 psi) dt + sqrt(g) psi dW."""

    hamiltonian: jax.Array
    gamma: jax.Array

    def drift(self, t, y, args):
        return -1j * (self.hamiltonian @ y) - 0.5 * self.gamma * y

    def diffusion_mv(self, t, y, args, dw):
        return jnp.sqrt(self.gamma) * y * dw

    def noise_shape(self):
        return jax.ShapeDtypeStruct((self.hamiltonian.shape[0],), jnp.float64)


class Rotation(AbstractSDE):
    """dpsi = -i E psi dt (diagonal H, no noise): Euler grows |psi| by sqrt(1 + E^2 dt^2)."""

    energies: jax.Array

    def drift(self, t, y, args):
        return -1j * self.energies * y

    def diffusion_mv(self, t, y, args, dw):
        return jnp.zeros_like(y) * dw[0]

    def noise_shape(self):
        return jax.ShapeDtypeStruct((1,), jnp.float64)


class Quadratic(AbstractSDE):
    """dy = y^2 dt + 0 dW: blows up in finite time 1/y0 for y0 > 0."""

    def drift(self, t, y, args):
        return y**2

    def diffusion_mv(self, t, y, args, dw):
        return 0.0 * dw

    def noise_shape(self):
        return jax.ShapeDtypeStruct((1,), jnp.float64)


def _method(name, dt, brownian="matched"):
    """The method object of the old string names: "scan" is the lax.scan Euler–Maruyama,
    "diffrax" the same scheme through diffrax."""
    return EulerMaruyama(dt) if name == "scan" else DiffraxSDE(dt, brownian=brownian)


def _run(sde, y0, ts, key, *, n_traj, dt, method="scan", brownian="matched", observables=None,
         accumulate_outer=False, in_axes=None, args=None, **options):
    """`simulate_trajectories` with the method object and `Options` built from the keywords."""
    return simulate_trajectories(
        sde, y0, ts, key, ntraj=n_traj, method=_method(method, dt, brownian), observables=observables,
        accumulate_outer=accumulate_outer, in_axes=in_axes, args=args, options=Options(**options),
    )


def _dephasing(d=6):
    k1, k2 = jax.random.split(jax.random.key(42))
    a = jax.random.normal(k1, (d, d)) + 1j * jax.random.normal(k2, (d, d))
    h = (a + a.conj().T) / 2
    psi0 = jnp.ones(d, jnp.complex128) / jnp.sqrt(d)
    return Dephasing(h, jnp.array(0.3)), psi0


# ---------------------------------------------------------------------------------
# Statistical comparison helper (and its own test)
# ---------------------------------------------------------------------------------


def assert_within_stderr(estimate, expected, stderr, n_sigma=4.0):
    """Asserts |estimate - expected| <= n_sigma * stderr elementwise (stderr > 0)."""
    estimate, expected, stderr = (np.asarray(x) for x in (estimate, expected, stderr))
    assert estimate.shape == expected.shape == stderr.shape, (
        estimate.shape,
        expected.shape,
        stderr.shape,
    )
    assert np.all(np.isfinite(estimate)) and np.all(stderr > 0)
    z = np.abs(estimate - expected) / stderr
    assert np.all(z <= n_sigma), f"max z-score {z.max():.2f} > {n_sigma}: {estimate} vs {expected}"


def test_assert_within_stderr_fails_on_wrong_input():
    se = np.full(3, 0.1)
    assert_within_stderr(np.array([1.0, 2.0, 3.0]), np.array([1.05, 2.0, 2.9]), se)
    with pytest.raises(AssertionError):
        assert_within_stderr(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.5, 3.0]), se)
    with pytest.raises(AssertionError):
        assert_within_stderr(np.array([1.0, np.nan, 3.0]), np.array([1.0, 2.0, 3.0]), se)
    with pytest.raises(AssertionError):
        assert_within_stderr(np.ones(3), np.ones(3), np.zeros(3))
    with pytest.raises(AssertionError):
        assert_within_stderr(np.ones(3), np.ones(2), se)


# ---------------------------------------------------------------------------------
# Exact Euler–Maruyama moments
# ---------------------------------------------------------------------------------


def _gbm_em_moments(y0, k, sigma, dt, n):
    """Raw moments E[y_n^p], p = 1..4, of the Euler chain y_{j+1} = y_j (a + b xi)."""
    a, b2 = 1 - k * dt, sigma**2 * dt
    per_step = [a, a**2 + b2, a**3 + 3 * a * b2, a**4 + 6 * a**2 * b2 + 3 * b2**2]
    return [y0**p * m**n for p, m in zip(range(1, 5), per_step)]


@pytest.mark.parametrize("method", METHODS_SLOW_DIFFRAX)
def test_gbm_mean_and_variance_match_closed_form(method, getkey):
    k, sigma, dt, d, n_traj = 1.0, 0.5, 0.02, 4, 500
    ts = np.array([0.0, 0.5, 1.0])
    res = _run(
        GBM(jnp.array(k), jnp.array(sigma), d),
        jnp.ones(d),
        ts,
        getkey(),
        n_traj=n_traj,
        dt=dt,
        method=method,
        observables={"y": lambda t, y: y, "ybar": lambda t, y: jnp.mean(y)},
    )
    steps = np.rint(ts / dt)
    m1, m2, m3, m4 = _gbm_em_moments(1.0, k, sigma, dt, steps)
    var = m2 - m1**2
    mu4 = m4 - 4 * m3 * m1 + 6 * m2 * m1**2 - 3 * m1**4
    assert int(res.ensemble.n) == n_traj and int(res.ensemble.n_diverged) == 0
    # Mean of each component and of the component average, against the exact EM mean.
    assert_within_stderr(
        res.ensemble.mean["y"][1:], np.broadcast_to(m1[1:, None], (2, d)), res.ensemble.stderr("y")[1:]
    )
    assert_within_stderr(res.ensemble.mean["ybar"][1:], m1[1:], res.ensemble.stderr("ybar")[1:])
    # ... and against the continuous closed form E[y] = e^{-kt} (EM bias << stderr here).
    assert_within_stderr(res.ensemble.mean["ybar"][1:], np.exp(-k * ts[1:]), res.ensemble.stderr("ybar")[1:])
    # Unbiased variance against the exact EM variance, stderr from the exact 4th moment.
    se_var = np.sqrt((mu4 - var**2) / n_traj)
    assert_within_stderr(
        res.ensemble.var["y"][1:],
        np.broadcast_to(var[1:, None], (2, d)),
        np.broadcast_to(se_var[1:, None], (2, d)),
    )
    np.testing.assert_array_equal(res.ensemble.var["y"][0], 0.0)


@pytest.mark.parametrize("method", METHODS_SLOW_DIFFRAX)
def test_complex_ou_mean_and_variance(method, getkey):
    k, omega, sigma, dt, d, n_traj = 0.7, 3.0, 0.8, 0.02, 3, 600
    z0 = jnp.array([1.0 + 0.5j, -0.3j, 0.2], jnp.complex128)
    ts = np.array([0.0, 0.4, 1.0])
    res = _run(
        ComplexOU(jnp.array(k), jnp.array(omega), jnp.array(sigma), d),
        z0,
        ts,
        getkey(),
        n_traj=n_traj,
        dt=dt,
        method=method,
        observables={"z": lambda t, y: y},
        accumulate_outer=True,
    )
    n = np.rint(ts / dt)[:, None]
    lam = 1 - (k + 1j * omega) * dt
    mean = np.asarray(z0)[None, :] * lam**n
    var = sigma**2 * dt * (1 - np.abs(lam) ** (2 * n)) / (1 - np.abs(lam) ** 2)
    var = np.broadcast_to(var, mean.shape)
    assert res.ensemble.mean["z"].dtype == jnp.complex128 and res.ensemble.var["z"].dtype == jnp.float64
    se = res.ensemble.stderr("z")[1:]
    assert_within_stderr(res.ensemble.mean["z"][1:].real, mean[1:].real, se)
    assert_within_stderr(res.ensemble.mean["z"][1:].imag, mean[1:].imag, se)
    # Complex Gaussian: |z - mean|^2 ~ var * Exp(1), so se(var) = var / sqrt(n).
    assert_within_stderr(res.ensemble.var["z"][1:], var[1:], var[1:] / np.sqrt(n_traj))
    # Result.states = E[z z^H]: its diagonal is E|z|^2 = |E z|^2 + var (biased estimator).
    diag = np.diagonal(np.asarray(res.states), axis1=1, axis2=2).real
    np.testing.assert_allclose(
        diag,
        np.abs(np.asarray(res.ensemble.mean["z"])) ** 2 + np.asarray(res.ensemble.var["z"]) * (n_traj - 1) / n_traj,
        rtol=1e-10,
        atol=1e-14,
    )
    np.testing.assert_allclose(res.states, np.conj(np.swapaxes(res.states, 1, 2)))


@pytest.mark.slow
@pytest.mark.parametrize("brownian", ["virtual", "unsafe"])
def test_diffrax_other_brownian_paths_equal_in_law(brownian, getkey):
    k, sigma, dt, d, n_traj = 1.0, 0.5, 0.05, 4, 300
    ts = np.array([0.0, 1.0])
    res = _run(
        GBM(jnp.array(k), jnp.array(sigma), d),
        jnp.ones(d),
        ts,
        getkey(),
        n_traj=n_traj,
        dt=dt,
        method="diffrax",
        brownian=brownian,
        observables={"ybar": lambda t, y: jnp.mean(y), "y2": lambda t, y: jnp.mean(y**2)},
    )
    m1, m2, _, _ = _gbm_em_moments(1.0, k, sigma, dt, np.rint(ts / dt))
    assert_within_stderr(res.ensemble.mean["ybar"][1:], m1[1:], res.ensemble.stderr("ybar")[1:])
    assert_within_stderr(res.ensemble.mean["y2"][1:], m2[1:], res.ensemble.stderr("y2")[1:])


def test_weak_error_is_first_order(getkey):
    """OU with additive noise: E[y(T)^2] converges to sigma^2/(2k)(1 - e^{-2kT}) like dt."""
    k, sigma, t_end, d, n_traj = 1.0, 1.0, 2.0, 50, 2000
    exact = sigma**2 / (2 * k) * (1 - np.exp(-2 * k * t_end))
    key = getkey()
    errors = []
    for dt in (0.2, 0.1, 0.05):
        res = _run(
            OU(jnp.array(k), jnp.array(sigma), d),
            jnp.zeros(d),
            [0.0, t_end],
            key,
            n_traj=n_traj,
            dt=dt,
            observables={"y2": lambda t, y: jnp.mean(y**2)},
        )
        n = round(t_end / dt)
        a2 = (1 - k * dt) ** 2
        em = sigma**2 * dt * (1 - a2**n) / (1 - a2)  # exact for the Euler chain
        assert_within_stderr(res.ensemble.mean["y2"][-1], em, res.ensemble.stderr("y2")[-1])
        errors.append(float(res.ensemble.mean["y2"][-1]) - exact)
    errors = np.array(errors)
    assert np.all(errors > 0)
    ratios = errors[:-1] / errors[1:]
    np.testing.assert_allclose(ratios, 2.0, atol=0.5)  # halving dt halves the weak error


# ---------------------------------------------------------------------------------
# Determinism, chunking, batching
# ---------------------------------------------------------------------------------


def _assert_results_equal(a, b, exact=True):
    """Same arrays (bitwise if `exact`) and metadata, chunk size aside.

    Bitwise: trajectories, flags, counts and the observables' streamed (Welford, in
    trajectory order) means and variances. The mean outer product `Result.states` is
    accumulated per chunk as one matrix product, so it agrees across chunk sizes to
    rounding only (documented in `thermojax.trajectories.ensemble`): rtol 1e-12."""
    ea, eb = a.ensemble, b.ensemble
    assert (ea.ntraj, ea.n_steps, ea.dt, a.method) == (eb.ntraj, eb.n_steps, eb.dt, b.method)
    assert (a.states is None) == (b.states is None)
    if a.states is not None:
        np.testing.assert_allclose(np.asarray(a.states), np.asarray(b.states), rtol=1e-12, atol=1e-14)
    a, b = eqx.tree_at(lambda r: r.states, a, None), eqx.tree_at(lambda r: r.states, b, None)
    leaves_a, tree_a = jax.tree.flatten(eqx.filter(a, eqx.is_array))
    leaves_b, tree_b = jax.tree.flatten(eqx.filter(b, eqx.is_array))
    assert len(leaves_a) == len(leaves_b)
    for x, y in zip(leaves_a, leaves_b):
        if exact:
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        else:
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("method", METHODS_SLOW_DIFFRAX)
def test_same_key_same_result_whatever_the_chunk_size(method, getkey):
    n_traj, key = 20, getkey()
    sde = ComplexOU(jnp.array(0.5), jnp.array(2.0), jnp.array(0.7), 3)
    kw = dict(
        n_traj=n_traj,
        dt=0.05,
        method=method,
        store_trajectories=True,
        accumulate_outer=True,
        record_norm=True,
        observables={"z": lambda t, y: y, "p": lambda t, y: jnp.sum(jnp.abs(y) ** 2)},
    )
    ts = np.array([0.0, 0.5, 1.0])
    results = [
        _run(sde, jnp.ones(3, jnp.complex128), ts, key, chunk_size=c, **kw)
        for c in (1, 7, n_traj)
    ]
    assert [r.ensemble.chunk_size for r in results] == [1, 7, n_traj]
    for r in results[1:]:
        _assert_results_equal(r, results[0], exact=True)
    # A different key gives different numbers.
    other = _run(sde, jnp.ones(3, jnp.complex128), ts, getkey(), **kw)
    assert not np.allclose(other.ensemble.mean["z"][-1], results[0].ensemble.mean["z"][-1])


# Every accepted key type. `rbg`/`unsafe_rbg` keys draw one stream for a whole vmapped
# batch, so simulate_trajectories maps them to a threefry key first (sweep.canonical_key);
# raw uint32 keys are wrapped as threefry keys (PRNGKey(7) is key_data(key(7))).
KEY_TYPES = {
    "threefry": lambda: jax.random.key(7),
    "philox": lambda: jax.random.key(7, impl="philox4x32"),
    "PRNGKey": lambda: jax.random.PRNGKey(7),
    "raw_uint32": lambda: jnp.array([0, 7], jnp.uint32),
    "rbg": lambda: jax.random.key(7, impl="rbg"),
    "unsafe_rbg": lambda: jax.random.key(7, impl="unsafe_rbg"),
}


_KEY_OBS = {"z": lambda t, y: y, "p": lambda t, y: jnp.sum(jnp.abs(y) ** 2)}


@pytest.mark.parametrize("name", list(KEY_TYPES))
def test_every_key_type_gives_the_same_numbers_whatever_the_chunk_size(name):
    """Same trajectories (bitwise) and statistics (rtol 1e-12) for chunk sizes 1, 4 (padded
    last chunk) and all, with every accepted key type; ensemble_mean (chunked differently)
    and solve_trajectory use the same per-trajectory keys."""
    key = KEY_TYPES[name]()
    sde = ComplexOU(jnp.array(0.5), jnp.array(2.0), jnp.array(0.7), 2)
    z0, ts, n_traj, dt = jnp.ones(2, jnp.complex128), [0.0, 0.25, 0.5], 10, 0.05
    obs = _KEY_OBS  # module level: one compilation serves every key type with a threefry key
    runs = [
        _run(sde, z0, ts, key, n_traj=n_traj, dt=dt, chunk_size=c, store_trajectories=True,
             accumulate_outer=True, observables=obs)
        for c in (1, 4, n_traj)
    ]
    ref = runs[0].ensemble
    paths = np.asarray(ref.trajectories)
    assert paths.shape == (n_traj, 3, 2) and np.all(np.isfinite(paths))
    assert not np.allclose(paths[0], paths[1])  # distinct keys per trajectory
    for r in runs[1:]:
        np.testing.assert_array_equal(r.ensemble.trajectories, paths)
        for stat in ("mean", "var"):
            for k in obs:
                np.testing.assert_allclose(getattr(r.ensemble, stat)[k], getattr(ref, stat)[k], rtol=1e-12, atol=0)
        np.testing.assert_allclose(r.states, runs[0].states, rtol=1e-12, atol=1e-15)
    # the statistics are those of the stored paths
    np.testing.assert_allclose(ref.mean["z"], paths.mean(0), rtol=1e-12)
    # trajectory i is solve_trajectory with fold_in(canonical key, i)
    if name in ("threefry", "philox", "rbg"):  # (each call compiles: not for every key type)
        ys, _ = solve_trajectory(sde, z0, ts, jax.random.fold_in(canonical_key(key), 3), method=EulerMaruyama(dt))
        np.testing.assert_array_equal(ys, paths[3])
    # ensemble_mean (its own chunk loop, padded last chunk here) gives the same mean
    m = ensemble_mean(sde, z0, ts, key, obs["p"], ntraj=n_traj, method=EulerMaruyama(dt), options=Options(chunk_size=3))
    np.testing.assert_allclose(m, ref.mean["p"], rtol=1e-12)


def test_noise_drawn_in_blocks_equals_noise_drawn_per_step(monkeypatch, getkey):
    """The scan path draws the noise of several steps in one batched call; the numbers are
    those of one `fold_in(key, n)` draw per step, bitwise (uneven save intervals of 4 and 6
    steps: one block of 6 draws, masked in the short interval, against six single draws)."""
    from thermojax.trajectories import _integrate

    sde = ComplexOU(jnp.array(0.5), jnp.array(2.0), jnp.array(0.7), 2)
    kw = dict(n_traj=4, dt=0.05, store_trajectories=True)
    ts, key = [0.0, 0.2, 0.5], getkey()
    assert _integrate._noise_block(6, sde.noise_shape()) == 6
    blocked = _run(sde, jnp.ones(2, jnp.complex128), ts, key, **kw).ensemble.trajectories
    monkeypatch.setattr(_integrate, "_NOISE_BLOCK_ELEMENTS", 1)
    per_step = _run(sde, jnp.ones(2, jnp.complex128), ts, key, **kw).ensemble.trajectories
    np.testing.assert_array_equal(blocked, per_step)
    assert not np.allclose(blocked[0], blocked[1])


def test_key_types_that_share_key_data_share_trajectories():
    """PRNGKey(7), the raw uint32 pair and key(7) are one threefry key: one set of paths;
    an rbg key gives the paths of its canonical threefry key, and differs from key(7)."""
    sde = GBM(jnp.array(1.0), jnp.array(0.5), 2)
    kw = dict(n_traj=6, dt=0.1, store_trajectories=True)
    paths = {n: np.asarray(_run(sde, jnp.ones(2), [0.0, 0.5], f(), **kw).ensemble.trajectories)
             for n, f in KEY_TYPES.items()}
    np.testing.assert_array_equal(paths["PRNGKey"], paths["threefry"])
    np.testing.assert_array_equal(paths["raw_uint32"], paths["threefry"])
    canon = _run(sde, jnp.ones(2), [0.0, 0.5], canonical_key(KEY_TYPES["rbg"]()), **kw).ensemble.trajectories
    np.testing.assert_array_equal(paths["rbg"], canon)
    assert not np.allclose(paths["rbg"], paths["threefry"])
    assert not np.allclose(paths["philox"], paths["threefry"])


def test_chunking_with_matvec_model_agrees_to_rounding(getkey):
    # XLA may use different matmul kernels for different vmap widths: equal to rounding.
    sde, psi0 = _dephasing()
    key = getkey()
    kw = dict(
        n_traj=9,
        dt=0.01,
        accumulate_outer=True,
        observables={"p": lambda t, y: jnp.abs(y) ** 2},
    )
    a = _run(sde, psi0, [0.0, 0.2], key, chunk_size=2, **kw)
    b = _run(sde, psi0, [0.0, 0.2], key, chunk_size=9, **kw)
    _assert_results_equal(a, b, exact=False)


def test_scan_and_diffrax_give_the_same_paths(getkey):
    sde, psi0 = _dephasing()
    ts = np.array([0.1, 0.3, 0.6])  # t0 = 0 < ts[0]; uneven intervals
    kw = dict(n_traj=5, dt=0.01, t0=0.0, store_trajectories=True)
    key = getkey()
    a = _run(sde, psi0, ts, key, method="scan", **kw)
    b = _run(sde, psi0, ts, key, method="diffrax", **kw)
    assert a.ensemble.n_steps == b.ensemble.n_steps == 60
    assert (a.method, b.method) == ("EulerMaruyama", "DiffraxSDE")
    np.testing.assert_allclose(a.ensemble.trajectories, b.ensemble.trajectories, rtol=1e-10, atol=1e-12)
    ys, div = solve_trajectory(sde, psi0, ts, jax.random.fold_in(key, 3), method=EulerMaruyama(0.01), t0=0.0)
    np.testing.assert_array_equal(ys, a.ensemble.trajectories[3])
    assert not bool(div)


def test_uneven_save_times_equal_even_grid(getkey):
    """The noise of step n depends only on n: saving at a subset of times changes nothing."""
    sde = GBM(jnp.array(1.0), jnp.array(0.5), 2)
    key = getkey()
    kw = dict(n_traj=4, dt=0.1, store_trajectories=True)
    fine = _run(sde, jnp.ones(2), np.arange(11) * 0.1, key, **kw)
    coarse = _run(sde, jnp.ones(2), [0.2, 0.3, 0.7, 1.0], key, t0=0.0, **kw)
    np.testing.assert_array_equal(coarse.ensemble.trajectories, fine.ensemble.trajectories[:, [2, 3, 7, 10]])


def test_batched_model_and_initial_states(getkey):
    key, ts = getkey(), [0.0, 0.5, 1.0]
    ks, sigmas = jnp.array([0.5, 1.0, 2.0]), jnp.array([0.1, 0.4, 0.2])
    y0s = jnp.array([[1.0, 2.0], [0.5, -1.0], [3.0, 0.0]])
    kw = dict(n_traj=10, dt=0.05, observables={"y": lambda t, y: y})
    both = _run(GBM(ks, sigmas, 2), y0s, ts, key, in_axes=(0, 0), **kw)
    only_y0 = _run(GBM(ks[1], sigmas[1], 2), y0s, ts, key, in_axes=(None, 0), **kw)
    assert both.ensemble.mean["y"].shape == (3, 3, 2) and both.ensemble.n.shape == (3,)
    assert both.ensemble.diverged.shape == (10, 3)
    for b in range(3):
        single = _run(GBM(ks[b], sigmas[b], 2), y0s[b], ts, key, **kw)
        np.testing.assert_allclose(both.ensemble.mean["y"][b], single.ensemble.mean["y"], rtol=1e-13)
        np.testing.assert_allclose(both.ensemble.var["y"][b], single.ensemble.var["y"], rtol=1e-11)
        single = _run(GBM(ks[1], sigmas[1], 2), y0s[b], ts, key, **kw)
        np.testing.assert_allclose(only_y0.ensemble.mean["y"][b], single.ensemble.mean["y"], rtol=1e-13)
    # A pytree in_axes: batch only k.
    axes = GBM(0, None, 2)
    part = _run(GBM(ks, sigmas[0], 2), y0s[0], ts, key, in_axes=(axes, None), **kw)
    single = _run(GBM(ks[2], sigmas[0], 2), y0s[0], ts, key, **kw)
    np.testing.assert_allclose(part.ensemble.mean["y"][2], single.ensemble.mean["y"], rtol=1e-13)


# ---------------------------------------------------------------------------------
# Memory budget
# ---------------------------------------------------------------------------------


def test_memory_budget_sets_the_chunk(getkey):
    sde, psi0 = _dephasing()
    ts = [0.0, 0.1, 0.2]
    kw = dict(dt=0.01, accumulate_outer=True, observables={"p": lambda t, y: jnp.abs(y) ** 2})
    est = dict(method=EulerMaruyama(0.01), accumulate_outer=True, observables=kw["observables"])
    fixed, per = estimate_memory(sde, psi0, ts, **est)
    assert fixed > 0 and per > 0
    fixed_s, per_s = estimate_memory(sde, psi0, ts, options=Options(store_trajectories=True), **est)
    assert per_s > per
    key = getkey()
    res = _run(
        sde,
        psi0,
        ts,
        key,
        n_traj=12,
        memory_budget=fixed + 5 * per + per // 2,
        **kw,
    )
    assert res.ensemble.chunk_size == 5
    ref = _run(sde, psi0, ts, key, n_traj=12, chunk_size=5, **kw)
    _assert_results_equal(res, ref)
    # A huge budget gives one chunk of all trajectories (reuses the compiled kernel).
    res = _run(sde, psi0, ts, key, n_traj=5, memory_budget=10**12, **kw)
    assert res.ensemble.chunk_size == 5
    with pytest.raises(MemoryError, match=r"memory_budget=1000 bytes cannot hold one trajectory"):
        _run(sde, psi0, ts, key, n_traj=12, memory_budget=1000, **kw)
    # Gradients need more memory per trajectory than a plain run.
    obs = {"o": lambda t, y: y[0]}
    em = EulerMaruyama(0.01)
    fixed_g, per_g = estimate_memory(sde, psi0, ts, method=em, observables=obs, for_grad=True)
    assert per_g > estimate_memory(sde, psi0, ts, method=em, observables=obs)[1]
    with pytest.raises(MemoryError, match="memory_budget"):
        ensemble_mean(
            sde, psi0, ts, key, obs["o"], ntraj=4, method=em, options=Options(memory_budget=fixed_g + per_g - 1)
        )


# ---------------------------------------------------------------------------------
# Divergence
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_blow_up_is_flagged_and_excluded(method, getkey):
    y0s = jnp.array([[0.1], [10.0]])  # the second one blows up at t = 0.1
    res = _run(
        Quadratic(),
        y0s,
        [0.0, 1.0],
        getkey(),
        n_traj=6,
        dt=0.01,
        method=method,
        in_axes=(None, 0),
        observables={"y": lambda t, y: y[0]},
        accumulate_outer=True,
    )
    np.testing.assert_array_equal(res.ensemble.n, [6, 0])
    np.testing.assert_array_equal(res.ensemble.n_diverged, [0, 6])
    np.testing.assert_array_equal(res.ensemble.diverged, np.array([[False, True]] * 6))
    y_end = 0.1
    for _ in range(100):
        y_end = y_end + 0.01 * y_end**2
    np.testing.assert_allclose(res.ensemble.mean["y"][0, -1], y_end, rtol=1e-12)
    assert np.all(np.isnan(res.ensemble.mean["y"][1])) and np.all(np.isnan(res.states[1]))


@pytest.mark.parametrize("method", METHODS_SLOW_DIFFRAX)
def test_max_norm_flags_exactly_the_large_trajectories(method, getkey):
    dt, n_traj, key = 0.05, 40, getkey()
    ts = np.arange(21) * dt  # save every step, so checks per step and per save coincide
    kw = dict(
        n_traj=n_traj, dt=dt, method=method, observables={"y": lambda t, y: y[0]}
    )
    free = _run(
        OU(jnp.array(0.0), jnp.array(1.0)), jnp.zeros(1), ts, key, store_trajectories=True, **kw
    )
    capped = _run(
        OU(jnp.array(0.0), jnp.array(1.0)), jnp.zeros(1), ts, key, max_norm=1.2, **kw
    )
    paths = np.asarray(free.ensemble.trajectories[:, :, 0])
    expected = np.any(np.abs(paths) > 1.2, axis=1)
    assert 0 < expected.sum() < n_traj
    np.testing.assert_array_equal(capped.ensemble.diverged, expected)
    assert int(capped.ensemble.n) == n_traj - expected.sum() == n_traj - int(capped.ensemble.n_diverged)
    kept = paths[~expected]
    np.testing.assert_allclose(capped.ensemble.mean["y"], kept.mean(axis=0), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(capped.ensemble.var["y"], kept.var(axis=0, ddof=1), rtol=1e-10, atol=1e-14)


# ---------------------------------------------------------------------------------
# Norm diagnostics and renormalisation
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS_SLOW_DIFFRAX)
def test_norm_drift_and_normalize(method, getkey):
    energies, dt = jnp.array([2.0, -1.0, 0.5]), 0.05
    psi0 = jnp.array([1.0, 0.0, 0.0], jnp.complex128)
    ts = np.array([0.0, 0.5, 1.0])
    kw = dict(
        n_traj=3, dt=dt, method=method, record_norm=True, accumulate_outer=True
    )
    res = _run(Rotation(energies), psi0, ts, getkey(), **kw)
    exact = (1 + (2.0 * dt) ** 2) ** (np.rint(ts / dt) / 2)  # |psi_n| of the Euler chain
    np.testing.assert_allclose(res.ensemble.mean["norm"], exact, rtol=1e-12)
    np.testing.assert_allclose(res.ensemble.norm_drift, exact - 1, rtol=1e-10, atol=1e-14)
    res = _run(Rotation(energies), psi0, ts, getkey(), normalize=True, **kw)
    np.testing.assert_allclose(res.ensemble.mean["norm"], 1.0, rtol=1e-14)
    assert np.all(np.asarray(res.ensemble.norm_drift) < 1e-14)
    np.testing.assert_allclose(res.states[-1, 0, 0].real, 1.0, rtol=1e-14)
    # The phase is Euler's: arg(1 - 2i dt)^n.
    rho01 = res.states[-1]
    np.testing.assert_allclose(jnp.trace(rho01), 1.0, rtol=1e-14)


# ---------------------------------------------------------------------------------
# Gradients
# ---------------------------------------------------------------------------------


def _gbm_mean_at_end(k, key, method="scan", chunk_size=500, n_traj=2000, sigma=0.3):
    m = ensemble_mean(
        GBM(k, jnp.array(sigma)),
        jnp.ones(1),
        [0.0, 0.5, 1.0],
        key,
        lambda t, y: y[0],
        ntraj=n_traj,
        method=_method(method, 0.01),
        options=Options(chunk_size=chunk_size),
    )
    return m[-1]


def test_gradient_matches_closed_form_and_finite_differences(getkey):
    k, sigma, t, n_traj, key = 1.0, 0.3, 1.0, 2000, getkey()
    f = jax.jit(jax.value_and_grad(lambda k: _gbm_mean_at_end(k, key)))
    value, grad = f(jnp.array(k))
    # Closed form: d/dk E[y(t)] = -t y0 e^{-kt}; per-path derivative ~ -t y(t), whose
    # standard deviation is t e^{-kt} sqrt(e^{sigma^2 t} - 1).
    sd = t * np.exp(-k * t) * np.sqrt(np.expm1(sigma**2 * t))
    assert_within_stderr(
        value, np.exp(-k * t), np.exp(-k * t) * np.sqrt(np.expm1(sigma**2 * t)) / np.sqrt(n_traj)
    )
    assert_within_stderr(grad, -t * np.exp(-k * t), sd / np.sqrt(n_traj))
    # Euler–Maruyama: E[y_n] = (1 - k dt)^n, derivative -n dt (1 - k dt)^{n-1}.
    assert_within_stderr(grad, -t * (1 - 0.01 * k) ** 99, sd / np.sqrt(n_traj))
    # Finite differences at the same key (the mean is a polynomial in k).
    h = 1e-4
    fd = (f(jnp.array(k + h))[0] - f(jnp.array(k - h))[0]) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-7)
    # The mean equals simulate_trajectories' mean with the same key.
    res = _run(
        GBM(jnp.array(k), jnp.array(sigma)),
        jnp.ones(1),
        [0.0, 0.5, 1.0],
        key,
        n_traj=n_traj,
        dt=0.01,
        chunk_size=700,
        observables={"y": lambda t, y: y[0]},
    )
    np.testing.assert_allclose(value, res.ensemble.mean["y"][-1], rtol=1e-12)


@pytest.mark.slow
def test_gradient_diffrax_matches_scan(getkey):
    key = getkey()
    grads = [
        jax.grad(lambda k: _gbm_mean_at_end(k, key, m, chunk_size=50, n_traj=100))(jnp.array(0.8))
        for m in METHODS
    ]
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-9)


def test_gradient_stays_finite_when_a_trajectory_diverges(getkey):
    # max_norm excludes the paths that wander far; the scan freezes them, so grads are finite.
    key = getkey()

    def f(sigma):
        return ensemble_mean(
            OU(jnp.array(0.5), sigma),
            jnp.zeros(1),
            [0.0, 1.0],
            key,
            lambda t, y: y[0] ** 2,
            ntraj=64,
            method=EulerMaruyama(0.05),
            options=Options(max_norm=1.0),
        )[-1]

    g = jax.grad(f)(jnp.array(1.0))
    assert np.isfinite(g)


# ---------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(dt=0.0), ValueError, "dt"),
        (dict(dt=-0.1), ValueError, "dt"),
        (dict(n_traj=0), ValueError, "ntraj"),
        (dict(n_traj=2.5), ValueError, "ntraj"),
        (dict(ts=[0.0, 0.5, 0.3]), ValueError, "strictly increasing"),
        (dict(ts=[[0.0, 0.5]]), ValueError, "1-D"),
        (dict(ts=[0.0, 0.55]), ValueError, "step grid"),
        (dict(ts=[0.0, 1.0], options=dict(t0=0.5)), ValueError, "t0"),
        (dict(y0=jnp.ones(3)), ValueError, "shape"),
        (dict(y0=jnp.ones(2, jnp.float32)), TypeError, "dtype"),
        (dict(method="rk4"), TypeError, "method"),
        (dict(method=Options()), TypeError, "method"),
        (dict(brownian="fancy"), ValueError, "brownian"),
        (dict(options=dict(chunk_size=0)), ValueError, "chunk_size"),
        (dict(observables=[lambda t, y: y]), TypeError, "observables"),
        (dict(in_axes=(0, 1)), ValueError, "in_axes"),
        (dict(options=dict(max_norm=-1.0)), ValueError, "max_norm"),
        (dict(n_batches=3), ValueError, "n_batches"),
        (dict(n_batches=1), ValueError, "n_batches"),
    ],
)
def test_bad_input_raises(kwargs, error, match, getkey):
    def call(sde=GBM(jnp.array(1.0), jnp.array(0.5), 2), y0=jnp.ones(2), ts=(0.0, 0.5), n_traj=2, dt=0.1,
             method=None, brownian=None, options=None, **kw):
        if method is None:
            method = EulerMaruyama(dt) if brownian is None else DiffraxSDE(dt, brownian=brownian)
        return simulate_trajectories(sde, y0, ts, getkey(), ntraj=n_traj, method=method,
                                     options=Options(**(options or {})), **kw)

    with pytest.raises(error, match=match):
        call(**kwargs)


def test_bad_models_raise(getkey):
    class ComplexNoise(AbstractSDE):
        def drift(self, t, y, args):
            return y

        def diffusion_mv(self, t, y, args, dw):
            return y * dw

        def noise_shape(self):
            return jax.ShapeDtypeStruct((1,), jnp.complex128)

    with pytest.raises(TypeError, match="real floating"):
        _run(
            ComplexNoise(), jnp.ones(1), [0.0, 1.0], getkey(), n_traj=1, dt=0.1
        )
    sde, _ = _dephasing(4)
    with pytest.raises(ValueError, match="does not fit the sde"):
        _run(
            sde, jnp.ones(5, jnp.complex128), [0.0, 1.0], getkey(), n_traj=1, dt=0.1
        )
    with pytest.raises(ValueError, match="in_axes"):
        _run(
            GBM(jnp.ones(3), jnp.ones(2)),
            jnp.ones(1),
            [0.0, 1.0],
            getkey(),
            n_traj=1,
            dt=0.1,
            in_axes=(0, None),
        )
    res = _run(
        GBM(jnp.array(1.0), jnp.array(0.5)),
        jnp.ones(1),
        [0.0, 1.0],
        getkey(),
        n_traj=1,
        dt=0.1,
        observables={"y": lambda t, y: y},
    )
    with pytest.raises(KeyError, match="no observable"):
        res.ensemble.stderr("z")
    assert np.all(np.isnan(res.ensemble.var["y"]))  # n = 1: no variance


def test_progress_bar_runs(getkey, capsys):
    _run(
        GBM(jnp.array(1.0), jnp.array(0.5)),
        jnp.ones(1),
        [0.0, 0.2],
        getkey(),
        n_traj=4,
        chunk_size=2,
        dt=0.1,
        progress=True,
    )
    err = capsys.readouterr().err
    assert "trajectories" in err
