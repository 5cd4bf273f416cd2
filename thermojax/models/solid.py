r"""Classical-like solids: a thawed-Gaussian FPU-β lattice, and Planck's law from
microcanonical counting and from dynamics inside a shell of fixed total quanta.

Source: C. Chafin, "Thermalization in quantum systems: an emergent approach",
arXiv:1412.1347 (qualitative: no equations to reproduce). thermojax makes its three
claims computable; the project's own account, with what holds and where the paper is
loose, is `docs/models/solid.md`. Units: $\hbar = k_B = 1$; lengths in the unit in
which the bond potential is written (the lattice spacing $a = 1$), energies in that
unit, times in $\hbar$/energy.

**Part 1, the localized lattice.** A chain of $N$ atoms of mass $M$ with the FPU-β
bond potential $v(r) = \tfrac12 k r^2 + \tfrac\beta4 r^4$ (`FPUChain`, fixed or
periodic ends), or one particle in $v(x)$ (`QuarticOscillator`). The many-body
state is a thawed Gaussian (E. J. Heller, J. Chem. Phys. 62, 1544 (1975)),

$$
\psi(x, t) = \exp\Big\{ i\big[(x-q)^{\mathsf T}A\,(x-q) + p^{\mathsf T}(x-q) + \gamma\big]\Big\},
$$

centre $q, p \in \mathbb R^N$, complex symmetric width matrix $A$ with
$\mathrm{Im}A$ positive definite, complex phase $\gamma$ ($\mathrm{Im}\gamma$
carries the normalisation). It moves in an effective quadratic potential
$V_0 + V_1^{\mathsf T}(x-q) + \tfrac12(x-q)^{\mathsf T}V_2(x-q)$:

$$
\dot q = p/M,\quad \dot p = -V_1,\quad \dot A = -\frac{2A^2}{M} - \frac12 V_2,\quad
\dot\gamma = \frac{p^2}{2M} - V_0 + \frac{i}{M}\mathrm{Tr}A.
$$

`forces="local"` is Heller's local harmonic approximation (the issue's equations):
$V_0 = V(q)$, $V_1 = \nabla V(q)$, $V_2 = \nabla^2V(q)$; the centre then follows
Hamilton's equations exactly. `forces="averaged"` is the variational Gaussian
(Dirac–Frenkel): $V_1 = \langle\nabla V\rangle$, $V_2 = \langle\nabla^2V\rangle$,
$V_0 = \langle V\rangle - \tfrac12\mathrm{Tr}(V_2\Sigma)$, which conserves
$\langle H\rangle$ exactly. Position covariance $\Sigma = (4\,\mathrm{Im}A)^{-1}$.

Two exact representations of the same flow (`ThawedGaussian.representation`):

* `"width"`: $(q, p, A, \gamma)$ integrated as written; $O(N^3)$ per step ($A^2$).
* `"tangent"`: $A = \tfrac12 P X^{-1}$ with the linear equations
  $\dot X = P/M$, $\dot P = -V_2 X$ (the Riccati equation linearised by the
  stability matrix); $X(0) = L$, $P(0) = 2A(0)L$ with $\Sigma(0) = LL^{\mathsf T}$.
  Then $\Sigma = XX^\dagger$, the momentum covariance is $PP^\dagger$, and $V_2$ is
  tridiagonal for the chain, so a step costs $O(N^2)$. The global phase is known only up
  to the sign of $\psi$ (the branch of $\sqrt{\det X}$ is not followed); everything
  else (centre, widths, energy, norm) is exact.

**Part 2, Planck's law.** $N$ matter oscillators (Einstein solid, unit frequency) plus
one radiation mode of the same frequency share $Q$ quanta. Counting gives
$P(n) = g_N(Q-n)/g_{N+1}(Q)$, $g_N(q) = \binom{q+N-1}{q}$ (`photon_distribution`,
in log space via `gammaln`), against Planck's $\bar n = 1/(e^{\beta}-1)$ at
$\beta = \partial\ln g/\partial E$ (`counting_beta`). Dynamics inside the shell of
dimension $\binom{Q+N}{N}$ (`ShellBasis`) with two quanta-conserving couplings:
random quadratic hopping $\sum g_{ij}a_i^\dagger a_j$ and the random two-body ensemble
$\sum V_{PP'}A_P^\dagger A_{P'}$ over normalised pair operators (`ShellHamiltonian`,
a matrix-free operator that lowers to the shell with one or two quanta fewer, applies
the small coupling matrix there as one dense product, and raises back).
"""

import math
from typing import Literal

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Complex, Float, Int, PRNGKeyArray

from .._checks import check_int, check_memory, check_positive, estimate_bytes, is_concrete
from ..operators import AbstractOperator, matmul

__all__ = [
    # part 1
    "AbstractBondPotential",
    "FPUChain",
    "QuarticOscillator",
    "GaussianState",
    "ThawedGaussian",
    "GaussianObservables",
    "quartic_moments",
    "mode_energies",
    "spectral_entropy",
    "equipartition_curve",
    "harmonic_gaussian",
    "fourier_grid_hamiltonian",
    # part 2
    "log_density_of_states",
    "photon_distribution",
    "counting_mean_photon_number",
    "counting_beta",
    "planck_distribution",
    "total_variation",
    "ShellBasis",
    "shell_dimension",
    "ShellHamiltonian",
    "random_hopping",
    "random_two_body",
    "cold_product_state",
    "RadiationDistribution",
    "energy_spread",
]


# ==================================================================================
# Part 1: potentials
# ==================================================================================


def _mass(mass, name: str = "mass") -> Float[Array, ""]:
    x = jnp.asarray(mass)
    if x.shape != ():
        raise ValueError(f"Argument `{name}` must be a scalar, got shape {x.shape}.")
    x = x.astype(jnp.result_type(float))
    return jnp.asarray(check_positive(x, name))


def _constant(x, name: str, *, allow_zero: bool = True) -> Float[Array, ""]:
    x = jnp.asarray(x)
    if x.shape != ():
        raise ValueError(f"Argument `{name}` must be a scalar, got shape {x.shape}.")
    x = x.astype(jnp.result_type(float))
    return jnp.asarray(check_positive(x, name, allow_zero=allow_zero))


def quartic_moments(
    k: Float[ArrayLike, ""], beta: Float[ArrayLike, ""], mu: Float[Array, "*b"], s2: Float[Array, "*b"]
) -> tuple[Array, Array, Array]:
    r"""Gaussian averages of the bond potential $v(r) = \tfrac12 kr^2 + \tfrac\beta4 r^4$
    for $r \sim \mathcal N(\mu, s^2)$.

    $$
    \langle v\rangle = \tfrac k2(\mu^2+s^2) + \tfrac\beta4(\mu^4 + 6\mu^2s^2 + 3s^4),\quad
    \langle v'\rangle = k\mu + \beta(\mu^3 + 3\mu s^2),\quad
    \langle v''\rangle = k + 3\beta(\mu^2+s^2).
    $$

    With `s2 = 0` these are $v$, $v'$, $v''$ at $\mu$.

    Returns:
        `(<v>, <v'>, <v''>)`, each of the broadcast shape of `mu` and `s2`.

    Example:
        >>> import jax.numpy as jnp
        >>> jnp.stack(quartic_moments(1.0, 4.0, jnp.array(0.0), jnp.array(1.0))).tolist()
        [3.5, 0.0, 13.0]
    """
    m2 = mu**2
    v = 0.5 * k * (m2 + s2) + 0.25 * beta * (m2**2 + 6 * m2 * s2 + 3 * s2**2)
    dv = k * mu + beta * (mu * m2 + 3 * mu * s2)
    d2v = k + 3 * beta * (m2 + s2)
    return v, dv, d2v


