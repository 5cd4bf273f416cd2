r"""Energy diffusion in slowly driven chaotic systems: the physics.

A closed system with the linearly driven Hamiltonian

$$
H(t) = H_0 + \varepsilon t\,V \qquad (\hbar = 1)
$$

is started in eigenstates of $H(0)$ near an energy $E_0$. In the instantaneous
eigenbasis $H(\varepsilon t)|n\rangle = E_n|n\rangle$ the occupations
$p_n(t) = |\langle n|\psi(t)\rangle|^2$ spread over the spectrum. Coarse-grained over
energy cells they give the energy distribution $\eta(E, t)$, whose evolution is asked
to follow a Smoluchowski (Fokker–Planck) equation

$$
\partial_t\eta = -\varepsilon\,\partial_E(u\,\eta)
  + \partial_E\!\Big[D\,\Sigma\,\partial_E\frac{\eta}{\Sigma}\Big]
  \;\big[+\,s\,\partial_E(\eta/\Sigma)\big],
$$

with the level density $\Sigma(E)$, the level velocity $u(E) = \langle V_{nn}\rangle_E$
and a diffusion coefficient $D(E)$ that two theories fix differently: linear response
(Kubo, Wilkinson; Jarzynski, PRA 46, 7498 (1992)) and the golden rule give
$D = \varepsilon^2\pi\Sigma\langle|V_{nm}|^2\rangle = \varepsilon^2 G_2/2$, while
eq. 47 of the paper implemented here writes $\varepsilon^2 G_2$ and adds the
non-conservative "quantum" term $s = \tfrac{\varepsilon^2}{2}\Sigma\,\partial_E G_2$.
Nothing here assumes either: the exact evolution is computed and the coefficient is fitted
(`thermojax.experiments.driven`). The project's account, with the derivations of every
closed form below, is `docs/models/driven.md`.

Contents:

* the system: `DrivenSystem` (held in the eigenbasis of $H_0$; GOE or user-given
  $H_0$, $V$), initial eigenstates in an energy window (`window_levels`,
  `nearest_levels`, `DrivenSystem.eigenstates`);
* exact evolution, `evolve`, three ways: `thermojax.sesolve` on the time-dependent
  form $(H_0, [(V, f)])$ (method `thermojax.ODE`), the same equation as one batched
  matrix ODE through `thermojax.solve_ode` (method `BatchedODE`, the default: the
  fastest, `benchmarks/driven.py`), and an exponential-midpoint / fourth-order
  commutator-free Magnus propagator stepping with eigendecompositions (method `Magnus`);
* observables in the instantaneous eigenbasis: `measure` (occupations, $\eta(E,t)$,
  $\Sigma(E,t)$, $u(E,t)$, mean and variance) on an `EnergyGrid`;
* linear response from the spectrum and matrix elements: `linear_response`
  ($C_E(s)$, $G_2$, golden rule, sum rule, bandwidth);
* regimes: `regime_boundaries`, `classify_regime`;
* closed forms of the GOE model: `goe_level_density`, `goe_level_velocity`,
  `goe_offdiagonal_variance`, `goe_golden_rule`;
* the PDE: `Smoluchowski` (finite volumes, method of lines, `thermojax.solve_ode`),
  `goe_smoluchowski`, `distribution_moments`, `heat_kernel_cells`.

Conventions: states are kets `(*batch, d)` in the eigenbasis of $H_0$ (convert
user states with `DrivenSystem.ket_to_eigenbasis`); energies in the units of $H_0$,
times in $\hbar/E$; $\varepsilon$ has units energy/time (per unit of $V$).
"""

import math
from collections.abc import Callable
from typing import Literal

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, Shaped

from .._checks import check_hermitian, check_int, check_memory, check_positive, estimate_bytes, is_concrete
from ..operators import matmul
from ..options import ODE, AbstractMethod, Options
from ..result import Result, Status
from ..solvers import sesolve, solve_ode
from ..spectra import Eigensystem, eigh, goe_matrix

__all__ = [
    "DrivenSystem",
    "BatchedODE",
    "Magnus",
    "evolve",
    "window_levels",
    "nearest_levels",
    "EnergyGrid",
    "coarse_grain",
    "Measurement",
    "measure",
    "LinearResponse",
    "linear_response",
    "regime_boundaries",
    "classify_regime",
    "REGIMES",
    "goe_level_density",
    "goe_level_velocity",
    "goe_offdiagonal_variance",
    "goe_golden_rule",
    "Smoluchowski",
    "goe_smoluchowski",
    "distribution_moments",
    "heat_kernel_cells",
]


def _linear(t):
    """The drive's coefficient $f(t) = t$ (module level: one object, no recompiles)."""
    return t


# ----------------------------------------------------------------------------------
# the system
# ----------------------------------------------------------------------------------


class DrivenSystem(eqx.Module):
    r"""$H(t) = H_0 + \varepsilon t V$, held in the eigenbasis of $H_0$.

    In that basis $H_0 = \mathrm{diag}(E^{(0)})$ and the eigenstates of $H(0)$ are
    unit vectors, so the initial states cost nothing and $H(t)\psi$ is one diagonal
    product plus one dense product with $V$.

    Attributes:
        energies0: Eigenvalues $E^{(0)}_n$ of $H_0$, ascending, shape `(d,)` (energy).
        coupling: $V$ in the eigenbasis of $H_0$, shape `(d, d)`, real symmetric
            (GOE) or complex Hermitian.
        epsilon: Drive rate $\varepsilon \ge 0$, shape `()` (energy per time per unit
            of $V$).
        vectors0: Eigenvectors of $H_0$ (columns), shape `(d, d)`: the change of basis
            from the basis in which $H_0$ and $V$ were given.

    Construct with `from_matrices` (user-given $H_0$, $V$) or `goe`.

    Example:
        >>> import jax
        >>> sys = DrivenSystem.goe(jax.random.key(0), 8, epsilon=0.01)
        >>> sys.dim, sys.coupling.shape
        (8, (8, 8))
    """

    energies0: Float[Array, " d"]
    coupling: Shaped[Array, "d d"]
    epsilon: Float[Array, ""]
    vectors0: Shaped[Array, "d d"]

    @classmethod
    def from_matrices(cls, h0: ArrayLike, v: ArrayLike, epsilon: float) -> "DrivenSystem":
        r"""Build the system from $H_0$ and $V$ given in any basis.

        Args:
            h0: Hermitian $H_0$, shape `(d, d)` (real symmetric or complex).
            v: Hermitian $V$, shape `(d, d)`.
            epsilon: Drive rate $\varepsilon \ge 0$.

        Returns:
            The system in the eigenbasis of `h0`.

        Raises:
            ValueError: If `h0` or `v` is not square, not finite or not Hermitian (the
                message names the argument), if their shapes differ, or if
                `epsilon` is negative or not finite.

        Example:
            >>> import jax.numpy as jnp
            >>> sys = DrivenSystem.from_matrices(jnp.diag(jnp.array([1.0, -1.0])),
            ...                                  jnp.array([[0.0, 1.0], [1.0, 0.0]]), 0.1)
            >>> sys.energies0.tolist(), sys.coupling.tolist()
            ([-1.0, 1.0], [[0.0, 1.0], [1.0, 0.0]])
        """
        h0 = check_hermitian(jnp.asarray(h0), "h0")
        v = check_hermitian(jnp.asarray(v), "v")
        if h0.ndim != 2:
            raise ValueError(f"Argument `h0` must have shape (d, d), got {h0.shape}.")
        if v.shape != h0.shape:
            raise ValueError(f"Argument `v` must have the shape of `h0` {h0.shape}, got {v.shape}.")
        epsilon = _epsilon(epsilon)
        es = eigh(h0, name="h0", check=False)
        coupling = es.op_to_eigenbasis(v.astype(jnp.result_type(v.dtype, es.vectors.dtype)))
        coupling = 0.5 * (coupling + jnp.conj(coupling.T))
        return cls(es.energies, coupling, epsilon, es.vectors)

    @classmethod
    def goe(
        cls,
        key: PRNGKeyArray,
        dim: int,
        epsilon: float,
        *,
        coupling_variance: float | None = None,
    ) -> "DrivenSystem":
        r"""Draw $H_0$ and $V$ from the Gaussian orthogonal ensemble.

        $H_0$ has off-diagonal variance $1/d$, so its level density is Wigner's
        semicircle of radius 2 on $[-2, 2]$; $V$ has off-diagonal variance
        $\sigma^2$ = `coupling_variance` (diagonal $2\sigma^2$), i.e. its own
        semicircle has radius $2\sqrt{d\sigma^2}$.

        Args:
            key: PRNG key (split once: one key for $H_0$, one for $V$).
            dim: Dimension $d \ge 2$ (the reference model uses 300–2000).
            epsilon: Drive rate $\varepsilon \ge 0$.
            coupling_variance: $\sigma^2 = \overline{|V_{nm}|^2}$, $n \ne m$
                (default $1/d$: $V$ as wide as $H_0$).

        Raises:
            ValueError: On `dim < 2`, a non-positive `coupling_variance` or a negative
                `epsilon`.
            MemoryError: If the matrices cannot fit in memory.

        Example:
            >>> import jax
            >>> sys = DrivenSystem.goe(jax.random.key(1), 400, 0.01)
            >>> bool(abs(float(sys.energies0[-1]) - 2.0) < 0.2)  # semicircle edge
            True
        """
        dim = check_int(dim, "dim", low=2)
        if coupling_variance is None:
            coupling_variance = 1.0 / dim
        check_positive(coupling_variance, "coupling_variance")
        epsilon = _epsilon(epsilon)
        check_memory(estimate_bytes(((6, dim, dim), jnp.float64)), f"GOE pair of dimension {dim}", key="dim")
        k0, kv = jax.random.split(key)
        h0 = goe_matrix(k0, dim, radius=2.0)
        v = goe_matrix(kv, dim, radius=2.0 * math.sqrt(coupling_variance * dim))
        return cls.from_matrices(h0, v, epsilon)

    @property
    def dim(self) -> int:
        """Hilbert-space dimension `d`."""
        return self.energies0.shape[0]

    def parameter(self, t) -> Array:
        r"""The drive parameter $\lambda = \varepsilon t$."""
        return self.epsilon * jnp.asarray(t)

    def hamiltonian(self, t) -> Array:
        r"""$H(t) = \mathrm{diag}(E^{(0)}) + \varepsilon t V$ in the eigenbasis of $H_0$,
        shape `(d, d)`."""
        return jnp.diag(self.energies0).astype(self.coupling.dtype) + self.parameter(t) * self.coupling

    def eigensystem(self, t) -> Eigensystem:
        r"""Instantaneous eigenbasis of $H(t)$ (`thermojax.spectra.eigh`, $O(d^3)$)."""
        return eigh(self.hamiltonian(t), check=False)

    def sesolve_form(self):
        r"""The time-dependent form `(H0, [(eps V, f)])` with $f(t) = t$, for
        `thermojax.sesolve` (in the eigenbasis of $H_0$)."""
        return (jnp.diag(self.energies0).astype(self.coupling.dtype), [(self.epsilon * self.coupling, _linear)])

    def eigenstates(self, indices) -> Array:
        r"""Eigenstates $|n\rangle$ of $H(0)$ for the given level indices, as kets
        `(len(indices), d)` (unit vectors in this basis).

        Raises:
            ValueError: If an index is outside `[0, d)`.
        """
        idx = np.atleast_1d(np.asarray(indices))
        if idx.size == 0 or idx.min() < 0 or idx.max() >= self.dim:
            raise ValueError(f"Argument `indices` must be level indices in [0, {self.dim}), got {idx.tolist()}.")
        return jnp.eye(self.dim, dtype=complex)[idx]

    def ket_to_eigenbasis(self, psi: ArrayLike) -> Array:
        r"""Kets `(*batch, d)` given in the basis of the original $H_0$, $V$ → this basis."""
        return Eigensystem(self.energies0, self.vectors0).ket_to_eigenbasis(jnp.asarray(psi))


def _epsilon(epsilon) -> Array:
    x = jnp.asarray(epsilon)
    if jnp.iscomplexobj(x) or x.shape != ():
        raise ValueError(f"Argument `epsilon` must be a real scalar, got {epsilon!r}.")
    check_positive(x, "epsilon", allow_zero=True)
    return x.astype(jnp.result_type(float))


def window_levels(energies: ArrayLike, center: float, width: float) -> np.ndarray:
    r"""Indices of the levels with $|E_n - E_c| \le w/2$ (eager, for initial states).

    Args:
        energies: Spectrum of $H(0)$, shape `(d,)`.
        center: Window centre $E_c$.
        width: Window width $w > 0$.

    Returns:
        Integer indices, ascending.

    Raises:
        ValueError: If `width` is not positive, or if the window holds no level (the
            message gives the nearest level).

    Example:
        >>> window_levels([-1.0, -0.1, 0.05, 0.9], 0.0, 0.3).tolist()
        [1, 2]
    """
    e = np.asarray(energies, dtype=float)
    check_positive(width, "width")
    idx = np.flatnonzero(np.abs(e - center) <= width / 2)
    if idx.size == 0:
        near = e[np.argmin(np.abs(e - center))]
        raise ValueError(
            f"Arguments `center`, `width`: the energy window [{center - width / 2:.6g}, {center + width / 2:.6g}] "
            f"holds no level of H(0) (nearest level at {near:.6g}, spectrum [{e.min():.6g}, {e.max():.6g}])."
        )
    return idx


def nearest_levels(energies: ArrayLike, center: float, n: int) -> np.ndarray:
    r"""Indices of the `n` levels nearest to `center`, ascending (a microcanonical
    window of fixed size, so batches of different realisations share one shape).

    Raises:
        ValueError: If `n` is not in `[1, d]`, or `center` lies outside the spectrum.

    Example:
        >>> nearest_levels([-1.0, -0.1, 0.05, 0.9], 0.0, 2).tolist()
        [1, 2]
    """
    e = np.asarray(energies, dtype=float)
    n = check_int(n, "n", low=1, high=e.size)
    if not e.min() <= center <= e.max():
        raise ValueError(
            f"Argument `center` = {center!r} lies outside the spectrum [{e.min():.6g}, {e.max():.6g}]: "
            "the energy window holds no level."
        )
    return np.sort(np.argsort(np.abs(e - center), kind="stable")[:n])


# ----------------------------------------------------------------------------------
# exact evolution
# ----------------------------------------------------------------------------------


class BatchedODE(AbstractMethod):
    r"""The Schrödinger equation of the whole batch as one matrix ODE
    $\dot\Psi = -i(E^{(0)}\odot\Psi + \varepsilon t\,V\Psi)$, `Psi` of shape `(d, B)`,
    integrated by diffrax through `thermojax.solve_ode`.

    One dense product per right-hand side for all `B` states, done as real GEMMs when
    $V$ is real (the core's `matmul`); no per-state step control (`sesolve` vmaps
    one ODE per ket). The default of `evolve` (the fastest at 1e-8,
    `benchmarks/driven.py`).

    The default integrates the state as stacked real and imaginary parts
    (`ODE(complex_state=False)`): on a `(1000, 64)` batch, diffrax's Dopri8 stage
    arithmetic on the complex array cost 10 ms of a 45 ms step on the CPU, against
    3.5 ms on the real parts (`benchmarks/driven.py`, "complex state" row).

    Attributes:
        ode: The diffrax solver and controller (default `Dopri8`,
            `rtol = atol = 1e-9`: occupations to ~1e-9, real-split state).
    """

    ode: ODE = ODE(dfx.Dopri8(), dfx.PIDController(rtol=1e-9, atol=1e-9), complex_state=False)