class AbstractBondPotential(eqx.Module):
    r"""$V(x) = \sum_b v(r_b)$ with $v(r) = \tfrac12 kr^2 + \tfrac\beta4 r^4$ and bond
    coordinates $r = Dx$ linear in the positions.

    Subclasses give the bond map `bonds` ($D$ on the leading axis) and its transpose
    `bonds_transpose` ($D^{\mathsf T}$); gradient, Hessian products and Gaussian
    averages follow from them at $O(N)$ per column.

    Attributes:
        k: Harmonic bond constant $k > 0$ (energy/length²).
        beta: Quartic constant $\beta \ge 0$ (energy/length⁴).
    """

    k: eqx.AbstractVar[Float[Array, ""]]
    beta: eqx.AbstractVar[Float[Array, ""]]

    @property
    def dim(self) -> int:
        """Number of coordinates $N$."""
        raise NotImplementedError

    def bonds(self, x: Array) -> Array:
        """$Dx$ on the leading axis: `(N, ...) -> (B, ...)`."""
        raise NotImplementedError

    def bonds_transpose(self, y: Array) -> Array:
        r"""$D^{\mathsf T}y$ on the leading axis: `(B, ...) -> (N, ...)`."""
        raise NotImplementedError

    def potential(self, q: Float[Array, " N"]) -> Float[Array, ""]:
        """$V(q)$."""
        return jnp.sum(quartic_moments(self.k, self.beta, self.bonds(q), 0.0)[0])

    def gradient(self, q: Float[Array, " N"]) -> Float[Array, " N"]:
        r"""$\nabla V(q) = D^{\mathsf T}v'(Dq)$."""
        return self.bonds_transpose(quartic_moments(self.k, self.beta, self.bonds(q), 0.0)[1])

    def stiffness(self, q: Float[Array, " N"], s2: Array | float = 0.0) -> Float[Array, " B"]:
        r"""Bond curvatures $\langle v''(r_b)\rangle$ (at the centre when `s2 = 0`)."""
        return quartic_moments(self.k, self.beta, self.bonds(q), s2)[2]

    def hessian_mv(self, kappa: Float[Array, " B"], x: Array) -> Array:
        r"""$D^{\mathsf T}\mathrm{diag}(\kappa)Dx$ for `x` of shape `(N, m)`."""
        return self.bonds_transpose(kappa[:, None] * self.bonds(x))

    def hessian(self, q: Float[Array, " N"], s2: Array | float = 0.0) -> Float[Array, "N N"]:
        r"""Dense $\nabla^2V$ (or $\langle\nabla^2V\rangle$ with bond variances `s2`)."""
        return self.hessian_mv(self.stiffness(q, s2), jnp.eye(self.dim, dtype=jnp.result_type(float)))

    def bond_variances(self, sigma: Float[Array, "N N"]) -> Float[Array, " B"]:
        r"""$s_b^2 = (D\Sigma D^{\mathsf T})_{bb}$ from a position covariance."""
        ds = self.bonds(sigma)  # (B, N) = D Sigma
        return jnp.diagonal(self.bonds(ds.T))  # D (D Sigma)^T = D Sigma D^T

    def effective(self, q: Float[Array, " N"], s2: Array | None):
        r"""$(V_0, V_1, \kappa)$ of the effective quadratic potential: local
        (`s2 = None`) or Gaussian-averaged with bond variances `s2`; $V_2 =
        D^{\mathsf T}\mathrm{diag}(\kappa)D$."""
        mu = self.bonds(q)
        if s2 is None:
            v, dv, d2v = quartic_moments(self.k, self.beta, mu, 0.0)
            return jnp.sum(v), self.bonds_transpose(dv), d2v
        v, dv, d2v = quartic_moments(self.k, self.beta, mu, s2)
        return jnp.sum(v) - 0.5 * jnp.sum(d2v * s2), self.bonds_transpose(dv), d2v


class QuarticOscillator(AbstractBondPotential):
    r"""One particle in $V(x) = \tfrac12 kx^2 + \tfrac\beta4 x^4$ ($N = 1$, $D = 1$).

    The single-oscillator checks: at $\beta = 0$ the thawed Gaussian is exact
    (`harmonic_gaussian`); at $\beta > 0$ it is compared with exact grid evolution.

    Args:
        k: $k > 0$.
        beta: $\beta \ge 0$.

    Raises:
        ValueError: If `k <= 0`, `beta < 0` or either is not a finite scalar.

    Example:
        >>> import jax.numpy as jnp
        >>> float(QuarticOscillator(1.0, 1.0).potential(jnp.array([2.0])))
        6.0
    """

    k: Float[Array, ""]
    beta: Float[Array, ""]

    def __init__(self, k: Float[ArrayLike, ""] = 1.0, beta: Float[ArrayLike, ""] = 0.0):
        self.k = _constant(k, "k", allow_zero=False)
        self.beta = _constant(beta, "beta")

    @property
    def dim(self) -> int:
        return 1

    def bonds(self, x):
        return x

    def bonds_transpose(self, y):
        return y