class Magnus(AbstractMethod):
    r"""Magnus propagator stepping with eigendecompositions of $H$ at fixed points.

    `order = 2`: exponential midpoint, $U = e^{-ihH(t+h/2)}$.
    `order = 4`: the commutator-free fourth-order Magnus method of Blanes & Moan
    (Appl. Numer. Math. 56, 1519 (2006)): with the Gauss points $c_{1,2} = 1/2 \mp \sqrt3/6$,
    $U = e^{-ih(\alpha_2H_1 + \alpha_1H_2)}e^{-ih(\alpha_1H_1 + \alpha_2H_2)}$,
    $\alpha_{1,2} = 1/4 \pm \sqrt3/6$. For a Hamiltonian linear in $t$ this is exactly
    $U = e^{-i\frac h2 H(t + 5h/6)}\,e^{-i\frac h2 H(t + h/6)}$: two half steps whose
    evaluation points are $2h/3$ apart, so that their product reproduces the second
    Magnus term $-\tfrac{\varepsilon h^3}{12}[H_0, V]$.

    Each exponential is one `eigh` of a real symmetric matrix (for real $H_0$, $V$)
    and two real GEMMs per state batch. Its local error carries a factor $\varepsilon$
    (the commutators all contain $V$ once per $\varepsilon$), so long steps are
    accurate when the drive is slow; but an `eigh` costs as much as ~30 right-hand
    sides of `BatchedODE` on a CPU (`benchmarks/driven.py`).

    Attributes:
        dt: Largest step (each interval between save times is cut into equal steps); an
            array leaf, so changing it does not recompile.
        order: 2 or 4 (static).
    """

    dt: float
    order: int = eqx.field(static=True, default=4)

    def __check_init__(self):
        if not is_concrete(self.dt):
            return
        if jnp.shape(self.dt) != () or not (math.isfinite(float(self.dt)) and float(self.dt) > 0):
            raise ValueError(f"Argument `dt` must be a finite step > 0, got {self.dt!r}.")
        if self.order not in (2, 4):
            raise ValueError(f"Argument `order` must be 2 or 4, got {self.order!r}.")


def evolve(
    system: DrivenSystem,
    psi0: ArrayLike,
    tsave: ArrayLike,
    *,
    method: AbstractMethod | None = None,
    options: Options | None = None,
) -> Result:
    r"""Exact evolution of a batch of kets under $H(t) = H_0 + \varepsilon tV$.

    Args:
        system: The driven system.
        psi0: Kets `(B, d)` or `(d,)` in the eigenbasis of $H_0$ (e.g.
            `system.eigenstates(idx)`), normalised.
        tsave: Save times `(T,)`, strictly increasing; the evolution starts at
            `tsave[0]` in the state `psi0` with $H(t)$ at absolute time $t$.
        method: `BatchedODE()` (default), `thermojax.ODE(...)` (runs
            `thermojax.sesolve` on `system.sesolve_form()`), or `Magnus(dt, order)`.
        options: `thermojax.Options` (`progress`, `throw`); for `ODE` passed to
            `sesolve` as is.

    Returns:
        `thermojax.Result` with `states` `(B, T, d)` (or `(T, d)` for one ket),
        `stats` of the solver and a per-state `status`.

    Raises:
        ValueError: If `psi0` has the wrong shape or is not normalised, or `tsave`
            is not increasing.
        TypeError: For an unknown `method`.
        MemoryError: If the saved states would not fit in memory.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> sys = DrivenSystem.goe(jax.random.key(0), 40, epsilon=0.05)
        >>> res = evolve(sys, sys.eigenstates([18, 19, 20, 21]), jnp.linspace(0.0, 8.0, 5))
        >>> res.states.shape, bool(jnp.all(res.success))
        ((4, 5, 40), True)
    """
    from .._checks import check_state, check_times

    method = BatchedODE() if method is None else method
    options = Options() if options is None else options
    tsave = check_times(tsave, "tsave")
    psi0, _ = check_state(psi0, system.dim, "psi0", kind="ket")
    single = psi0.ndim == 1
    psi = psi0[None] if single else psi0.reshape((-1, system.dim))
    check_memory(
        estimate_bytes((psi.shape[:1] + tsave.shape + (system.dim,), jnp.complex128)),
        f"saving {psi.shape[0]} states at {tsave.shape[0]} times",
        key="psi0 / tsave",
    )
    if isinstance(method, BatchedODE):
        res = _evolve_batched(system, psi, tsave, method, options)
    elif isinstance(method, ODE):
        res = sesolve(system.sesolve_form(), psi, tsave, method=method, options=options)
    elif isinstance(method, Magnus):
        states = _magnus(system, psi, tsave, jnp.asarray(method.dt, float), method.order)
        ok = jnp.all(jnp.isfinite(states), axis=(-2, -1))
        res = Result(
            tsave=tsave,
            states=states,
            expect=None,
            stats={"num_exponentials": _magnus_count(tsave, method)},
            status=jax.tree.map(lambda a, b: jnp.where(ok, a, b), Status.successful, Status.nonfinite),
            method=f"Magnus{method.order}",
            kets=True,
        )
    else:
        raise TypeError(
            f"Argument `method` must be BatchedODE(), thermojax.ODE(...) or Magnus(dt), got {type(method).__name__}."
        )
    if single:
        first = (res.states[0], jax.tree.map(lambda x: x[0], res.status))
        res = eqx.tree_at(lambda r: (r.states, r.status), res, first)
    return res


def _batched_field(t, y, system):
    return -1j * (system.energies0[:, None] * y + system.parameter(t) * matmul(system.coupling, y))


def _evolve_batched(system, psi, tsave, method, options):
    res = solve_ode(_batched_field, psi.T, tsave, args=system, method=method.ode, options=options)
    states = jnp.transpose(res.states, (2, 0, 1))  # (T, d, B) -> (B, T, d)
    status = jax.tree.map(lambda x: jnp.broadcast_to(x, psi.shape[:1]), res.status)
    return eqx.tree_at(lambda r: (r.states, r.status), res, (states, status))


def _magnus_count(tsave, method) -> int:
    steps = np.maximum(1, np.ceil(np.diff(np.asarray(tsave)) / float(method.dt) - 1e-9)).astype(int)
    return int(steps.sum()) * (1 if method.order == 2 else 2)


def _exp_step(system, psi, tau, t_eval):
    r"""$\psi \to e^{-i\tau H(t_{\rm eval})}\psi$ for kets `(B, d)`, by one `eigh`."""
    es = system.eigensystem(t_eval)
    phase = jnp.exp(-1j * tau * es.energies)
    return es.ket_from_eigenbasis(es.ket_to_eigenbasis(psi) * phase[None, :])


@eqx.filter_jit
def _magnus(system, psi0, tsave, dt, order):
    def interval(psi, k):
        t0, t1 = tsave[k], tsave[k + 1]
        n = jnp.maximum(1, jnp.ceil((t1 - t0) / dt - 1e-9)).astype(int)
        h = (t1 - t0) / n

        def body(i, psi):
            t = t0 + i * h
            if order == 2:
                return _exp_step(system, psi, h, t + h / 2)
            psi = _exp_step(system, psi, h / 2, t + h / 6)
            return _exp_step(system, psi, h / 2, t + 5 * h / 6)

        psi = jax.lax.fori_loop(0, n, body, psi)
        return psi, psi

    _, states = jax.lax.scan(interval, psi0, jnp.arange(tsave.shape[0] - 1))
    states = jnp.concatenate([psi0[None], states], axis=0)  # (T, B, d)
    return jnp.swapaxes(states, 0, 1)


# ----------------------------------------------------------------------------------
# energy grid and coarse graining
# ----------------------------------------------------------------------------------


class EnergyGrid(eqx.Module):
    r"""Uniform cells on $[E_{\min}, E_{\max}]$ for the coarse-grained $\eta(E)$ and
    the finite-volume PDE.

    Attributes:
        lo: $E_{\min}$ (a scalar array: grids with other ends reuse compiled code).
        hi: $E_{\max}$.
        n: Number of cells $J \ge 3$ (static).

    Raises:
        ValueError: If `hi <= lo`, values are not finite or `n < 3`.

    Example:
        >>> g = EnergyGrid(-1.0, 1.0, 4)
        >>> float(g.width), g.centers.tolist()
        (0.5, [-0.75, -0.25, 0.25, 0.75])
    """

    lo: Array = eqx.field(converter=lambda x: jnp.asarray(x, float))
    hi: Array = eqx.field(converter=lambda x: jnp.asarray(x, float))
    n: int = eqx.field(static=True)

    def __check_init__(self):
        check_int(self.n, "n", low=3)
        if is_concrete(self.lo, self.hi):
            lo, hi = float(self.lo), float(self.hi)
            if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
                raise ValueError(f"EnergyGrid needs finite lo < hi, got lo = {lo!r}, hi = {hi!r}.")

    @property
    def width(self) -> float:
        """Cell width $h$."""
        return (self.hi - self.lo) / self.n

    @property
    def edges(self) -> Array:
        """Cell edges `(J + 1,)` (the PDE's interfaces)."""
        return jnp.linspace(self.lo, self.hi, self.n + 1)

    @property
    def centers(self) -> Array:
        """Cell centres `(J,)`."""
        return self.lo + (jnp.arange(self.n) + 0.5) * self.width

    def check(self, energies: ArrayLike, name: str = "grid") -> "EnergyGrid":
        r"""Check the grid against a spectrum (eagerly).

        Raises:
            ValueError: If a cell is wider than the whole spectrum ("coarser than the
                spectrum": one cell would hold every level and no diffusion could be
                seen), if the grid does not overlap the spectrum, or if a cell is
                narrower than the mean level spacing (cells without levels: the
                coarse-grained $\eta/\Sigma$ is undefined).
        """
        e = np.asarray(energies, dtype=float)
        lo, hi, width = float(self.lo), float(self.hi), float(self.width)
        span = float(e.max() - e.min())
        if width >= span:
            raise ValueError(
                f"Argument `{name}` is coarser than the spectrum: cell width {width:.4g} >= spectral width "
                f"{span:.4g}; use more cells."
            )
        if hi <= e.min() or lo >= e.max():
            raise ValueError(
                f"Argument `{name}` [{lo:.4g}, {hi:.4g}] does not overlap the spectrum [{e.min():.4g}, {e.max():.4g}]."
            )
        inside = e[(e >= lo) & (e <= hi)]
        spacing = (hi - lo) / max(inside.size, 1)
        if width < spacing:
            raise ValueError(
                f"Argument `{name}` is finer than the mean level spacing ({width:.4g} < {spacing:.4g}): "
                "cells without levels; use fewer cells."
            )
        return self


def coarse_grain(energies: Array, weights: Array, grid: EnergyGrid) -> tuple[Array, Array]:
    r"""Histogram density $\eta_j = \frac1h\sum_{E_n\in\text{cell } j} w_n$.

    Args:
        energies: $E_n$, shape `(..., d)`.
        weights: $w_n$ (occupations, or ones for the level density), shape `(..., d)`.
        grid: The cells.

    Returns:
        `(density (..., J), outside (...))`: the density per unit energy and the weight
        falling outside the grid.

    Example:
        >>> import jax.numpy as jnp
        >>> eta, out = coarse_grain(jnp.array([-0.9, 0.1, 0.2, 3.0]), jnp.ones(4) / 4,
        ...                         EnergyGrid(-1.0, 1.0, 4))
        >>> eta.tolist(), float(out)
        ([0.5, 0.0, 1.0, 0.0], 0.25)
    """
    energies = jnp.asarray(energies)
    weights = jnp.broadcast_to(jnp.asarray(weights), energies.shape)
    j = jnp.floor((energies - grid.lo) / grid.width).astype(int)
    inside = (energies >= grid.lo) & (energies < grid.hi)
    j = jnp.where(inside, jnp.clip(j, 0, grid.n - 1), grid.n)
    onehot = jax.nn.one_hot(j, grid.n + 1, dtype=weights.dtype)  # (..., d, J+1)
    counts = jnp.einsum("...d,...dj->...j", weights, onehot)
    return counts[..., : grid.n] / grid.width, counts[..., grid.n]


class Measurement(eqx.Module):
    r"""Observables of an exact evolution in the instantaneous eigenbasis of $H(\varepsilon t)$.

    Shapes: `B` states, `T` save times, `d` levels, `J` cells.

    Attributes:
        tsave: Save times `(T,)`.
        energies: Instantaneous levels $E_n(t)$, `(T, d)`.
        occupations: $p_n(t) = |\langle n(t)|\psi_b(t)\rangle|^2$, `(B, T, d)`.
        level_velocities: $V_{nn}(t) = \langle n(t)|V|n(t)\rangle = dE_n/d\lambda$, `(T, d)`.
        eta: Coarse-grained $\eta(E, t)$ of the mixture (weights `weights`),
            `(T, J)`, per unit energy.
        level_density: $\Sigma(E, t)$, levels per unit energy, `(T, J)`.
        drift: $u(E, t) = \langle V_{nn}\rangle_E$ per cell (NaN in empty cells), `(T, J)`.
        mean: $\langle E\rangle = \sum_n \bar p_n E_n$ of the mixture, `(T,)`.
        variance: $\sum_n \bar p_n (E_n - \langle E\rangle)^2$ (from the levels, no
            binning), `(T,)`.
        index_variance: Variance of the level index $n$ (levels in ascending order)
            under $\bar p_n$, `(T,)`: the spreading in the unfolded spectrum, blind to
            the drift $u$ and to the wiggles of single levels, which carry the
            occupations along ($\mathrm{Var}\,n \approx \Sigma^2\mathrm{Var}\,E$ for
            a narrow distribution in a smooth spectrum).
        norm: $\sum_n p_n$ per state, `(B, T)`.
        outside: Weight of the mixture outside the grid, `(T,)`.
    """

    tsave: Array
    energies: Array
    occupations: Array
    level_velocities: Array
    eta: Array
    level_density: Array
    drift: Array
    mean: Array
    variance: Array
    index_variance: Array
    norm: Array
    outside: Array