class FPUChain(AbstractBondPotential):
    r"""FPU-β chain of $N$ atoms: $V = \sum_b \tfrac12 kr_b^2 + \tfrac\beta4 r_b^4$ with $r_b$
    the stretch of bond $b$ (displacements from the equilibrium lattice, spacing $a=1$).

    * `boundary="fixed"`: walls at both ends, $N+1$ bonds $r = (q_1, q_2-q_1, \dots,
      q_N - q_{N-1}, -q_N)$; normal modes $\phi_k(i) = \sqrt{2/(N+1)}\sin(\pi ki/(N+1))$,
      $\omega_k = 2\sqrt{k/M}\sin(\pi k/(2N+2))$, $k = 1..N$.
    * `boundary="periodic"`: $N$ bonds $r_i = q_{i+1}-q_i$ (cyclic); Fourier modes,
      $\omega_k = 2\sqrt{k/M}|\sin(\pi k/N)|$, one zero mode (the centre of mass).

    Args:
        n_atoms: $N \ge 2$.
        k: Harmonic constant $k > 0$.
        beta: Quartic constant $\beta \ge 0$.
        boundary: `"fixed"` or `"periodic"`.

    Raises:
        ValueError: If `n_atoms < 2`, `k <= 0`, `beta < 0` or `boundary` is unknown.

    Example:
        >>> import jax.numpy as jnp
        >>> chain = FPUChain(3, 1.0, 0.0)
        >>> chain.gradient(jnp.array([1.0, 0.0, 0.0])).tolist()[:2]  # walls: 2q1 - q2
        [2.0, -1.0]
    """

    k: Float[Array, ""]
    beta: Float[Array, ""]
    n_atoms: int = eqx.field(static=True)
    boundary: Literal["fixed", "periodic"] = eqx.field(static=True)

    def __init__(
        self,
        n_atoms: int,
        k: Float[ArrayLike, ""] = 1.0,
        beta: Float[ArrayLike, ""] = 1.0,
        boundary: Literal["fixed", "periodic"] = "fixed",
    ):
        self.n_atoms = check_int(n_atoms, "n_atoms", low=2)
        if boundary not in ("fixed", "periodic"):
            raise ValueError(f'Argument `boundary` must be "fixed" or "periodic", got {boundary!r}.')
        self.boundary = boundary
        self.k = _constant(k, "k", allow_zero=False)
        self.beta = _constant(beta, "beta")

    @property
    def dim(self) -> int:
        return self.n_atoms

    @property
    def n_bonds(self) -> int:
        """$N+1$ (fixed) or $N$ (periodic)."""
        return self.n_atoms + 1 if self.boundary == "fixed" else self.n_atoms

    def bonds(self, x):
        if self.boundary == "fixed":
            pad = [(1, 1)] + [(0, 0)] * (x.ndim - 1)
            return jnp.diff(jnp.pad(x, pad), axis=0)
        return jnp.roll(x, -1, axis=0) - x

    def bonds_transpose(self, y):
        if self.boundary == "fixed":
            return -jnp.diff(y, axis=0)
        return jnp.roll(y, 1, axis=0) - y

    def normal_modes(self, mass: Float[ArrayLike, ""]) -> tuple[Float[Array, " N"], Float[Array, "N N"]]:
        r"""Harmonic normal modes: frequencies $\omega_k$ `(N,)` and orthonormal mode
        vectors as *columns* `(N, N)` (fixed: sines, $k = 1..N$; periodic: the real
        Fourier basis $1, \cos, \sin, \dots$ ordered by $k$).

        Raises:
            ValueError: If `mass <= 0`.
        """
        mass = _mass(mass)
        n = self.n_atoms
        i = np.arange(n)
        if self.boundary == "fixed":
            kk = np.arange(1, n + 1)
            vec = np.sqrt(2.0 / (n + 1)) * np.sin(np.pi * np.outer(i + 1, kk) / (n + 1))
            s = np.sin(np.pi * kk / (2 * (n + 1)))
        else:
            cols, ks = [np.full(n, 1 / np.sqrt(n))], [0]
            for kk in range(1, (n - 1) // 2 + 1):
                cols += [
                    np.sqrt(2.0 / n) * np.cos(2 * np.pi * kk * i / n),
                    np.sqrt(2.0 / n) * np.sin(2 * np.pi * kk * i / n),
                ]
                ks += [kk, kk]
            if n % 2 == 0:
                cols.append((-1.0) ** i / np.sqrt(n))
                ks.append(n // 2)
            vec = np.stack(cols, axis=1)
            s = np.abs(np.sin(np.pi * np.asarray(ks) / n))
        return 2 * jnp.sqrt(self.k / mass) * jnp.asarray(s), jnp.asarray(vec)

    def mode_parity(self) -> Int[Array, " N"]:
        r"""Fixed ends: $1$ for odd $k$ (modes even about the chain's centre), $0$ for even
        $k$; the β-FPU dynamics leaves each parity sector invariant. Periodic: all 0."""
        if self.boundary == "fixed":
            return jnp.asarray(np.arange(1, self.n_atoms + 1) % 2)
        return jnp.zeros(self.n_atoms, int)

    def ground_state_width(self, mass: Float[ArrayLike, ""]) -> Complex[Array, "N N"]:
        r"""Width matrix $A_0 = \tfrac i2 M\Omega$, $\Omega = \sqrt{K/M}$, of the harmonic
        ground state ($\beta$ ignored); $\Sigma_0 = (2M\Omega)^{-1}$. Periodic: the zero
        mode gets the lowest nonzero frequency (a free centre of mass has no ground state).

        Raises:
            ValueError: If `mass <= 0`.
        """
        omega, vec = self.normal_modes(mass)
        omega = jnp.where(omega > 0, omega, jnp.min(jnp.where(omega > 0, omega, jnp.inf)))
        return 0.5j * _mass(mass) * (vec * omega[None, :]) @ vec.T


# ==================================================================================
# Part 1: the Gaussian and its flow
# ==================================================================================


class GaussianState(eqx.Module):
    r"""A thawed Gaussian $\psi(x) = \exp\{i[(x-q)^{\mathsf T}A(x-q) + p^{\mathsf T}(x-q)
    + \gamma]\}$ ($\hbar = 1$), batched over leading axes.

    Attributes:
        q: Centre position `(*b, N)`.
        p: Centre momentum `(*b, N)`.
        A: Complex symmetric width matrix `(*b, N, N)`, $\mathrm{Im}A > 0$.
        gamma: Complex phase `(*b,)`; $\mathrm{Im}\gamma$ sets the norm.

    Example:
        >>> import jax.numpy as jnp
        >>> g = GaussianState.normalized(jnp.zeros(1), jnp.zeros(1), jnp.array([[0.5j]]))
        >>> round(float(g.norm()), 12), round(float(g.spread()[0]) ** 2, 12)
        (1.0, 0.5)
    """

    q: Float[Array, "*b N"]
    p: Float[Array, "*b N"]
    A: Complex[Array, "*b N N"]
    gamma: Complex[Array, " *b"]

    @classmethod
    def normalized(cls, q, p, A, phase: float = 0.0) -> "GaussianState":
        r"""Gaussian with unit norm: $\mathrm{Im}\gamma = \tfrac14[N\ln\pi -
        \ln\det(2\,\mathrm{Im}A)]$, $\mathrm{Re}\gamma$ = `phase`.

        Raises:
            ValueError: On mismatched shapes, a non-symmetric `A`, or an $\mathrm{Im}A$
                that is not positive definite.
        """
        q = jnp.asarray(q, float)
        p = jnp.asarray(p, float)
        A = jnp.asarray(A).astype(complex)
        n = q.shape[-1]
        if q.ndim != 1 or p.shape != (n,) or A.shape != (n, n):
            raise ValueError(
                f"Arguments `q`, `p`, `A` must have shapes (N,), (N,), (N, N); got {q.shape}, {p.shape}, {A.shape}."
            )
        if is_concrete(A):
            a = np.asarray(A)
            if np.max(np.abs(a - a.T), initial=0.0) > 1e-10 * max(1.0, np.max(np.abs(a))):
                raise ValueError("Argument `A` must be complex symmetric (A = A^T).")
            if np.min(np.linalg.eigvalsh(0.5 * (a.imag + a.imag.T))) <= 0:
                raise ValueError("Argument `A` must have a positive-definite imaginary part (a normalisable Gaussian).")
        _, logdet = jnp.linalg.slogdet(2 * A.imag)
        return cls(q, p, A, jnp.asarray(phase + 0.25j * (n * jnp.log(jnp.pi) - logdet)))

    @property
    def dim(self) -> int:
        return self.q.shape[-1]

    def covariance(self) -> Float[Array, "*b N N"]:
        r"""Position covariance $\Sigma = (4\,\mathrm{Im}A)^{-1}$."""
        return 0.25 * jnp.linalg.inv(self.A.imag)

    def spread(self) -> Float[Array, "*b N"]:
        r"""Position spread per coordinate, $\sqrt{\Sigma_{ii}}$ (length)."""
        return jnp.sqrt(jnp.diagonal(self.covariance(), axis1=-2, axis2=-1))

    def norm(self) -> Float[Array, " *b"]:
        r"""$\int|\psi|^2 = e^{-2\mathrm{Im}\gamma}\,\pi^{N/2}\det(2\,\mathrm{Im}A)^{-1/2}$."""
        _, logdet = jnp.linalg.slogdet(2 * self.A.imag)
        return jnp.exp(-2 * self.gamma.imag + 0.5 * self.dim * jnp.log(jnp.pi) - 0.5 * logdet)

    def wavefunction(self, x: Float[Array, "... N"]) -> Complex[Array, "..."]:
        r"""$\psi(x)$ at points `x` `(..., N)` (unbatched state)."""
        x = jnp.asarray(x)
        d = x - self.q.reshape((1,) * (x.ndim - 1) + self.q.shape)
        quad = jnp.einsum("...i,ij,...j->...", d, self.A, d)
        return jnp.exp(1j * (quad + d @ self.p + self.gamma))

    def energy(self, potential: AbstractBondPotential, mass) -> Float[Array, " *b"]:
        r"""Exact $\langle H\rangle = \frac{p^2 + 4\mathrm{Tr}(A\Sigma\bar A)}{2M} +
        \sum_b\langle v(r_b)\rangle$ (the Gaussian averages of `quartic_moments`)."""
        return (
            jax.vmap(lambda g: _gaussian_energy(potential, mass, g))(self)
            if self.q.ndim > 1
            else _gaussian_energy(potential, mass, self)
        )


@eqx.filter_jit
def _gaussian_energy(potential, mass, g: GaussianState):
    sigma = g.covariance()
    kin = (g.p @ g.p + 4 * jnp.real(jnp.trace(g.A @ sigma @ jnp.conj(g.A)))) / (2 * mass)
    s2 = potential.bond_variances(sigma)
    return kin + jnp.sum(quartic_moments(potential.k, potential.beta, potential.bonds(g.q), s2)[0])


@eqx.filter_jit
def harmonic_gaussian(
    state0: GaussianState, k: Float[ArrayLike, ""], mass: Float[ArrayLike, ""], t: Float[ArrayLike, " T"]
) -> GaussianState:
    r"""Exact thawed Gaussian of one harmonic oscillator $V = \tfrac12 kx^2$, $\omega =
    \sqrt{k/M}$ (the closed form the single-oscillator test holds the solver to).

    $$
    q = q_0\cos\omega t + \frac{p_0}{M\omega}\sin\omega t,\quad
    X = \cos\omega t + \frac{2A_0}{M\omega}\sin\omega t,\quad
    A = \frac M2\frac{\dot X}{X},\quad
    \gamma = \gamma_0 + \tfrac12(pq - p_0q_0) + \tfrac i2\ln X,
    $$

    with the branch of $\ln X$ continuous in $t$ ($X \neq 0$ since
    $\mathrm{Im}A_0 > 0$; its argument is $\arg X = \omega t$ plus a bounded, periodic
    correction, evaluated here without unwrapping).

    Args:
        state0: One-dimensional Gaussian (`N = 1`, unbatched).
        k: Spring constant.
        mass: Mass.
        t: Times `(T,)`.

    Returns:
        A `GaussianState` batched over `(T,)`.
    """
    t = jnp.asarray(t, float)
    w = jnp.sqrt(jnp.asarray(k) / mass)
    c, s = jnp.cos(w * t), jnp.sin(w * t)
    q0, p0, a0 = state0.q[0], state0.p[0], state0.A[0, 0]
    q = q0 * c + p0 / (mass * w) * s
    p = p0 * c - mass * w * q0 * s
    a = 2 * a0 / (mass * w)
    X = c + a * s
    Xd = w * (-s + a * c)
    A = 0.5 * mass * Xd / X
    # continuous arg X: X = cos + a sin winds once per period; write a = u + i v, v > 0:
    # arg X = wt + atan2 of the bounded factor X e^{-iwt} (never crosses the branch cut)
    # X e^{-iwt} = (1 - ia)/2 + (1 + ia)/2 e^{-2iwt}; Im a > 0 makes the first term the
    # larger one and its real part positive, so this angle stays inside (-pi, pi)
    rel = X * jnp.exp(-1j * w * t)
    logx = jnp.log(jnp.abs(X)) + 1j * (w * t + jnp.angle(rel))
    gamma = state0.gamma + 0.5 * (p * q - p0 * q0) + 0.5j * logx
    return GaussianState(q[:, None], p[:, None], A[:, None, None], gamma)


def fourier_grid_hamiltonian(
    potential: QuarticOscillator, mass: Float[ArrayLike, ""], n_grid: int, half_width: float
) -> tuple[Float[Array, " G"], Float[Array, "G G"]]:
    r"""Dense Fourier-grid (periodic sinc) Hamiltonian of one particle, the exact reference
    for the single anharmonic oscillator.

    $H = T + \mathrm{diag}\,V(x_j)$ on $x_j = -L + 2Lj/G$, $j = 0..G-1$, with the
    kinetic matrix $T = F^{-1}\mathrm{diag}(k^2/2M)F$ exact for band-limited states
    (spectral accuracy). Evolve with `thermojax.sesolve(H, psi, tsave,
    method=thermojax.Eigen())`; kets are grid values times $\sqrt{\Delta x}$.

    Args:
        potential: The `QuarticOscillator`.
        mass: $M > 0$.
        n_grid: Grid points $G \ge 8$ (even).
        half_width: $L > 0$.

    Returns:
        `(x, H)`: grid `(G,)` and Hamiltonian `(G, G)`.

    Raises:
        ValueError: On `mass <= 0`, an odd or tiny `n_grid`, or `half_width <= 0`.

    Example:
        >>> import jax.numpy as jnp
        >>> x, h = fourier_grid_hamiltonian(QuarticOscillator(1.0, 0.0), 1.0, 64, 8.0)
        >>> jnp.round(jnp.linalg.eigvalsh(h)[:2], 8).tolist()
        [0.5, 1.5]
    """
    mass = _mass(mass)
    g = check_int(n_grid, "n_grid", low=8)
    if g % 2:
        raise ValueError(f"Argument `n_grid` must be even, got {n_grid!r}.")
    check_positive(half_width, "half_width")
    x = -half_width + 2 * half_width * np.arange(g) / g
    k = 2 * np.pi * np.fft.fftfreq(g, d=2 * half_width / g)
    kin = np.real(np.fft.ifft(k[:, None] ** 2 * np.fft.fft(np.eye(g), axis=0), axis=0))
    kin = 0.5 * (kin + kin.T)
    xj = jnp.asarray(x)
    v = quartic_moments(potential.k, potential.beta, xj, 0.0)[0]
    return xj, jnp.asarray(kin) / (2 * mass) + jnp.diag(v)


class ThawedGaussian(eqx.Module):
    r"""The thawed-Gaussian flow of a bond potential, as a diffrax vector field.

    Convention (Heller 1975, $\hbar = 1$): $\psi = \exp\{i[(x-q)^{\mathsf T}A(x-q) +
    p^{\mathsf T}(x-q) + \gamma]\}$ and

    $$
    \dot q = \frac pM,\quad \dot p = -V_1,\quad \dot A = -\frac{2A^2}{M} - \frac12V_2,\quad
    \dot\gamma = \frac{p^2}{2M} - V_0 + \frac iM\mathrm{Tr}A
    $$

    (module docstring: `forces` picks $V_{0,1,2}$, `representation` the variables).
    The packed state is one real vector (`pack` / `unpack`), so
    `thermojax.solve_ode(model, model.pack(g0), tsave)` integrates it; `evolve`
    does exactly that.

    Args:
        potential: An `AbstractBondPotential` (`FPUChain`, `QuarticOscillator`).
        mass: Atom mass $M > 0$.
        forces: `"local"` (Heller's local harmonic approximation; the centre obeys
            Hamilton's equations) or `"averaged"` (variational Gaussian; conserves
            $\langle H\rangle$).
        representation: `"width"` ($A$ and $\gamma$ integrated as written) or
            `"tangent"` ($A = \tfrac12PX^{-1}$ from the linear flow; $O(N^2)$ per step
            for the chain; phase up to the sign of $\psi$).

    Raises:
        ValueError: If `mass <= 0` or a switch is unknown.

    Example:
        >>> import jax.numpy as jnp
        >>> model = ThawedGaussian(QuarticOscillator(1.0, 0.0), 1.0)
        >>> g0 = GaussianState.normalized(jnp.ones(1), jnp.zeros(1), jnp.array([[0.5j]]))
        >>> dy = model(0.0, model.pack(g0))  # the ground-state width is stationary: dA/dt = 0
        >>> dy[:2].tolist(), float(jnp.abs(dy[2:4]).max())
        ([0.0, -1.0], 0.0)

        `model.evolve(g0, tsave)` integrates it (`thermojax.solve_ode`).
    """

    potential: AbstractBondPotential
    mass: Float[Array, ""]
    forces: Literal["local", "averaged"] = eqx.field(static=True)
    representation: Literal["width", "tangent"] = eqx.field(static=True)

    def __init__(
        self,
        potential: AbstractBondPotential,
        mass: Float[ArrayLike, ""],
        *,
        forces: Literal["local", "averaged"] = "local",
        representation: Literal["width", "tangent"] = "width",
    ):
        if not isinstance(potential, AbstractBondPotential):
            raise TypeError(f"Argument `potential` must be an AbstractBondPotential, got {type(potential).__name__}.")
        if forces not in ("local", "averaged"):
            raise ValueError(f'Argument `forces` must be "local" or "averaged", got {forces!r}.')
        if representation not in ("width", "tangent"):
            raise ValueError(f'Argument `representation` must be "width" or "tangent", got {representation!r}.')
        self.potential = potential
        self.mass = _mass(mass, "mass")
        self.forces = forces
        self.representation = representation

    @property
    def dim(self) -> int:
        """Number of coordinates $N$."""
        return self.potential.dim

    @property
    def state_size(self) -> int:
        """Length of the packed real state vector."""
        n = self.dim
        return 2 * n + 2 * n * n + 2 if self.representation == "width" else 2 * n * (2 * n + 2)

    # -- packing ----------------------------------------------------------------------

    def pack(self, state: GaussianState) -> Float[Array, " S"]:
        """The real state vector of an (unbatched) `GaussianState`.

        Raises:
            ValueError: If the state's dimension is not the potential's.
        """
        n = self.dim
        if state.q.shape != (n,):
            raise ValueError(f"Argument `state` must be an unbatched Gaussian of dimension {n}, got q {state.q.shape}.")
        if self.representation == "width":
            a = state.A
            return jnp.concatenate(
                [state.q, state.p, a.real.ravel(), a.imag.ravel(), jnp.stack([state.gamma.real, state.gamma.imag])]
            )
        L = jnp.linalg.cholesky(state.covariance())
        P = 2 * state.A @ L
        const = state.gamma.imag - 0.5 * jnp.sum(jnp.log(jnp.diagonal(L)))
        # the grid W (2, N, 2N + 2): centre | X or P (real) | X or P (imaginary) | phase
        rows_x = jnp.concatenate([state.q[:, None], L, jnp.zeros((n, n + 1))], axis=1)
        rows_p = jnp.concatenate([state.p[:, None], P.real, P.imag, jnp.zeros((n, 1))], axis=1)
        # the phase column: Re gamma in the momentum row, the constant part of Im gamma in the
        # position row (whose derivative in this column is held at zero)
        return jnp.stack([rows_x, rows_p]).at[1, 0, -1].set(state.gamma.real).at[0, 0, -1].set(const).ravel()

    def _split(self, y):
        n = self.dim
        if self.representation == "width":
            m = n * n
            q, p = y[:n], y[n : 2 * n]
            A = jax.lax.complex(y[2 * n : 2 * n + m], y[2 * n + m : 2 * n + 2 * m]).reshape(n, n)
            return q, p, A, jax.lax.complex(y[-2], y[-1])
        w = _tangent_grid(y, n)
        k = (w.shape[-1] - 2) // 2  # tangent columns (N, or fewer in a column block)
        X = jax.lax.complex(w[0, :, 1 : k + 1], w[0, :, k + 1 : 2 * k + 1])
        P = jax.lax.complex(w[1, :, 1 : k + 1], w[1, :, k + 1 : 2 * k + 1])
        return w[0, :, 0], w[1, :, 0], X, P, w[1, 0, -1], w[0, 0, -1]

    def unpack(self, y: Float[Array, "*b S"]) -> GaussianState:
        r"""`GaussianState` from packed vectors `(*b, S)` (tangent: $A = \tfrac12PX^{-1}$,
        $\gamma$ with the principal branch of $\arg\det X$)."""
        if y.ndim > 1:
            flat = _unpack_batch(self, y.reshape(-1, y.shape[-1]))
            return jax.tree.map(lambda x: x.reshape(y.shape[:-1] + x.shape[1:]), flat)
        if self.representation == "width":
            q, p, A, g = self._split(y)
            return GaussianState(q, p, 0.5 * (A + A.T), g)
        q, p, X, P, g_re, const = self._split(y)
        A = 0.5 * jnp.linalg.solve(X.T, P.T).T  # P X^{-1}
        sign, logabs = jnp.linalg.slogdet(X)
        gamma = g_re - 0.5 * jnp.angle(sign) + 1j * (const + 0.5 * logabs)
        return GaussianState(q, p, 0.5 * (A + A.T), gamma)

    # -- the vector field -------------------------------------------------------------

    def __call__(self, t, y: Float[Array, " S"], args=None) -> Float[Array, " S"]:
        """`dy/dt` of the packed state (diffrax signature `(t, y, args)`).

        Blocks are written into one preallocated vector (`.at[].set`): XLA's CPU backend
        runs a `concatenate` of large blocks 15x slower (`benchmarks/solid.py`)."""
        del t, args
        pot, m, n = self.potential, self.mass, self.dim
        if self.representation == "width":
            nn = n * n
            dy = jnp.zeros_like(y)
            q, p, A, _ = self._split(y)
            s2 = None
            if self.forces == "averaged":
                s2 = pot.bond_variances(0.25 * jnp.linalg.inv(A.imag))
            v0, v1, kappa = pot.effective(q, s2)
            v2 = pot.hessian_mv(kappa, jnp.eye(n, dtype=y.dtype))
            dA = -2.0 / m * matmul(A, A) - 0.5 * v2
            dg = p @ p / (2 * m) - v0 + 1j * jnp.trace(A) / m
            dy = dy.at[:n].set(p / m).at[n : 2 * n].set(-v1)
            dy = dy.at[2 * n : 2 * n + nn].set(dA.real.ravel()).at[2 * n + nn : 2 * n + 2 * nn].set(dA.imag.ravel())
            return dy.at[-2].set(dg.real).at[-1].set(dg.imag)
        # tangent: y is the grid W (2, N, C), W[0] = (q | X_re | X_im | const), W[1] = (p | P_re | P_im |
        # phase): dW[0] = W[1]/M and dW[1] = -V_2 W[0] for every column at once, then the centre
        # column gets -V_1 and the phase column its own derivative (two column writes)
        w = _tangent_grid(y, n)
        q, p = w[0, :, 0], w[1, :, 0]
        s2 = None
        if self.forces == "averaged":
            s2 = jnp.sum(pot.bonds(w[0, :, 1:-1]) ** 2, axis=-1)
        v0, v1, kappa = pot.effective(q, s2)
        kx = pot.hessian_mv(kappa, w[0]).at[:, 0].set(v1).at[:, -1].set(0.0).at[0, -1].set(v0 - p @ p / (2 * m))
        inv_m = jnp.full(w.shape[-1], 1.0 / m).at[-1].set(0.0)  # the phase column's position row stays 0
        return jnp.stack([w[1] * inv_m[None, :], -kx]).ravel()

    # -- observables ------------------------------------------------------------------

    def observables(self, y: Float[Array, " S"]) -> "GaussianObservables":
        r"""Energy, classical energy, norm and spread of one packed state (cheap in the
        tangent representation: $\Sigma = \mathrm{Re}\,XX^\dagger$, no inverse)."""
        pot, m = self.potential, self.mass
        if self.representation == "width":
            g = self.unpack(y)
            sigma = g.covariance()
            kin_q = 4 * jnp.real(jnp.trace(g.A @ sigma @ jnp.conj(g.A)))
            var = jnp.diagonal(sigma)
            s2 = pot.bond_variances(sigma)
            norm = g.norm()
            q, p = g.q, g.p
        else:
            q, p, X, P, _, _ = self._split(y)
            var = jnp.sum(X.real**2 + X.imag**2, axis=-1)
            dx = pot.bonds(X)
            s2 = jnp.sum(dx.real**2 + dx.imag**2, axis=-1)
            kin_q = jnp.sum(P.real**2 + P.imag**2)
            norm = self.unpack(y).norm()
        mu = pot.bonds(q)
        v_mean = jnp.sum(quartic_moments(pot.k, pot.beta, mu, s2)[0])
        h_cl = p @ p / (2 * m) + pot.potential(q)
        return GaussianObservables(
            energy=(p @ p + kin_q) / (2 * m) + v_mean, classical_energy=h_cl, norm=norm, spread=jnp.sqrt(var), q=q, p=p
        )

    def observe(self, states: Float[Array, "T S"]) -> "GaussianObservables":
        """`observables` of a batch of packed states `(T, S)` (compiled once per model
        structure)."""
        return _observe(self, states)

    def evolve(
        self,
        state0: GaussianState,
        tsave: Float[ArrayLike, " T"],
        *,
        method=None,
        options=None,
        column_block: int | None = None,
    ):
        r"""Integrate from `state0` with `thermojax.solve_ode` (default method: diffrax
        `Tsit5` with `PIDController(rtol=1e-8, atol=1e-8)`).

        Args:
            state0: The initial `GaussianState` (unbatched).
            tsave: Save times `(T,)`, increasing.
            method: A `thermojax.ODE`.
            options: `thermojax.Options`.
            column_block: Tangent representation with local forces only: integrate the
                columns of $X$, $P$ in blocks of this many, one block after the other,
                each together with its own copy of the centre. Under local forces the
                columns do not couple, so at a fixed step (`ConstantStepSize`, `StepTo`)
                this is the same computation on a working set that fits in the CPU's
                cache: at N = 1024 about 2x faster (`benchmarks/solid.py`). The
                reassembled states equal the unblocked ones to rounding.

        Returns:
            `thermojax.Result` with `states` `(T, S)` (packed; see `unpack`,
            `observables`).

        Raises:
            ValueError: If `column_block` is not an integer in `[1, N]`, or is given for
                the width representation, averaged forces, or an adaptive step (the blocks
                would take different steps).
        """
        from ..options import ODE, Options
        from ..solvers import solve_ode

        y0 = self.pack(state0)
        if column_block is None:
            return solve_ode(self, y0, tsave, method=method, options=options)
        b = check_int(column_block, "column_block", low=1, high=self.dim)
        if self.representation != "tangent" or self.forces != "local":
            raise ValueError(
                "Argument `column_block` needs representation='tangent' and forces='local' (the columns of X, P "
                f"evolve independently only then), got {self.representation!r} and {self.forces!r}."
            )
        fixed = (dfx.ConstantStepSize, dfx.StepTo)
        if not isinstance(method, ODE) or not isinstance(method.stepsize_controller, fixed):
            raise ValueError(
                "Argument `column_block` needs a fixed step: method=thermojax.ODE(..., diffrax.ConstantStepSize(), "
                "dt0=...) (an adaptive controller would step each block differently)."
            )
        return _evolve_blocked(self, y0, tsave, method, Options() if options is None else options, b)


def _evolve_blocked(model: "ThawedGaussian", y0, tsave, method, options, b: int):
    """`ThawedGaussian.evolve` with `column_block=b`: split, integrate block by block, reassemble."""
    from .._checks import check_times
    from ..result import Result
    from ..solvers._common import first_failure, raise_if_failed

    tsave = check_times(tsave, "tsave")
    n = model.dim
    nb = -(-n // b)
    w = _tangent_grid(y0, n)
    pad = jnp.zeros((2, n, nb * b - n))
    xr = jnp.concatenate([w[:, :, 1 : n + 1], pad], -1).reshape(2, n, nb, b)
    xi = jnp.concatenate([w[:, :, n + 1 : 2 * n + 1], pad], -1).reshape(2, n, nb, b)
    centre = jnp.broadcast_to(w[:, :, None, :1], (2, n, nb, 1))
    phase = jnp.broadcast_to(w[:, :, None, -1:], (2, n, nb, 1))
    blocks = jnp.concatenate([centre, xr, xi, phase], -1)  # (2, n, nb, 2b + 2): a tangent grid per block
    ys, stats, status = _solve_blocks(model, jnp.moveaxis(blocks, 2, 0).reshape(nb, -1), tsave, method, options)
    g = ys.reshape(nb, tsave.shape[0], 2, n, 2 * b + 2)
    cols = lambda lo: jnp.moveaxis(g[..., lo : lo + b], 0, -2).reshape(*g.shape[1:4], nb * b)[..., :n]  # noqa: E731
    full = jnp.concatenate([g[0, ..., :1], cols(1), cols(b + 1), g[0, ..., -1:]], -1)
    res = Result(
        tsave=tsave,
        states=full.reshape(tsave.shape[0], -1),
        expect=None,
        stats={k: v[0] for k, v in stats.items()},
        status=first_failure(status),
        method=type(method.solver).__name__,
    )
    return raise_if_failed(res, options)


@eqx.filter_jit
def _solve_blocks(model, ys, tsave, method, options):
    from ..solvers._common import ode_integrate

    def one(y):
        return ode_integrate(model, y, tsave, method=method, options=options, save=lambda x: x)

    # `lax.map`: one block after the other, each block's whole integration in cache
    return jax.lax.map(one, ys)


def _tangent_grid(y: Array, n: int) -> Array:
    """The tangent state as its grid `(2, N, C)`: `C = 2N + 2` columns, or `2b + 2` for a
    block of `b` tangent columns (`ThawedGaussian.evolve(..., column_block=b)`)."""
    return y.reshape(2, n, -1)


# `lax.map`, not `vmap`: a vmapped `solve`/`slogdet` becomes one batched LAPACK LU, whose
# `ParallelBatchMap` on XLA's CPU thread pool deadlocked twice in the 801-time collision
# run (jaxlib 0.10.2: every pool thread idle, the caller waiting on its counter).
@eqx.filter_jit
def _observe(model: ThawedGaussian, states: Array) -> "GaussianObservables":
    return jax.lax.map(model.observables, states)


@eqx.filter_jit
def _unpack_batch(model: ThawedGaussian, states: Array) -> GaussianState:
    return jax.lax.map(model.unpack, states)


class GaussianObservables(eqx.Module):
    r"""What `ThawedGaussian.observables` measures, batched over leading axes.

    Attributes:
        energy: Exact $\langle H\rangle$ of the Gaussian.
        classical_energy: $H(q, p)$ of the centre (conserved by the local flow).
        norm: $\int|\psi|^2$.
        spread: $\sqrt{\Sigma_{ii}}$ per atom `(*b, N)`.
        q: Centre positions `(*b, N)`.
        p: Centre momenta `(*b, N)`.
    """

    energy: Array
    classical_energy: Array
    norm: Array
    spread: Array
    q: Array
    p: Array


def mode_energies(
    chain: FPUChain, mass: Float[ArrayLike, ""], q: Float[Array, "*b N"], p: Float[Array, "*b N"]
) -> Float[Array, "*b N"]:
    r"""Harmonic normal-mode energies of the centre,
    $E_k = \tfrac12(P_k^2/M + M\omega_k^2Q_k^2)$ with $Q = \Phi^{\mathsf T}q$,
    $P = \Phi^{\mathsf T}p$; at $\beta = 0$ each is a constant of motion and
    $\sum_kE_k$ is the energy.

    Example:
        >>> import jax.numpy as jnp
        >>> chain = FPUChain(4, 1.0, 0.0)
        >>> e = mode_energies(chain, 1.0, jnp.zeros(4), jnp.ones(4))
        >>> round(float(e.sum()), 12)
        2.0
    """
    omega, vec = chain.normal_modes(mass)
    Q, P = q @ vec, p @ vec
    w2 = jnp.broadcast_to(omega**2, Q.shape)
    return 0.5 * (P**2 / mass + mass * w2 * Q**2)


def spectral_entropy(energies: Float[Array, "*b K"], mask=None) -> tuple[Array, Array]:
    r"""Spectral entropy $S = -\sum_ke_k\ln e_k$, $e_k = E_k/\sum E$, over the modes in
    `mask` (default all), and the effective fraction of modes $n_{\rm eff} =
    e^S/K_{\rm acc}$. Equipartition with Gibbs fluctuations (mode energies exponentially
    distributed) gives $\langle S\rangle \to \ln K - (1-\gamma_E)$, $n_{\rm eff}\to
    e^{\gamma_E-1} = 0.655$.

    Returns:
        `(S, n_eff)`, shape `(*b,)`.
    """
    e = jnp.asarray(energies)
    mask = jnp.ones(e.shape[-1], bool) if mask is None else jnp.asarray(mask, bool)
    e = jnp.where(jnp.broadcast_to(mask, e.shape), e, 0.0)
    w = e / jnp.sum(e, axis=-1, keepdims=True)
    s = -jnp.sum(jnp.where(w > 0, w * jnp.log(jnp.where(w > 0, w, 1.0)), 0.0), axis=-1)
    return s, jnp.exp(s) / jnp.sum(mask)


#: $e^{\gamma_E - 1}$, the equipartition value of $n_{\rm eff}$ (Gibbs fluctuations).
N_EFF_EQUIPARTITION = math.exp(0.5772156649015329 - 1.0)


def equipartition_curve(t, tau, n0, n_eq, stretch) -> Array:
    r"""$n_{\rm eff}(t) = n_{\rm eq} - (n_{\rm eq}-n_0)\exp[-(t/\tau)^s]$: the
    equipartition time $\tau$ (a stretched exponential, sigmoidal for $s>1$)."""
    return n_eq - (n_eq - n0) * jnp.exp(-((jnp.asarray(t) / tau) ** stretch))


# ==================================================================================
# Part 2: Planck's law from counting
# ==================================================================================


def _counts(n_oscillators, quanta, *, n_low: int = 1) -> tuple[int, int]:
    n = check_int(n_oscillators, "n_oscillators", low=n_low)
    q = check_int(quanta, "quanta", low=0)
    return n, q


def log_density_of_states(n_oscillators: int, quanta: Int[ArrayLike, "..."]) -> Float[Array, "..."]:
    r"""$\ln g_N(q)$, $g_N(q) = \binom{q+N-1}{q}$: the number of ways to put $q$ quanta in
    $N$ oscillators of equal frequency (`gammaln`, exact in log space for $N, q$ up to
    $10^6$ and beyond).

    Raises:
        ValueError: If `n_oscillators < 1` or a `quanta` entry is negative.

    Example:
        >>> round(float(jnp.exp(log_density_of_states(3, 2))), 9)  # C(4, 2)
        6.0
    """
    n = check_int(n_oscillators, "n_oscillators", low=1)
    q = jnp.asarray(quanta, float)
    if is_concrete(q) and bool(jnp.any(q < 0)):
        raise ValueError(f"Argument `quanta` must be >= 0, got {np.asarray(quanta)}.")
    gl = jax.scipy.special.gammaln
    return gl(q + n) - gl(q + 1.0) - gl(float(n))


def photon_distribution(
    n_oscillators: int, quanta: int, *, method: Literal["ratio", "gammaln"] = "ratio"
) -> Float[Array, " Q+1"]:
    r"""Microcanonical photon-number distribution of one radiation mode sharing $Q$
    quanta with $N$ matter oscillators (all of the same frequency),

    $$
    P(n) = \frac{g_N(Q-n)\,g_1(n)}{g_{N+1}(Q)} = N\,
    \frac{\Gamma(Q-n+N)\,\Gamma(Q+1)}{\Gamma(Q+N+1)\,\Gamma(Q-n+1)},\quad n = 0..Q,
    $$

    in log space, so that $N, Q \sim 10^6$ and beyond work:

    * `"ratio"` (default): $\ln P(0) = \ln\frac{N}{Q+N}$ and the exact ratios
      $\ln\frac{P(n)}{P(n-1)} = \mathrm{log1p}\frac{1-N}{Q-n+N}$, summed
      (relative error $\sim 10^{-15}$ at $N = Q = 10^6$);
    * `"gammaln"`: the formula above as two differences of `gammaln` (relative error
      $\sim\varepsilon\ln\Gamma(Q+N+1)$: $4\times10^{-9}$ at $N = Q = 10^6$).

    Args:
        n_oscillators: $N \ge 1$.
        quanta: $Q \ge 0$.
        method: `"ratio"` or `"gammaln"`.

    Returns:
        $P(n)$, shape `(Q+1,)`, summing to 1.

    Raises:
        ValueError: If `n_oscillators < 1`, `quanta < 0` or `method` is unknown.

    Example:
        >>> jnp.round(6 * photon_distribution(2, 2), 9).tolist()  # n = 0, 1, 2 in 3, 2, 1 of the 6 states
        [3.0, 2.0, 1.0]
    """
    n, q = _counts(n_oscillators, quanta)
    if method not in ("ratio", "gammaln"):
        raise ValueError(f'Argument `method` must be "ratio" or "gammaln", got {method!r}.')
    return _photon_distribution(n, q, method)


@jax.jit(static_argnums=(0, 1, 2))
def _photon_distribution(n: int, q: int, method: str) -> Array:
    k = jnp.arange(q + 1, dtype=float)
    if method == "ratio":
        steps = jnp.log1p((1.0 - n) / (q - k[1:] + n))
        logp = jnp.log(n / (q + n)) + jnp.concatenate([jnp.zeros(1), jnp.cumsum(steps)])
    else:
        gl = jax.scipy.special.gammaln
        logp = (gl(q - k + n) - gl(q + n + 1.0)) + (gl(q + 1.0) - gl(q - k + 1.0)) + jnp.log(float(n))
    return jnp.exp(logp)


def counting_mean_photon_number(n_oscillators: int, quanta: int) -> float:
    r"""$\langle n\rangle = Q/(N+1)$ exactly (the $N+1$ equal oscillators share the quanta
    symmetrically).

    Example:
        >>> counting_mean_photon_number(9, 30)
        3.0
    """
    n, q = _counts(n_oscillators, quanta)
    return q / (n + 1)


def counting_beta(
    n_oscillators: int, quanta: int, *, reservoir: Literal["total", "matter"] = "total"
) -> Float[Array, ""]:
    r"""Inverse temperature $\beta = \partial\ln g/\partial E$ at $E = Q$ (unit frequency),
    with the continuous derivative $\partial_q\ln g_N(q) = \psi(q+N) - \psi(q+1)$
    (digamma).

    `reservoir="total"`: $g = g_{N+1}$, the density of states of the whole system
    (arXiv:1412.1347, §3, $T^{-1} = \partial\ln g/\partial E$); `"matter"`: $g = g_N$,
    the reservoir of the textbook canonical derivation. Both tend to
    $\ln(1 + N/Q)$; they differ at $O(1/N)$.

    Raises:
        ValueError: If `n_oscillators < 1`, `quanta < 1` (no temperature at $Q=0$) or
            `reservoir` is unknown.

    Example:
        >>> round(float(counting_beta(10**6, 10**6)), 6)  # ln 2
        0.693147
    """
    n, q = _counts(n_oscillators, quanta)
    if q < 1:
        raise ValueError(f"Argument `quanta` must be >= 1 for a temperature, got {quanta!r}.")
    if reservoir not in ("total", "matter"):
        raise ValueError(f'Argument `reservoir` must be "total" or "matter", got {reservoir!r}.')
    m = n + 1 if reservoir == "total" else n
    dg = jax.scipy.special.digamma
    return dg(q + float(m)) - dg(q + 1.0)


def planck_distribution(beta: Float[ArrayLike, ""], n_max: int) -> Float[Array, " n_max+1"]:
    r"""Bose–Einstein (geometric) photon-number distribution of one mode of unit
    frequency, $P_\beta(n) = (1-e^{-\beta})e^{-\beta n}$, $n = 0..n_{\max}$ (the tail
    beyond $n_{\max}$, $e^{-\beta(n_{\max}+1)}$, is not included). Its mean is
    `thermojax.thermal.bose_einstein(1, beta)`.

    Example:
        >>> jnp.round(planck_distribution(jnp.log(2.0), 2), 6).tolist()
        [0.5, 0.25, 0.125]
    """
    beta = jnp.asarray(check_positive(beta, "beta"), float)
    return _planck(beta, check_int(n_max, "n_max", low=0))


@jax.jit(static_argnums=1)
def _planck(beta, n_max):
    n = jnp.arange(n_max + 1, dtype=float)
    return -jnp.expm1(-beta) * jnp.exp(-beta * n)


def total_variation(p: Float[Array, "*b K"], q: Float[Array, "*b K"], *, tails: bool = True) -> Float[Array, " *b"]:
    r"""Total-variation distance $\tfrac12\sum_n|p_n - q_n|$ (in $[0, 1]$); with
    `tails`, the probability either distribution puts beyond the last entry
    ($1-\sum p$, $1-\sum q$) counts as well.

    Example:
        >>> float(total_variation(jnp.array([1.0, 0.0]), jnp.array([0.5, 0.5])))
        0.5
    """
    p, q = jnp.asarray(p), jnp.asarray(q)
    shape = jnp.broadcast_shapes(p.shape, q.shape)
    p, q = jnp.broadcast_to(p, shape), jnp.broadcast_to(q, shape)
    d = 0.5 * jnp.sum(jnp.abs(p - q), axis=-1)
    if tails:
        d = d + 0.5 * jnp.abs(jnp.sum(q, axis=-1) - jnp.sum(p, axis=-1))
    return d


# ==================================================================================
# Part 2: the shell of fixed total quanta
# ==================================================================================


def shell_dimension(n_modes: int, quanta: int) -> int:
    r"""$\binom{Q+m-1}{Q}$, the number of ways to put $Q$ quanta in $m$ modes (an exact
    Python integer, however large)."""
    return math.comb(quanta + n_modes - 1, quanta) if quanta >= 0 else 0


def _binomial_table(top: int, cols: int) -> np.ndarray:
    """`C(b, j)` for `b < top`, `j < cols`, int64 (the callers keep values < 2^62)."""
    t = np.zeros((top, cols), np.int64)
    for b in range(top):
        for j in range(min(b, cols - 1) + 1):
            t[b, j] = math.comb(b, j)
    return t


def _rank(occ: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Colex rank of compositions `(..., m)`: bars at `b_j = n_0 + .. + n_j + j`,
    rank `sum_j C(b_j, j + 1)`."""
    m = occ.shape[-1]
    bars = np.cumsum(occ[..., : m - 1], axis=-1) + np.arange(m - 1)
    return np.sum(table[bars, np.arange(1, m)], axis=-1)


def _compositions(n_modes: int, quanta: int, table: np.ndarray) -> np.ndarray:
    """All compositions of `quanta` into `n_modes` parts, ordered by colex rank
    (vectorised unranking, one `searchsorted` per bar)."""
    d = shell_dimension(n_modes, quanta)
    r = np.arange(d, dtype=np.int64)
    bars = np.zeros((d, n_modes - 1), np.int64)
    for j in range(n_modes - 2, -1, -1):
        col = table[:, j + 1]  # C(b, j+1), nondecreasing in b
        b = np.searchsorted(col, r, side="right") - 1
        bars[:, j] = b
        r = r - col[b]
    prev = np.concatenate([np.full((d, 1), -1), bars], axis=1)
    occ = np.empty((d, n_modes), np.int32)
    occ[:, : n_modes - 1] = np.diff(prev, axis=1) - 1
    occ[:, n_modes - 1] = quanta + n_modes - 2 - bars[:, -1] if n_modes > 1 else quanta
    return occ


class ShellBasis(eqx.Module):
    r"""Fock basis of the shell with exactly $Q$ quanta in $N$ matter modes plus one
    radiation mode (the last, index $N$); dimension $\binom{Q+N}{N}$, states ordered by
    the colex rank of their stars-and-bars code.

    Construct with `ShellBasis.build`, which refuses (before allocating) a shell
    whose basis and one state would not fit in memory.

    Attributes:
        occupations: `(D, N+1)` int32 occupation numbers.
        n_oscillators: $N$ (static).
        quanta: $Q$ (static).
    """

    occupations: Int[Array, "D M"]
    n_oscillators: int = eqx.field(static=True)
    quanta: int = eqx.field(static=True)

    @classmethod
    def build(cls, n_oscillators: int, quanta: int, *, memory_budget: int | None = None) -> "ShellBasis":
        r"""Enumerate the shell.

        Args:
            n_oscillators: Matter modes $N \ge 1$.
            quanta: Total quanta $Q \ge 0$.
            memory_budget: Bytes allowed (default: available memory).

        Raises:
            ValueError: If `n_oscillators < 1` or `quanta < 0`.
            MemoryError: If the basis (and a few states) would not fit; the message
                names `quanta`/`n_oscillators`.

        Example:
            >>> b = ShellBasis.build(2, 2)
            >>> b.dim, b.occupations[-1].tolist(), b.index([2, 0, 0]).item()
            (6, [2, 0, 0], 5)
        """
        n, q = _counts(n_oscillators, quanta)
        m = n + 1
        d = shell_dimension(m, q)
        need = estimate_bytes(((d, m), np.int64), ((d, m - 1), np.int64), ((4, d), np.complex128))
        check_memory(need, f"the shell of dimension C(Q+N, N) = {d}", memory_budget, key="quanta`/`n_oscillators")
        table = _binomial_table(q + m, m + 1)
        return cls(jnp.asarray(_compositions(m, q, table)), n, q)

    @property
    def dim(self) -> int:
        """Shell dimension $D$."""
        return int(self.occupations.shape[0])

    @property
    def n_modes(self) -> int:
        """$N + 1$."""
        return self.n_oscillators + 1

    def index(self, occupations: Int[ArrayLike, "... M"]) -> np.ndarray:
        """Basis index of occupation vectors `(..., N+1)` (host NumPy).

        Raises:
            ValueError: If a vector has the wrong length, negative entries or another
                total than $Q$.
        """
        occ = np.asarray(occupations, np.int64)
        if occ.shape[-1] != self.n_modes or np.any(occ < 0) or np.any(occ.sum(-1) != self.quanta):
            raise ValueError(
                f"Argument `occupations` must hold {self.n_modes} nonnegative numbers summing to {self.quanta}."
            )
        return _rank(occ, _binomial_table(self.quanta + self.n_modes, self.n_modes + 1))

    def radiation_number(self) -> Int[Array, " D"]:
        """Photon number $n$ of each basis state."""
        return self.occupations[:, -1]

    def radiation_distribution(self, psi: Complex[Array, "*b D"]) -> Float[Array, "*b Q+1"]:
        r"""$P(n) = \sum_{s:\,n_s = n}|\psi_s|^2$, shape `(*b, Q+1)`."""
        w = jnp.abs(jnp.asarray(psi)) ** 2
        onehot = jax.nn.one_hot(self.radiation_number(), self.quanta + 1, dtype=w.dtype)
        return w @ onehot

    def mode_occupations(self, psi: Complex[Array, "*b D"]) -> Float[Array, "*b M"]:
        r"""$\langle n_k\rangle$ of every mode, shape `(*b, N+1)`; they sum to $Q\|\psi\|^2$."""
        return (jnp.abs(jnp.asarray(psi)) ** 2) @ self.occupations.astype(float)

    def counting_distribution(self) -> Float[Array, " Q+1"]:
        r"""The uniform (microcanonical) ensemble on the shell, marginalised to the
        radiation mode: equals `photon_distribution(N, Q)` exactly."""
        return self.radiation_distribution(jnp.full(self.dim, 1 / math.sqrt(self.dim)))


class RadiationDistribution(eqx.Module):
    r"""The observable $\psi \mapsto P(n)$, $n = 0..Q$, as an `e_ops` function for
    `thermojax.sesolve` / `Eigensystem.evolve` (a module, so a new instance with the same
    shapes reuses the compiled solve).

    Attributes:
        onehot: `(D, Q+1)` indicator of each basis state's photon number.
    """

    onehot: Float[Array, "D K"]

    def __init__(self, basis: ShellBasis):
        self.onehot = jax.nn.one_hot(basis.radiation_number(), basis.quanta + 1)

    def __call__(self, psi: Complex[Array, "*b D"]) -> Float[Array, "*b K"]:
        return (jnp.abs(psi) ** 2) @ self.onehot


@eqx.filter_jit
def energy_spread(op: AbstractOperator, psi: Complex[Array, " D"]) -> Float[Array, ""]:
    r"""$\Delta E = \|(H - \langle H\rangle)\psi\|$ of a normalised ket (one product):
    the shell experiments measure time in units of $\hbar/\Delta E$."""
    hpsi = op.mv(0.0, psi)
    e = jnp.vdot(psi, hpsi)
    return jnp.linalg.norm(hpsi - e * psi)


def cold_product_state(basis: ShellBasis, how: Literal["even", "single"] = "even") -> Float[Array, " D"]:
    r"""Fock product state with every quantum in the matter and none in the radiation mode:
    spread as evenly as possible over the $N$ matter modes (`"even"`) or all in mode 0
    (`"single"`).

    Raises:
        ValueError: If `how` is unknown.

    Example:
        >>> b = ShellBasis.build(2, 3)
        >>> b.occupations[int(jnp.argmax(cold_product_state(b)))].tolist()
        [2, 1, 0]
    """
    n, q = basis.n_oscillators, basis.quanta
    occ = np.zeros(n + 1, np.int64)
    if how == "even":
        occ[:n] = q // n
        occ[: q % n] += 1
    elif how == "single":
        occ[0] = q
    else:
        raise ValueError(f'Argument `how` must be "even" or "single", got {how!r}.')
    return jnp.zeros(basis.dim).at[int(basis.index(occ))].set(1.0)


def random_hopping(
    key: PRNGKeyArray, n_modes: int, coupling: float = 1.0, *, radiation_coupling: float = 1.0
) -> Float[Array, "M M"]:
    r"""Random real symmetric hopping matrix $g$ (GOE, off-diagonal variance
    `coupling`²), the radiation mode's (last) row and column scaled by
    `radiation_coupling` ($g_{rr}$ by its square)."""
    from ..spectra import goe_matrix

    m = check_int(n_modes, "n_modes", low=2)
    g = goe_matrix(key, m, radius=2.0 * coupling * math.sqrt(m))
    s = jnp.ones(m).at[-1].set(radiation_coupling)
    return g * s[:, None] * s[None, :]


def _pairs(n_modes: int) -> np.ndarray:
    return np.array([(i, j) for i in range(n_modes) for j in range(i, n_modes)], np.int64)


def random_two_body(
    key: PRNGKeyArray, n_modes: int, coupling: float = 1.0, *, radiation_coupling: float = 1.0
) -> Float[Array, "P P"]:
    r"""Random real symmetric two-body matrix $V_{PP'}$ on the $m(m+1)/2$ mode pairs
    $P = (k \le l)$ (the bosonic two-body random ensemble), off-diagonal variance
    `coupling`²; entries scaled by `radiation_coupling` once per radiation mode in
    $P$ and in $P'$."""
    from ..spectra import goe_matrix

    m = check_int(n_modes, "n_modes", low=2)
    pairs = _pairs(m)
    npair = len(pairs)
    v = goe_matrix(key, npair, radius=2.0 * coupling * math.sqrt(npair))
    s = jnp.asarray(radiation_coupling ** np.sum(pairs == m - 1, axis=1), float)
    return v * s[:, None] * s[None, :]


class ShellHamiltonian(AbstractOperator):
    r"""Quanta-conserving coupling on a `ShellBasis`, applied without storing a matrix.

    * `kind="hopping"`: $H = \sum_{ij}g_{ij}a_i^\dagger a_j$ (non-interacting bosons);
    * `kind="two_body"`: $H = \sum_{PP'}V_{PP'}A_P^\dagger A_{P'}$ with
      $A_{(k,l)} = a_ka_l/\sqrt{1+\delta_{kl}}$ (two-body random ensemble).

    The product $H\psi$ lowers $\psi$ to the shell with $Q-1$ (or $Q-2$) quanta for
    every mode (pair), $Z_j = a_j\psi$, applies the small coupling matrix as one dense
    product $W = gZ$, and raises back, $(H\psi)_n = \sum_i\sqrt{n_i}\,W_i[n-e_i]$: two
    gathers and one GEMM, $O(mD + m^2D_{Q-1})$ for hopping and $O(PD + P^2D_{Q-2})$ for
    two-body, against $O(\mathrm{nnz})$ for a sparse matrix.

    The uniform shell energy $\omega Q$ of the free oscillators is left out (it only
    adds a global phase).

    Args:
        basis: The `ShellBasis`.
        coupling: $g$ `(m, m)` or $V$ `(P, P)`, real symmetric (see `random_hopping`,
            `random_two_body`).
        kind: `"hopping"` or `"two_body"`.
        memory_budget: Bytes allowed for the index tables (default: available).

    Raises:
        ValueError: If `coupling` has the wrong shape or is not symmetric, `kind` is
            unknown, or two-body is asked with fewer than 2 quanta.
        MemoryError: If the tables would not fit.

    Example:
        >>> b = ShellBasis.build(1, 1)  # one oscillator, one radiation mode, one quantum
        >>> h = ShellHamiltonian(b, jnp.array([[0.0, 1.0], [1.0, 0.0]]))
        >>> h.dense().tolist()
        [[0.0, 1.0], [1.0, 0.0]]
    """

    coupling: Float[Array, "K K"]
    lower_index: Int[Array, "K Dl"]
    lower_factor: Float[Array, "K Dl"]
    raise_index: Int[Array, "K D"]
    raise_factor: Float[Array, "K D"]
    d: int = eqx.field(static=True)
    kind: Literal["hopping", "two_body"] = eqx.field(static=True)

    def __init__(
        self,
        basis: ShellBasis,
        coupling: Float[ArrayLike, "K K"],
        kind: Literal["hopping", "two_body"] = "hopping",
        *,
        memory_budget: int | None = None,
    ):
        if kind not in ("hopping", "two_body"):
            raise ValueError(f'Argument `kind` must be "hopping" or "two_body", got {kind!r}.')
        m, q = basis.n_modes, basis.quanta
        ops = [(i,) for i in range(m)] if kind == "hopping" else [tuple(p) for p in _pairs(m)]
        drop = 1 if kind == "hopping" else 2
        if q < drop:
            raise ValueError(f"Argument `quanta` must be >= {drop} for a {kind} coupling, got {q}.")
        g = jnp.asarray(coupling, float)
        if g.shape != (len(ops), len(ops)):
            raise ValueError(f"Argument `coupling` must have shape {(len(ops), len(ops))} for {kind}, got {g.shape}.")
        if is_concrete(g) and float(jnp.max(jnp.abs(g - g.T))) > 1e-12 * max(1.0, float(jnp.max(jnp.abs(g)))):
            raise ValueError("Argument `coupling` must be symmetric (a Hermitian Hamiltonian).")
        d, dl = basis.dim, shell_dimension(m, q - drop)
        need = estimate_bytes(((len(ops), d + dl), np.float64), ((len(ops), d + dl), np.int64))
        check_memory(
            need, f"the {kind} index tables of a shell of dimension {d}", memory_budget, key="quanta`/`n_oscillators"
        )
        table = _binomial_table(q + m, m + 1)
        low = _compositions(m, q - drop, table)  # (Dl, m)
        occ = np.asarray(basis.occupations, np.int64)
        li, lf, ri, rf = [], [], [], []
        for op in ops:
            e = np.bincount(np.asarray(op), minlength=m)
            up = low + e  # the state a^dag..|low> in shell Q
            li.append(_rank(up, table))
            lf.append(_ladder(up, e))  # <up| A^dag |low> = <low| A |up>
            down = occ - e
            ok = np.all(down >= 0, axis=1)
            ri.append(np.where(ok, _rank(np.where(ok[:, None], down, 0), table), 0))
            rf.append(np.where(ok, _ladder(occ, e), 0.0))
        self.coupling = g
        self.lower_index = jnp.asarray(np.stack(li), jnp.int32 if d < 2**31 else jnp.int64)
        self.lower_factor = jnp.asarray(np.stack(lf))
        self.raise_index = jnp.asarray(np.stack(ri), jnp.int32 if dl < 2**31 else jnp.int64)
        self.raise_factor = jnp.asarray(np.stack(rf))
        self.d = d
        self.kind = kind

    @property
    def dim(self) -> int:
        return self.d

    @property
    def is_constant(self) -> bool:
        return True

    def __call__(self, t=0.0) -> Float[Array, "D D"]:
        return self.dense()

    def mv(self, t, x: Array) -> Array:
        """$H x$ for `x` of shape `(D,)` or `(D, n)`."""
        x = jnp.asarray(x)
        col = x.ndim == 1
        xs = x[:, None] if col else x
        z = self.lower_factor[..., None] * xs[self.lower_index]  # (K, Dl, n)
        w = matmul(self.coupling, z.reshape(z.shape[0], -1)).reshape(z.shape)
        kk = jnp.arange(w.shape[0])[:, None]
        y = jnp.sum(self.raise_factor[..., None] * w[kk, self.raise_index], axis=0)  # (D, n)
        return y[:, 0] if col else y

    def dense(self, *, memory_budget: int | None = None) -> Float[Array, "D D"]:
        """The dense matrix `(D, D)` (refused if it would not fit).

        Raises:
            MemoryError: If a `(D, D)` float64 matrix (and its products) would not fit.
        """
        check_memory(
            estimate_bytes(((3 * self.d, self.d), np.float64)),
            f"a dense shell Hamiltonian of dimension {self.d}",
            memory_budget,
            key="quanta`/`n_oscillators",
        )
        return _dense(self)

    def coo(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`(rows, cols, values)` of the nonzero entries (host NumPy, for SciPy baselines
        and tests), duplicates summed."""
        li, lf = np.asarray(self.lower_index), np.asarray(self.lower_factor)
        ri, rf = np.asarray(self.raise_index), np.asarray(self.raise_factor)
        g = np.asarray(self.coupling)
        rows, cols, vals = [], [], []
        for a in range(g.shape[0]):  # raise with op a, lower with op b
            r = np.nonzero(rf[a])[0]
            low = ri[a, r]
            for b in np.nonzero(g[a])[0]:
                rows.append(r)
                cols.append(li[b, low])
                vals.append(g[a, b] * rf[a, r] * lf[b, low])
        rows, cols, vals = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
        key = rows.astype(np.int64) * self.d + cols
        uniq, inv = np.unique(key, return_inverse=True)
        return uniq // self.d, uniq % self.d, np.bincount(inv, weights=vals)


@eqx.filter_jit
def _dense(op: ShellHamiltonian) -> Array:
    return op.mv(0.0, jnp.eye(op.d))


def _ladder(occ: np.ndarray, e: np.ndarray) -> np.ndarray:
    r"""$\langle occ - e|A|occ\rangle$ for the normalised product $A = \prod_k a_k^{e_k}
    /\sqrt{\prod_k e_k!}$ ($e$ one mode, or a pair; $a_k^2/\sqrt2$ for $e_k = 2$)."""
    f = np.ones(occ.shape[0])
    for k in np.nonzero(e)[0]:
        for j in range(int(e[k])):
            f = f * np.sqrt(np.clip(occ[:, k] - j, 0, None))
        f = f / math.sqrt(math.factorial(int(e[k])))
    return f