def measure(
    system: DrivenSystem,
    states: Array,
    tsave: Array,
    grid: EnergyGrid,
    *,
    weights: Array | None = None,
) -> Measurement:
    r"""Occupations and coarse-grained distributions of an exact evolution.

    At each save time $H(\varepsilon t)$ is diagonalised once ($O(d^3)$); the
    occupations, the level velocities $V_{nn}$ and the histograms follow.

    Args:
        system: The driven system.
        states: Kets `(B, T, d)` in the eigenbasis of $H_0$ (`evolve(...).states`).
        tsave: Their times `(T,)`.
        grid: Energy cells.
        weights: Mixture weights `(B,)` (default uniform: the microcanonical mixture of
            the batch).

    Returns:
        A `Measurement`.

    Raises:
        ValueError: If `states` is not `(B, T, d)` with `T = len(tsave)`, or
            `weights` has the wrong shape.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> sys = DrivenSystem.goe(jax.random.key(0), 40, epsilon=0.0)
        >>> ts = jnp.linspace(0.0, 8.0, 5)
        >>> res = evolve(sys, sys.eigenstates([18, 19, 20, 21]), ts)
        >>> m = measure(sys, res.states, ts, EnergyGrid(-2.4, 2.4, 12))
        >>> m.eta.shape, bool(jnp.allclose(m.norm, 1.0, atol=1e-6))
        ((5, 12), True)
    """
    states = jnp.asarray(states)
    tsave = jnp.asarray(tsave)
    if states.ndim != 3 or states.shape[1:] != (tsave.shape[0], system.dim):
        raise ValueError(
            f"Argument `states` must have shape (B, T, d) = (B, {tsave.shape[0]}, {system.dim}), got {states.shape}."
        )
    b = states.shape[0]
    if weights is None:
        weights = jnp.full((b,), 1.0 / b)
    weights = jnp.asarray(weights, float)
    if weights.shape != (b,):
        raise ValueError(f"Argument `weights` must have shape ({b},), got {weights.shape}.")
    return _measure(system, states, tsave, grid, weights)


@eqx.filter_jit
def _measure(system, states, tsave, grid, weights):
    def one(args):
        t, psi = args  # psi (B, d)
        es = system.eigensystem(t)
        p = jnp.abs(es.ket_to_eigenbasis(psi)) ** 2
        vw = matmul(system.coupling, es.vectors)
        vel = jnp.real(jnp.sum(jnp.conj(es.vectors) * vw, axis=0))
        pm = weights @ p
        eta, outside = coarse_grain(es.energies, pm, grid)
        sigma, _ = coarse_grain(es.energies, jnp.ones_like(es.energies), grid)
        vsum, _ = coarse_grain(es.energies, vel, grid)
        drift = jnp.where(sigma > 0, vsum / jnp.where(sigma > 0, sigma, 1.0), jnp.nan)
        mean = jnp.sum(pm * es.energies) / jnp.sum(pm)
        var = jnp.sum(pm * (es.energies - mean) ** 2) / jnp.sum(pm)
        n = jnp.arange(pm.shape[0], dtype=pm.dtype)
        n_mean = jnp.sum(pm * n) / jnp.sum(pm)
        n_var = jnp.sum(pm * (n - n_mean) ** 2) / jnp.sum(pm)
        return es.energies, p, vel, eta, sigma, drift, mean, var, n_var, jnp.sum(p, axis=-1), outside

    out = jax.lax.map(one, (tsave, jnp.swapaxes(states, 0, 1)))
    e, p, vel, eta, sigma, drift, mean, var, n_var, norm, outside = out
    return Measurement(
        tsave=tsave,
        energies=e,
        occupations=jnp.swapaxes(p, 0, 1),
        level_velocities=vel,
        eta=eta,
        level_density=sigma,
        drift=drift,
        mean=mean,
        variance=var,
        index_variance=n_var,
        norm=norm.T,
        outside=outside,
    )


# ----------------------------------------------------------------------------------
# linear response from the spectrum and matrix elements
# ----------------------------------------------------------------------------------


class LinearResponse(eqx.Module):
    r"""Microcanonical linear-response functions of $V$ at fixed $\lambda$.

    For a window $W_E = \{n : |E_n - E| \le \delta\}$ of $N_E$ levels,
    $\langle X\rangle_E = N_E^{-1}\sum_{n\in W_E} X_{nn}$ and

    $$
    C_E(s) = \frac1{N_E}\sum_{n\in W_E}\sum_m |V_{nm} - u\,\delta_{nm}|^2 e^{i(E_n-E_m)s},
    \qquad C_E(0) = \langle V^2\rangle_E - u^2 \;\text{(sum rule)}.
    $$

    The diagonal ($m = n$) part is a plateau $\langle(V_{nn}-u)^2\rangle_E$ that never
    decays (the level-velocity variance); $G_2 = \int C_E\,ds$ therefore diverges
    for any finite quantum system unless the plateau is left out. `g2` is the
    off-diagonal part in the continuum limit the paper's coarse graining takes,
    $\int C^{\rm off}_E\,ds = 2\pi\Sigma(E)\,\langle|V_{nm}|^2\rangle_{E_m\approx E_n}$,
    with the matrix elements averaged under a Gaussian of width `smoothing` in
    $E_n - E_m$ and the smooth level density $\Sigma(E)$ of the window (summing the
    Gaussian over the discrete levels instead would count the GOE correlation hole and
    bias $G_2$ low by $\Delta/(\sqrt{2\pi}\,\delta)$: 10% at $\delta = 4\Delta$).
    So `g2` is twice `golden` up to the two averaging kernels: eq. 47's coefficient
    $\varepsilon^2G_2$ is twice the golden rule.

    Attributes (all `(J,)` over the window centres, unless said):
        centers: Window centres $E$.
        level_density: $\Sigma(E) = N_E/(2\delta)$.
        drift: $u(E) = \langle V_{nn}\rangle_E$.
        v2: $\langle V^2\rangle_E$, from $(V^2)_{nn} = \|V|n\rangle\|^2$ computed
            separately from $C_E$ (the sum rule is a real check).
        correlation: $C_E(s)$, `(J, S)` complex, or `None`.
        s: The times $s$, `(S,)`, or `None`.
        c0: $C_E(0)$ from the spectral sum (diagonal included).
        level_velocity_variance: $\langle (V_{nn}-u)^2\rangle_E$ (the plateau).
        offdiag_near: $\langle|V_{nm}|^2\rangle$ over $n\in W_E$, $m\ne n$,
            $|E_n-E_m| \le$ `smoothing` (an average of matrix elements: unbiased
            by level repulsion).
        offdiag_all: $\frac1{N_E}\sum_{n\in W_E}\sum_{m\ne n}|V_{nm}|^2 = C_E^{\rm off}(0)$.
        golden: $\pi\Sigma(E)\langle|V_{nm}|^2\rangle_{\rm near}$: the golden-rule
            $D/\varepsilon^2$.
        g2: $\int C^{\rm off}_E(s)\,ds$ in the continuum limit (see above).
        correlation_time: $t_c = G_2/C^{\rm off}_E(0)$ (eq. 48 of the paper, off-diagonal part).
        bandwidth: $B = 2\pi/t_c$ (energy).
    """

    centers: Array
    level_density: Array
    drift: Array
    v2: Array
    correlation: Array | None
    s: Array | None
    c0: Array
    level_velocity_variance: Array
    offdiag_near: Array
    offdiag_all: Array
    golden: Array
    g2: Array
    correlation_time: Array
    bandwidth: Array

    def sum_rule_error(self) -> Array:
        r"""$|C_E(0) - (\langle V^2\rangle_E - u^2)|$ per window, `(J,)`."""
        return jnp.abs(self.c0 - (self.v2 - self.drift**2))


def linear_response(
    system: DrivenSystem,
    centers: ArrayLike,
    *,
    half_width: float,
    t: float = 0.0,
    smoothing: float | None = None,
    s: ArrayLike | None = None,
) -> LinearResponse:
    r"""Linear-response functions of $V$ in the eigenbasis of $H(\varepsilon t)$.

    Args:
        system: The driven system.
        centers: Energies $E$ of the microcanonical windows, `(J,)`.
        half_width: Window half-width $\delta > 0$.
        t: Time at which $H$ is frozen (default 0: $H_0$).
        smoothing: Width $\delta$ of the energy-conserving $\delta$-function in `golden`
            and `g2`, to be chosen $\Delta \ll \delta \ll$ bandwidth (default: 5% of
            the spectral width, 0.2 for the GOE model).
        s: Times at which to evaluate $C_E(s)$, `(S,)` (default: not computed).

    Returns:
        A `LinearResponse` (windows without levels give NaN).

    Raises:
        ValueError: If `half_width` or `smoothing` is not positive.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> sys = DrivenSystem.goe(jax.random.key(2), 400, 0.01)
        >>> lr = linear_response(sys, [0.0, 0.8], half_width=0.25, s=jnp.linspace(0.0, 6.0, 25))
        >>> bool(jnp.all(lr.sum_rule_error() < 1e-12)), lr.correlation.shape
        (True, (2, 25))
    """
    check_positive(half_width, "half_width")
    centers = jnp.atleast_1d(jnp.asarray(centers, float))
    es = system.eigensystem(t)
    if smoothing is None:
        smoothing = 0.05 * float(jnp.max(es.energies) - jnp.min(es.energies))
    check_positive(smoothing, "smoothing")
    s = None if s is None else jnp.asarray(s, float)
    return _linear_response(system, es, centers, half_width, smoothing, s)


@eqx.filter_jit
def _linear_response(system, es, centers, half_width, smoothing, s):
    e, w = es.energies, es.vectors
    vw = matmul(system.coupling, w)
    v_eig = matmul(jnp.conj(w.T), vw)
    v2_diag = jnp.sum(jnp.abs(vw) ** 2, axis=0)  # (V^2)_nn = ||V|n>||^2
    vdiag = jnp.real(jnp.diagonal(v_eig))
    a = jnp.abs(v_eig) ** 2
    a_off = a * (1.0 - jnp.eye(e.shape[0]))
    win = (jnp.abs(e[None, :] - centers[:, None]) <= half_width).astype(float)  # (J, d)
    count = jnp.sum(win, axis=1)
    wts = win / jnp.where(count > 0, count, jnp.nan)[:, None]
    u = wts @ vdiag
    v2 = wts @ v2_diag
    plateau = jnp.sum(wts * (vdiag[None, :] - u[:, None]) ** 2, axis=1)
    off_all = wts @ jnp.sum(a_off, axis=1)
    omega = e[:, None] - e[None, :]
    off = 1.0 - jnp.eye(e.shape[0])
    near = (jnp.abs(omega) <= smoothing) * off
    off_near = (wts @ jnp.sum(a_off * near, axis=1)) / (wts @ jnp.sum(near, axis=1))
    sigma = count / (2.0 * half_width)
    kernel = jnp.exp(-0.5 * (omega / smoothing) ** 2) * off
    g2 = 2 * math.pi * sigma * (wts @ jnp.sum(a_off * kernel, axis=1)) / (wts @ jnp.sum(kernel, axis=1))
    tc = g2 / off_all
    if s is None:
        corr = None
    else:
        ph = jnp.exp(1j * e[:, None] * s[None, :])  # (d, S)
        m = matmul(a_off, jnp.conj(ph))  # sum_m A_nm e^{-i E_m s}
        corr = wts @ (ph * m) + plateau[:, None]
    return LinearResponse(
        centers=centers,
        level_density=sigma,
        drift=u,
        v2=v2,
        correlation=corr,
        s=s,
        c0=off_all + plateau,
        level_velocity_variance=plateau,
        offdiag_near=off_near,
        offdiag_all=off_all,
        golden=math.pi * sigma * off_near,
        g2=g2,
        correlation_time=tc,
        bandwidth=2 * math.pi / tc,
    )


# ----------------------------------------------------------------------------------
# regimes
# ----------------------------------------------------------------------------------

REGIMES = ("adiabatic (Landau-Zener)", "linear response (golden rule)", "sudden (non-perturbative)")


def regime_boundaries(level_spacing: float, coupling_rms: float, correlation_time: float) -> tuple[float, float]:
    r"""Drive rates that separate the three regimes of energy spreading.

    * Adiabatic / Landau–Zener below $\varepsilon_{\rm LZ} = \Delta^2/\sigma$: a level
      moves by one spacing relative to its neighbours ($\delta\lambda_c = \Delta/\sigma$)
      only after the Heisenberg time $1/\Delta$, so transitions are Landau–Zener
      events at near crossings (Wilkinson, J. Phys. A 21, 4021 (1988)); for the GOE,
      whose small gaps have a finite density, they give $D \propto \varepsilon^{3/2}$,
      i.e. $D/\varepsilon^2$ *above* the golden rule.
    * Sudden / non-perturbative above $\varepsilon_{\rm prt} =
      \sqrt{\Delta/t_c^3}/\sigma$: the golden-rule width
      $\Gamma(\delta\lambda) = 2\pi\sigma^2\delta\lambda^2/\Delta$ reached within one
      correlation time, $\delta\lambda = \varepsilon t_c$, exceeds the bandwidth
      $2\pi/t_c$ (Cohen, Ann. Phys. 283, 175 (2000), cond-mat/9902168).
    * Linear response (golden rule) in between.

    Boundaries are order-of-magnitude crossovers, not sharp lines.

    Args:
        level_spacing: Mean level spacing $\Delta = 1/\Sigma(E)$.
        coupling_rms: $\sigma = \langle|V_{nm}|^2\rangle^{1/2}$.
        correlation_time: $t_c = G_2/C^{\rm off}(0)$ (bandwidth $2\pi/t_c$).

    Returns:
        `(eps_lz, eps_prt)`.

    Raises:
        ValueError: If an argument is not positive.

    Example:
        >>> [round(x, 6) for x in regime_boundaries(0.01, 0.05, 2.0)]
        [0.002, 0.707107]
    """
    for name, val in (("level_spacing", level_spacing), ("coupling_rms", coupling_rms),
                      ("correlation_time", correlation_time)):
        check_positive(float(val), name)
    eps_lz = level_spacing**2 / coupling_rms
    eps_prt = math.sqrt(level_spacing / correlation_time**3) / coupling_rms
    return float(eps_lz), float(eps_prt)


def classify_regime(epsilon: float, eps_lz: float, eps_prt: float) -> str:
    """Name of the regime of a drive rate (one of `REGIMES`).

    Example:
        >>> classify_regime(0.01, 0.002, 0.7)
        'linear response (golden rule)'
    """
    if epsilon < eps_lz:
        return REGIMES[0]
    if epsilon < eps_prt:
        return REGIMES[1]
    return REGIMES[2]


# ----------------------------------------------------------------------------------
# closed forms of the GOE model
# ----------------------------------------------------------------------------------


def _goe_x(lam, dim, coupling_variance):
    return jnp.asarray(lam) ** 2 * coupling_variance * dim


def goe_level_density(energy: ArrayLike, lam: ArrayLike, dim: int, coupling_variance: float) -> Array:
    r"""Mean level density of $H_0 + \lambda V$ (both GOE): a semicircle of radius
    $R(\lambda) = 2\sqrt{1 + \lambda^2 d\sigma^2}$,
    $\Sigma(E) = \frac{2d}{\pi R^2}\sqrt{R^2 - E^2}$ (zero outside; leading order in
    $1/d$).

    Example:
        >>> round(float(goe_level_density(0.0, 0.0, 100, 0.01)), 6)  # d / pi
        31.830989
    """
    r2 = 4.0 * (1.0 + _goe_x(lam, dim, coupling_variance))
    e2 = jnp.asarray(energy) ** 2
    return 2.0 * dim / (jnp.pi * r2) * jnp.sqrt(jnp.clip(r2 - e2, 0.0, None))


def goe_level_velocity(energy: ArrayLike, lam: ArrayLike, dim: int, coupling_variance: float) -> Array:
    r"""$u(E) = \langle V_{nn}\rangle_E = \alpha E$ with
    $\alpha = \lambda d\sigma^2/(1 + \lambda^2 d\sigma^2)$: the regression of $V$ on
    $H = H_0 + \lambda V$ (jointly Gaussian), which also makes the semicircle's
    stretching obey $\partial_\lambda\Sigma + \partial_E(\Sigma u) = 0$ (eq. 24 of the
    paper).

    Example:
        >>> round(float(goe_level_velocity(1.0, 0.5, 100, 0.01)), 6)
        0.4
    """
    x = _goe_x(lam, dim, coupling_variance)
    return jnp.asarray(lam) * coupling_variance * dim / (1.0 + x) * jnp.asarray(energy)


def goe_offdiagonal_variance(lam: ArrayLike, dim: int, coupling_variance: float) -> Array:
    r"""$\langle|V_{nm}|^2\rangle$ ($n\ne m$) in the eigenbasis of $H_0 + \lambda V$:
    $\sigma^2/(1 + \lambda^2 d\sigma^2)$ (the part of $V$ not parallel to $H$).

    Example:
        >>> round(float(goe_offdiagonal_variance(0.0, 100, 0.01)), 6)
        0.01
    """
    return coupling_variance / (1.0 + _goe_x(lam, dim, coupling_variance))


def goe_golden_rule(energy: ArrayLike, lam: ArrayLike, dim: int, coupling_variance: float) -> Array:
    r"""Golden-rule $D/\varepsilon^2 = \pi\Sigma(E)\langle|V_{nm}|^2\rangle = G_2/2$ of
    the GOE model (at $\lambda = 0$, $E = 0$: $d\sigma^2$).

    Example:
        >>> round(float(goe_golden_rule(0.0, 0.0, 100, 0.01)), 6)
        1.0
    """
    return jnp.pi * goe_level_density(energy, lam, dim, coupling_variance) * goe_offdiagonal_variance(
        lam, dim, coupling_variance
    )


# ----------------------------------------------------------------------------------
# the Smoluchowski PDE
# ----------------------------------------------------------------------------------


def _interp_knots(knots, table, t):
    """Linear interpolation of `table (K, n)` at time `t` (constant outside the knots)."""
    if table.shape[0] == 1:
        return table[0]
    i = jnp.clip(jnp.searchsorted(knots, t, side="right") - 1, 0, knots.shape[0] - 2)
    w = jnp.clip((t - knots[i]) / (knots[i + 1] - knots[i]), 0.0, 1.0)
    return (1.0 - w) * table[i] + w * table[i + 1]


class Smoluchowski(eqx.Module):
    r"""Finite-volume Smoluchowski equation for $\eta(E, t)$ on an `EnergyGrid`.

    $$
    \partial_t\eta = \partial_E F + s\,\partial_E q,\qquad
    F = -v\,\eta + G\,\partial_E q,\qquad q = \eta/\Sigma,
    $$

    with the velocity $v = \varepsilon u$, the conductance $G = D\Sigma$ and an
    optional non-conservative source coefficient $s$ (eq. 47's quantum term
    $s = \tfrac{\varepsilon^2}{2}\Sigma\,\partial_E G_2$; zero in divergence form).
    Unknowns are cell averages $\eta_j$; fluxes live on the $J+1$ interfaces and vanish
    on the two walls, so $\sum_j h\eta_j$ changes only through $s$ (exactly, up to
    rounding). With `order = 2` both fluxes are central (second order; the advective
    part then has an undamped odd-even mode, so keep $D > 0$). With `order = 4` the
    diffusive flux uses the four-cell gradient of cell averages
    $(q_{j-2} - 15q_{j-1} + 15q_j - q_{j+1})/12h$ (fourth order for constant $\Sigma$
    and $G$, second order in general) and the advective flux the third-order
    upwind-biased value, e.g. $(-\eta_{j-2} + 5\eta_{j-1} + 2\eta_j)/6$ for $v > 0$
    (slightly dissipative: no odd-even mode); both are central next to the walls.

    Coefficients are tables at `K` knot times, linearly interpolated in $t$
    (constant for `K = 1`); array fields, so a fit can scale them.

    Attributes:
        grid: The cells.
        knots: Knot times `(K,)`.
        level_density: $\Sigma$ at cell centres `(K, J)`, must be > 0.
        velocity: $v = \varepsilon u$ at interfaces `(K, J + 1)`.
        conductance: $G = D\Sigma$ at interfaces `(K, J + 1)`.
        source: $s$ at cell centres `(K, J)`.
        order: 2 or 4 (static).
    """

    grid: EnergyGrid
    knots: Array
    level_density: Array
    velocity: Array
    conductance: Array
    source: Array
    order: int = eqx.field(static=True, default=4)

    def __check_init__(self):
        j, k = self.grid.n, self.knots.shape[0]
        for name, arr, width in (("level_density", self.level_density, j), ("velocity", self.velocity, j + 1),
                                 ("conductance", self.conductance, j + 1), ("source", self.source, j)):
            if arr.shape != (k, width):
                raise ValueError(f"Argument `{name}` must have shape (K, {width}) = ({k}, {width}), got {arr.shape}.")
        if self.order not in (2, 4):
            raise ValueError(f"Argument `order` must be 2 or 4, got {self.order!r}.")
        if is_concrete(self.level_density) and not bool(jnp.all(self.level_density > 0)):
            raise ValueError(
                "Argument `level_density` must be > 0 in every cell (eta / Sigma): the grid reaches beyond the "
                "band edge."
            )

    @classmethod
    def from_functions(
        cls,
        grid: EnergyGrid,
        knots: ArrayLike,
        *,
        level_density: Callable,
        diffusion: Callable,
        velocity: Callable | None = None,
        source: Callable | None = None,
        order: int = 4,
    ) -> "Smoluchowski":
        r"""Tabulate coefficient functions `f(E, t)` (vectorised in `E`) at the knots.

        Args:
            grid: The cells.
            knots: Knot times `(K,)`.
            level_density: $\Sigma(E, t)$.
            diffusion: $D(E, t)$ (energy²/time); the conductance is $D\Sigma$ at the
                interfaces.
            velocity: $\varepsilon u(E, t)$ (default 0).
            source: $s(E, t)$ (default 0: divergence form).
            order: 2 or 4.

        Example:
            >>> import jax.numpy as jnp
            >>> g = EnergyGrid(-1.0, 1.0, 8)
            >>> pde = Smoluchowski.from_functions(g, [0.0], level_density=lambda e, t: 1.0 + 0 * e,
            ...                                   diffusion=lambda e, t: 0.1 + 0 * e)
            >>> pde.conductance.shape
            (1, 9)
        """
        knots = jnp.atleast_1d(jnp.asarray(knots, float))
        zero = lambda e, t: jnp.zeros_like(e)
        velocity = zero if velocity is None else velocity
        source = zero if source is None else source
        c, f = grid.centers, grid.edges

        def table(fn, x):  # one vmapped evaluation over the knots
            return jax.vmap(lambda t: jnp.broadcast_to(jnp.asarray(fn(x, t), float), x.shape))(knots)

        return cls(
            grid=grid,
            knots=knots,
            level_density=table(level_density, c),
            velocity=table(velocity, f),
            conductance=table(diffusion, f) * table(level_density, f),
            source=table(source, c),
            order=order,
        )

    def vector_field(self, t, eta, args=None):
        r"""$d\eta_j/dt$ for cell averages `eta` of shape `(J,)`."""
        h = self.grid.width
        sigma = _interp_knots(self.knots, self.level_density, t)
        vel = _interp_knots(self.knots, self.velocity, t)
        cond = _interp_knots(self.knots, self.conductance, t)
        src = _interp_knots(self.knots, self.source, t)
        q = eta / sigma
        dq = (q[..., 1:] - q[..., :-1]) / h  # interior interfaces 1..J-1
        face = 0.5 * (eta[..., 1:] + eta[..., :-1])
        if self.order == 4 and self.grid.n >= 4:
            dq4 = (q[..., :-3] - 15 * q[..., 1:-2] + 15 * q[..., 2:-1] - q[..., 3:]) / (12 * h)
            left = (-eta[..., :-3] + 5 * eta[..., 1:-2] + 2 * eta[..., 2:-1]) / 6
            right = (2 * eta[..., 1:-2] + 5 * eta[..., 2:-1] - eta[..., 3:]) / 6
            face4 = jnp.where(vel[2:-2] > 0, left, right)
            dq = jnp.concatenate([dq[..., :1], dq4, dq[..., -1:]], axis=-1)
            face = jnp.concatenate([face[..., :1], face4, face[..., -1:]], axis=-1)
        flux = -vel[1:-1] * face + cond[1:-1] * dq
        zeros = jnp.zeros(flux.shape[:-1] + (1,), flux.dtype)
        flux = jnp.concatenate([zeros, flux, zeros], axis=-1)
        out = (flux[..., 1:] - flux[..., :-1]) / h
        dq_c = jnp.gradient(q, h, axis=-1)
        return out + src * dq_c

    def solve(
        self,
        eta0: ArrayLike,
        tsave: ArrayLike,
        *,
        method: ODE | None = None,
        options: Options | None = None,
    ) -> Result:
        r"""Integrate from `eta0` (cell averages `(J,)`, or a batch `(..., J)`) with
        `thermojax.solve_ode` (default Tsit5, `rtol = 1e-10`, `atol = 1e-12`).

        Returns:
            `Result` with `states` `(T, ..., J)`.

        Example:
            >>> import jax.numpy as jnp
            >>> g = EnergyGrid(-1.0, 1.0, 400)
            >>> pde = Smoluchowski.from_functions(g, [0.0], level_density=lambda e, t: 1.0 + 0 * e,
            ...                                   diffusion=lambda e, t: 0.005 + 0 * e)
            >>> eta0 = heat_kernel_cells(g, 0.0, 0.01)
            >>> res = pde.solve(eta0, jnp.linspace(0.0, 1.0, 5))
            >>> round(float(jnp.sum(res.states[-1]) * g.width), 12)
            1.0
        """
        method = ODE(dfx.Tsit5(), dfx.PIDController(rtol=1e-10, atol=1e-12)) if method is None else method
        eta0 = jnp.asarray(eta0, float)
        if eta0.shape[-1] != self.grid.n:
            raise ValueError(f"Argument `eta0` must have {self.grid.n} cells on its last axis, got {eta0.shape}.")
        return solve_ode(_pde_field, eta0, tsave, args=self, method=method, options=options)


def _pde_field(t, eta, pde):
    return pde.vector_field(t, eta)


def goe_smoluchowski(
    grid: EnergyGrid,
    knots: ArrayLike,
    *,
    epsilon: float,
    dim: int,
    coupling_variance: float,
    form: Literal["golden", "eq47", "eq47_classical", "constant"] = "golden",
    scale: float = 1.0,
    order: int = 4,
) -> Smoluchowski:
    r"""The Smoluchowski PDE of the GOE model with closed-form coefficients.

    $\Sigma(E,\lambda)$ (`goe_level_density`), $v = \varepsilon u$
    (`goe_level_velocity`), $\lambda = \varepsilon t$, and

    * `"golden"`: $D = c\,\varepsilon^2\pi\Sigma\langle|V_{nm}|^2\rangle$
      (= $c\,\varepsilon^2G_2/2$), divergence form;
    * `"eq47_classical"`: $D = c\,\varepsilon^2G_2$ (eq. 47's coefficient), divergence form;
    * `"eq47"`: eq. 47 in full, $D = c\,\varepsilon^2G_2$ plus the source
      $s = \tfrac{\varepsilon^2}{2}\Sigma\,\partial_E G_2$ (not in divergence form);
    * `"constant"`: $D = c$ (energy²/time), divergence form;

    with $c$ = `scale` and $G_2 = 2\pi\Sigma\langle|V_{nm}|^2\rangle$.

    Raises:
        ValueError: For an unknown `form`, or a grid reaching beyond the band edge.

    Example:
        >>> g = EnergyGrid(-0.5, 0.5, 20)
        >>> pde = goe_smoluchowski(g, [0.0, 10.0], epsilon=0.01, dim=100, coupling_variance=0.01)
        >>> pde.level_density.shape
        (2, 20)
    """
    if form not in ("golden", "eq47", "eq47_classical", "constant"):
        raise ValueError(f'Argument `form` must be "golden", "eq47", "eq47_classical" or "constant", got {form!r}.')
    eps = float(epsilon)
    args = (dim, coupling_variance)

    def sigma(e, t):
        return goe_level_density(e, eps * t, *args)

    def golden(e, t):
        return eps**2 * goe_golden_rule(e, eps * t, *args)

    def diffusion(e, t):
        if form == "constant":
            return scale + 0.0 * e
        return scale * (1.0 if form == "golden" else 2.0) * golden(e, t)

    def source(e, t):
        if form != "eq47":
            return jnp.zeros_like(e)
        dg2 = jax.vmap(jax.grad(lambda x: 2.0 * goe_golden_rule(x, eps * t, *args)))(e)
        return 0.5 * eps**2 * sigma(e, t) * dg2

    def velocity(e, t):
        return eps * goe_level_velocity(e, eps * t, *args)

    return Smoluchowski.from_functions(
        grid, knots, level_density=sigma, diffusion=diffusion, velocity=velocity, source=source, order=order
    )


def distribution_moments(eta: ArrayLike, grid: EnergyGrid) -> tuple[Array, Array, Array]:
    r"""$\int\eta\,dE$, mean and variance of cell averages `(..., J)`.

    The variance has Sheppard's correction: $\sum_j h\eta_jE_j^2$ exceeds
    $\int E^2\eta\,dE$ by $h^2/12$ for a smooth density.

    Returns:
        `(norm, mean, variance)`, each `(...)`.

    Example:
        >>> import jax.numpy as jnp
        >>> g = EnergyGrid(-8.0, 8.0, 160)
        >>> [round(float(x), 6) for x in distribution_moments(heat_kernel_cells(g, 0.5, 1.0), g)]
        [1.0, 0.5, 1.0]
    """
    eta = jnp.asarray(eta)
    e, h = grid.centers.reshape((1,) * (eta.ndim - 1) + (-1,)), grid.width
    norm = h * jnp.sum(eta, axis=-1)
    mean = h * jnp.sum(eta * e, axis=-1) / norm
    var = h * jnp.sum(eta * (e - mean[..., None]) ** 2, axis=-1) / norm - h**2 / 12
    return norm, mean, var


def heat_kernel_cells(grid: EnergyGrid, mean: float, variance: ArrayLike) -> Array:
    r"""Exact cell averages of the Gaussian $\mathcal N(E; \mu, \sigma^2)$ (the heat
    kernel of $\partial_t\eta = D\partial_E^2\eta$ at $\sigma^2 = \sigma_0^2 + 2Dt$),
    `(..., J)` for `variance` of shape `(...)`.

    Example:
        >>> g = EnergyGrid(-1.0, 1.0, 4)
        >>> [round(float(x), 4) for x in heat_kernel_cells(g, 0.0, 0.25)]
        [0.2718, 0.6827, 0.6827, 0.2718]
    """
    sd = jnp.sqrt(jnp.asarray(variance, float))[..., None]
    edges = grid.edges.reshape((1,) * (sd.ndim - 1) + (-1,))
    z = (edges - mean) / (jnp.sqrt(2.0) * sd)
    cdf = 0.5 * (1.0 + jax.scipy.special.erf(z))
    return (cdf[..., 1:] - cdf[..., :-1]) / grid.width
