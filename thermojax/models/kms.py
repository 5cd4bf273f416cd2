r"""Open systems with KMS detailed balance: Davies, Bloch–Redfield, Gaussian coarse-grained
and exact-KMS master equations, their diagnostics, and an exact finite bath.

Source: M. Scandi, Á. M. Alhambra, "Thermalization in open many-body systems and KMS
detailed balance", arXiv:2505.20064. The generator forms are reconstructed from
Chen–Kastoryano–Gilyén (CKG, arXiv:2311.09207, the exact-KMS Lindbladian with its
coherent term), Ding–Li–Lin (arXiv:2404.05998, the Gaussian-filtered Kossakowski form)
and Mozgunov–Lidar (arXiv:1908.01095, coarse graining over a time window). The
project's own account, with the derivations and the numbers, is `docs/models/kms.md`.

Units: $\hbar = k_B = 1$; energies in units of the Ising coupling $J$, times in $1/J$.

**One form for every generator.** With $H_S = \sum_i E_i|i\rangle\langle i|$ (ascending),
couplings $\lambda\sum_a A_a\otimes B_a$ to independent baths with one rate function
$\gamma(\omega)$ obeying KMS, $\gamma(-\omega) = e^{-\beta\omega}\gamma(\omega)$, and the
Bohr frequency $\nu_{ij} = E_j - E_i$ of the jump $j\to i$ (energy given to the bath):

$$
\mathcal L(\rho) = -i[H_S + \lambda^2 B, \rho] + \lambda^2\sum_a\big(\mathcal T_a(\rho)
- \tfrac12\{K_a,\rho\}\big),\qquad
(\mathcal T_a\rho)_{ik} = \sum_{jl}\alpha(\nu_{ij},\nu_{kl})\,A_{ij}\,\rho_{jl}\,\bar A_{kl},
\quad K_a = \mathcal T_a^\dagger(1).
$$

| generator | kernel $\alpha(\nu_1,\nu_2)$ | coherent term | right-hand side |
|---|---|---|---|
| `Davies` | $\gamma(\nu_1)\,\delta_{\nu_1\nu_2}$ (grouped) | 0 | $O(d^3 + P)$, $P\approx 2d^2$ |
| `BlochRedfield` | $\Gamma(\nu_1)+\bar\Gamma(\nu_2)$ | $-\tfrac i2(X - X^\dagger)$ | $O(d^3)$ |
| `CoarseGrained` | $e^{-\tau^2\Delta\nu^2/2}(\gamma * N_{s})(\bar\nu)$ | 0 | $O(R\,d^3)$ |
| `ExactKMS` | $e^{-\tau^2\Delta\nu^2/2}e^{\beta\bar\nu/2}(h * N_{s})(\bar\nu)$ | $\lambda^2B$ | $O(R\,d^3)$ |
| `UniversalLindblad` | $\sqrt{\gamma(\nu_1)\gamma(\nu_2)}$ | 0 (no Lamb shift) | $O(d^3)$ |

with $\Gamma = \gamma/2 + iS$ ($S$ the Lamb-shift function, off by default),
$B_{ij} = \tfrac i2\tanh\big(\beta(E_i-E_j)/4\big)K_{ij}$, $\Delta\nu = \nu_1-\nu_2$,
$\bar\nu = (\nu_1+\nu_2)/2$, $s = 1/(2\tau)$, $N_s$ the normal density of variance
$s^2$, $h(\omega) = e^{-\beta\omega/2}\gamma(\omega)$ (even), $X = \lambda^2\sum_a A_a(A_a\circ\Gamma)$,
and $R$ the number of jump operators after compression (about 55 per coupling at
$\tau = 1$ on the reference model, $R = 109$–110 for $N = 5$–7: independent of $N$).

**The fast Gaussian forms.** Both Gaussian kernels are integrals over frequency,
$\alpha(\nu_1,\nu_2) = \int d\omega\,c(\omega)\,\varphi(\omega,\nu_1)\varphi(\omega,\nu_2)$ with
$g(x) = (2\pi s^2)^{-1/4}e^{-x^2/(4s^2)}$ and $(c, \varphi) = (\gamma, g(\omega-\nu))$
(coarse-grained) or $(h, e^{\beta\nu/4}g(\omega-\nu))$ (exact-KMS, CKG's operator Fourier
transform with a Gaussian filter). A trapezoid rule on a grid symmetric about
$\omega = 0$ turns this into jump operators $L_k = \sqrt{c(\omega_k)\Delta\omega}\,(A\circ\Phi_k)$
in the eigenbasis; an exact re-diagonalisation of their Kossakowski matrix then keeps the
$R$ directions that matter. Because the grid is symmetric and $h$ even, the quadrature
kernel of the exact-KMS form is itself exactly KMS balanced: the fast form fixes
$\sigma_\beta$ to round-off, not only to the quadrature error.

**Conventions.** States and operators are in the basis of the Hamiltonian as given
(`basis="original"`, what `thermojax.mesolve` integrates) unless a generator is built
with `basis="eigen"`. Vectorisation is row-major as in `thermojax.lindblad`. `site = 0`
is the first spin of the chain ("site 1" of the papers).
"""

import abc
import math
from collections.abc import Callable
from typing import ClassVar, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Complex, Float, PRNGKeyArray

from .._checks import (
    check_hermitian,
    check_int,
    check_memory,
    check_positive,
    check_state,
    estimate_bytes,
    is_concrete,
)
from ..interop import to_array
from ..lindblad import AbstractGenerator, Lindbladian
from ..lindblad import spectral_gap as _dense_gap
from ..operators import matmul
from ..spectra import Eigensystem, eigh, goe_matrix
from ..thermal import gibbs_weights

__all__ = [
    "site_operator",
    "mixed_field_ising",
    "default_couplings",
    "AbstractSpectralFunction",
    "OhmicSpectrum",
    "SpectralFunction",
    "FiniteBathSpectrum",
    "check_kms",
    "smoothed_rate",
    "lamb_shift",
    "OpenSystem",
    "MasterEquation",
    "Davies",
    "BlochRedfield",
    "CoarseGrained",
    "ExactKMS",
    "UniversalLindblad",
    "KernelGenerator",
    "kernel_generator",
    "InteractionPicture",
    "GENERATORS",
    "make_generator",
    "fixed_point_error",
    "kms_residual",
    "gns_residual",
    "choi_min_eigenvalue",
    "spectral_gap",
    "dissipative_gap",
    "distance_to_davies",
    "quadrature_error",
    "liouvillian_parts",
    "FiniteBath",
    "goe_bath",
    "coupled_hamiltonian",
    "reduced_evolution",
]

Basis = Literal["original", "eigen"]

# Reference model constants (PHYSICS of arXiv:2505.20064 as restated in docs/models/kms.md)
ISING_J = 1.0
ISING_HX = 0.9045
ISING_HZ = 0.809

_PAULI = {
    "x": np.array([[0.0, 1.0], [1.0, 0.0]]),
    "y": np.array([[0.0, -1j], [1j, 0.0]]),
    "z": np.array([[1.0, 0.0], [0.0, -1.0]]),
}


# ----------------------------------------------------------------------------------
# the reference model: mixed-field Ising chain
# ----------------------------------------------------------------------------------


def _check_n_sites(n_sites, name="n_sites", n_matrices: int = 3):
    n = check_int(n_sites, name, low=1, high=40)
    d = 2**n
    check_memory(estimate_bytes(((n_matrices, d, d), jnp.float64)), f"{n_matrices} dense {d} x {d} matrices", key=name)
    return n


def site_operator(op: str | ArrayLike, site: int, n_sites: int) -> Float[Array, "d d"]:
    r"""A one-site operator on a chain of spins 1/2: $1\otimes\cdots\otimes O_{\rm site}
    \otimes\cdots\otimes 1$, dimension $d = 2^N$ (site 0 is the leftmost factor).

    Args:
        op: `"x"`, `"y"`, `"z"` (Pauli matrices) or a `(2, 2)` array.
        site: Site index in `[0, n_sites)`.
        n_sites: Number of spins $N$.

    Returns:
        The operator, shape `(2**n_sites, 2**n_sites)`.

    Raises:
        ValueError: For an unknown Pauli name, a site out of range or a bad shape.
        MemoryError: If the dense matrix would not fit.

    Example:
        >>> site_operator("z", 0, 2).diagonal().tolist()
        [1.0, 1.0, -1.0, -1.0]
    """
    n = _check_n_sites(n_sites, n_matrices=1)
    site = check_int(site, "site", low=0, high=n - 1)
    if isinstance(op, str):
        if op.lower() not in _PAULI:
            raise ValueError(f"Argument `op` must be 'x', 'y', 'z' or a (2, 2) array, got {op!r}.")
        o = _PAULI[op.lower()]
    else:
        o = np.asarray(to_array(op, "op"))
        if o.shape != (2, 2):
            raise ValueError(f"Argument `op` must have shape (2, 2), got {o.shape}.")
    if np.all(np.isreal(o)):
        o = o.real
    left, right = np.eye(2**site), np.eye(2 ** (n - site - 1))
    return jnp.asarray(np.kron(np.kron(left, o), right))


def mixed_field_ising(
    n_sites: int, J: float = ISING_J, hx: float = ISING_HX, hz: float = ISING_HZ
) -> Float[Array, "d d"]:
    r"""Mixed-field Ising chain with open ends, the reference model of arXiv:2505.20064:

    $$
    H = J\sum_{n=0}^{N-2} Z_nZ_{n+1} + h_x\sum_{n=0}^{N-1}X_n + h_z\sum_{n=0}^{N-1}Z_n,
    $$

    defaults $J = 1$, $h_x = 0.9045$, $h_z = 0.809$ (a chaotic point of the chain).

    Args:
        n_sites: Number of spins $N \ge 1$.
        J: Ising coupling (energy).
        hx: Transverse field (energy).
        hz: Longitudinal field (energy).

    Returns:
        The real symmetric Hamiltonian, shape `(2**N, 2**N)`.

    Raises:
        ValueError: If `n_sites` is not an integer in `[1, 40]`.
        MemoryError: If the dense matrices would not fit (the message names `n_sites`).

    Example:
        >>> H = mixed_field_ising(2)
        >>> H.shape, bool(jnp.allclose(H, H.T))
        ((4, 4), True)
    """
    n = _check_n_sites(n_sites)
    d = 2**n
    zdiag = 1.0 - 2.0 * ((np.arange(d)[:, None] >> (n - 1 - np.arange(n))[None, :]) & 1)  # (d, N) of +-1
    diag = hz * zdiag.sum(1)
    if n > 1:
        diag = diag + J * (zdiag[:, :-1] * zdiag[:, 1:]).sum(1)
    h = np.diag(diag)
    idx = np.arange(d)
    for k in range(n):
        h[idx, idx ^ (1 << (n - 1 - k))] += hx
    return jnp.asarray(h)


def default_couplings(n_sites: int) -> Float[Array, "2 d d"]:
    r"""The reference couplings: $X$ and $Z$ of the first site, shape `(2, d, d)`.

    Example:
        >>> default_couplings(1).tolist()
        [[[0.0, 1.0], [1.0, 0.0]], [[1.0, 0.0], [0.0, -1.0]]]
    """
    return jnp.stack([site_operator("x", 0, n_sites), site_operator("z", 0, n_sites)])


# ----------------------------------------------------------------------------------
# bath rate functions gamma(omega)
# ----------------------------------------------------------------------------------


class AbstractSpectralFunction(eqx.Module):
    r"""A bath rate function $\gamma(\omega) = \int dt\,e^{i\omega t}\langle B(t)B\rangle_\beta \ge 0$.

    $\omega > 0$ is energy given to the bath (the system relaxes downwards). Subclasses
    implement `gamma`; they must satisfy KMS, $\gamma(-\omega) = e^{-\beta\omega}\gamma(\omega)$,
    which is checked numerically on a grid of `[-omega_max, omega_max]` when an instance
    with concrete values is built (`check_kms`).

    Attributes:
        beta: Inverse temperature (1/energy).
        feature_scale: The shortest frequency scale on which $\gamma$ varies (distance to
            its nearest complex singularity, or a peak width); sets quadrature spacings.
        omega_max: $|\omega|$ beyond which $\gamma$ is negligible (Lamb-shift integrals
            and the KMS check use $[-\omega_{\max}, \omega_{\max}]$).
    """

    beta: eqx.AbstractVar[Float[Array, ""]]

    @abc.abstractmethod
    def gamma(self, omega: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
        r"""$\gamma(\omega)$, elementwise."""

    @property
    @abc.abstractmethod
    def feature_scale(self) -> float:
        """Shortest frequency scale of $\\gamma$ (energy); a Python float."""

    @property
    @abc.abstractmethod
    def omega_max(self) -> float:
        """Frequency beyond which $\\gamma$ is negligible (energy); a Python float."""

    def h(self, omega: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
        r"""$h(\omega) = e^{-\beta\omega/2}\gamma(\omega)$, even in $\omega$ under KMS."""
        omega = jnp.asarray(omega, float)
        return jnp.exp(-0.5 * self.beta * omega) * self.gamma(omega)

    def __check_init__(self):
        if is_concrete(self):
            check_kms(self)


def check_kms(
    spectrum: AbstractSpectralFunction, *, n_points: int = 201, rtol: float = 1e-8, atol: float = 1e-12
) -> float:
    r"""Check $\gamma \ge 0$ and KMS, $\gamma(-\omega) = e^{-\beta\omega}\gamma(\omega)$, on a grid.

    The grid is `n_points` frequencies in $[0, \omega_{\max}]$; the test per point is
    $|\gamma(-\omega) - e^{-\beta\omega}\gamma(\omega)| \le$ `rtol` $(\gamma(-\omega) +
    e^{-\beta\omega}\gamma(\omega)) +$ `atol` $\max\gamma$.

    Args:
        spectrum: The rate function.
        n_points: Grid points.
        rtol: Relative tolerance.
        atol: Absolute tolerance, relative to $\max\gamma$.

    Returns:
        The largest relative deviation found.

    Raises:
        ValueError: If $\gamma$ is negative, not finite, or violates KMS (the message
            names the worst frequency).

    Example:
        >>> check_kms(OhmicSpectrum()) < 1e-12
        True
    """
    w = np.linspace(0.0, float(spectrum.omega_max), n_points)
    beta = float(spectrum.beta)
    both = np.asarray(_eval(spectrum, jnp.asarray(np.concatenate([w, -w]))))
    gp, gm = both[:n_points], both[n_points:]
    if not (np.all(np.isfinite(gp)) and np.all(np.isfinite(gm))):
        raise ValueError("Argument `gamma` must be finite on [-omega_max, omega_max].")
    scale = max(float(np.max(gp)), float(np.max(gm)), 1e-300)
    if min(gp.min(), gm.min()) < -atol * scale:
        raise ValueError(f"Argument `gamma` must be >= 0 (a rate), got a minimum of {min(gp.min(), gm.min()):.3e}.")
    ref = np.exp(-beta * w) * gp
    dev = np.abs(gm - ref)
    bad = dev > rtol * (np.abs(gm) + np.abs(ref)) + atol * scale
    rel = dev / (np.abs(gm) + np.abs(ref) + atol * scale)
    if np.any(bad):
        k = int(np.argmax(np.where(bad, rel, -1.0)))
        raise ValueError(
            "Argument `gamma` violates KMS detailed balance gamma(-w) = exp(-beta w) gamma(w) at "
            f"beta = {beta:g}: at w = {w[k]:.4g}, gamma(-w) = {gm[k]:.6e} but exp(-beta w) gamma(w) = {ref[k]:.6e}."
        )
    return float(np.max(rel))


def _x_over_1mexp(x):
    """x / (1 - exp(-x)), smooth through x = 0 (value 1 + x/2 there), overflow safe."""
    small = jnp.abs(x) < 1e-6
    xs = jnp.where(small, 1.0, x)
    return jnp.where(small, 1.0 + 0.5 * x + x * x / 12.0, xs / (-jnp.expm1(-xs)))


@jax.jit
def _ohmic_gamma(eta, omega_c, beta, w):
    return 2 * jnp.pi * eta * jnp.exp(-((w / omega_c) ** 2)) * _x_over_1mexp(beta * w) / beta


class OhmicSpectrum(AbstractSpectralFunction):
    r"""Ohmic bath with a Gaussian cutoff:

    $$
    \gamma(\omega) = \frac{2\pi\eta\,\omega\,e^{-(\omega/\omega_c)^2}}{1 - e^{-\beta\omega}},
    \qquad \gamma(0) = \frac{2\pi\eta}{\beta}.
    $$

    Args:
        eta: Dimensionless coupling $\eta$ (default 0.02).
        omega_c: Cutoff frequency (energy, default 8).
        beta: Inverse temperature (default 1).

    Raises:
        ValueError: If a constant is not finite and positive.

    Example:
        >>> bath = OhmicSpectrum(eta=0.02, omega_c=8.0, beta=1.0)
        >>> round(float(bath.gamma(0.0)), 12) == round(2 * math.pi * 0.02, 12)
        True
    """

    eta: Float[Array, ""]
    omega_c: Float[Array, ""]
    beta: Float[Array, ""]

    def __init__(self, eta=0.02, omega_c=8.0, beta=1.0):
        check_positive(eta, "eta")
        check_positive(omega_c, "omega_c")
        check_positive(beta, "beta")
        self.eta = jnp.asarray(eta, float)
        self.omega_c = jnp.asarray(omega_c, float)
        self.beta = jnp.asarray(beta, float)

    def gamma(self, omega):
        return _ohmic_gamma(self.eta, self.omega_c, self.beta, jnp.asarray(omega, float))

    @property
    def feature_scale(self) -> float:
        return float(min(2 * np.pi / float(self.beta), float(self.omega_c)))

    @property
    def omega_max(self) -> float:
        return float(self.omega_c) * 6.5


class SpectralFunction(AbstractSpectralFunction):
    r"""A user-given rate function $\gamma(\omega)$, checked for KMS at construction.

    Args:
        gamma_fn: `omega -> gamma(omega)`, elementwise and JAX-traceable.
        beta: Inverse temperature the function is meant to satisfy KMS at.
        feature_scale: Shortest scale on which $\gamma$ varies (default $2\pi/\beta$,
            the distance to the poles of a thermal factor $1/(1-e^{-\beta\omega})$).
        omega_max: $|\omega|$ beyond which $\gamma$ is negligible (default 50).

    Raises:
        ValueError: If `gamma_fn` is negative or violates KMS at `beta` (`check_kms`),
            or a scale is not positive.

    Example:
        >>> f = lambda w: jnp.exp(0.5 * w - w**2 / 8)  # e^{beta w/2} x even, beta = 1
        >>> float(SpectralFunction(f, beta=1.0).gamma(0.0))
        1.0
    """

    gamma_fn: Callable = eqx.field(static=True)
    beta: Float[Array, ""]
    _feature: float = eqx.field(static=True)
    _omega_max: float = eqx.field(static=True)

    def __init__(self, gamma_fn, beta, *, feature_scale=None, omega_max=50.0):
        if not callable(gamma_fn):
            raise TypeError(
                f"Argument `gamma_fn` must be callable omega -> gamma(omega), got {type(gamma_fn).__name__}."
            )
        check_positive(beta, "beta")
        self.gamma_fn = gamma_fn
        self.beta = jnp.asarray(beta, float)
        feature = 2 * np.pi / float(beta) if feature_scale is None else float(feature_scale)
        check_positive(feature, "feature_scale")
        check_positive(omega_max, "omega_max")
        self._feature = feature
        self._omega_max = float(omega_max)

    def gamma(self, omega):
        return jnp.asarray(self.gamma_fn(jnp.asarray(omega, float)), float)

    @property
    def feature_scale(self) -> float:
        return self._feature

    @property
    def omega_max(self) -> float:
        return self._omega_max


class FiniteBathSpectrum(AbstractSpectralFunction):
    r"""Rate function of a finite bath, its delta peaks smoothed so that KMS stays exact.

    For a bath with energies $\epsilon_m$, Gibbs weights $p_m$ and coupling operator $B$,
    $\gamma(\omega) = 2\pi\sum_{mn}p_m|B_{mn}|^2\delta(\omega-\nu_{mn})$, $\nu_{mn} =
    \epsilon_n - \epsilon_m$. Writing $p_m = \sqrt{p_mp_n}\,e^{\beta\nu_{mn}/2}$ gives
    $\gamma = e^{\beta\omega/2}h$ with the *even* $h = 2\pi\sum\sqrt{p_mp_n}|B_{mn}|^2
    \delta(\omega-\nu_{mn})$. Smoothing $h$ (not $\gamma$) by a normal density of width
    $\sigma$,

    $$
    \gamma_\sigma(\omega) = e^{\beta\omega/2}\sum_k w_k\,N(\omega - \nu_k;\,\sigma^2),
    \qquad w_k = 2\pi\sqrt{p_mp_n}\,|B_{mn}|^2,
    $$

    keeps KMS exact for every $\sigma$ (smoothing $\gamma$ itself would break it at
    $O(\beta\sigma)$).

    Args:
        frequencies: Peak positions $\nu_k$, shape `(P,)`, a set symmetric under $\nu\to-\nu$.
        weights: $w_k \ge 0$, shape `(P,)`, equal on mirrored peaks.
        sigma: Smoothing width (energy).
        beta: Inverse temperature of the bath.

    Build it from a bath with `FiniteBath.spectrum`.
    """

    frequencies: Float[Array, " P"]
    weights: Float[Array, " P"]
    sigma: float = eqx.field(static=True)
    beta: Float[Array, ""]

    def __init__(self, frequencies, weights, sigma, beta):
        check_positive(sigma, "sigma")
        check_positive(beta, "beta")
        self.frequencies = jnp.asarray(frequencies, float).reshape(-1)
        self.weights = jnp.asarray(weights, float).reshape(-1)
        if self.frequencies.shape != self.weights.shape:
            raise ValueError(
                f"Arguments `frequencies` and `weights` must have the same shape, got "
                f"{self.frequencies.shape} and {self.weights.shape}."
            )
        self.sigma = float(sigma)
        self.beta = jnp.asarray(beta, float)

    def h(self, omega):
        w = jnp.asarray(omega, float)
        flat = w.reshape(-1)
        norm = 1.0 / math.sqrt(2 * math.pi * self.sigma**2)

        def one(x):
            z = (x - self.frequencies) / self.sigma
            return norm * jnp.sum(self.weights * jnp.exp(-0.5 * z * z))

        return jax.lax.map(one, flat, batch_size=64).reshape(w.shape)

    def gamma(self, omega):
        w = jnp.asarray(omega, float)
        return jnp.exp(0.5 * self.beta * w) * self.h(w)

    @property
    def feature_scale(self) -> float:
        return self.sigma

    @property
    def omega_max(self) -> float:
        return float(jnp.max(jnp.abs(self.frequencies))) + 10 * self.sigma


def smoothed_rate(
    spectrum: AbstractSpectralFunction,
    x: Float[ArrayLike, "*shape"],
    s: float,
    *,
    kind: Literal["gamma", "h"] = "gamma",
    spacing: float | None = None,
) -> Float[Array, "*shape"]:
    r"""Gaussian convolution $(c * N_s)(x) = \int d\omega\,c(\omega)\,N(\omega - x; s^2)$
    with $c = \gamma$ or $c = h$, by a trapezoid rule centred on each $x$.

    This is the reference used by the $d^4$ kernel forms: nodes $x + m\,\Delta$,
    $|m| \le \lceil 10s/\Delta\rceil$, $\Delta = \min(s/3, \text{feature}/8)$ (default),
    so its error is below $10^{-14}$ for rate functions analytic in a strip of half
    width `feature_scale` (aliasing $e^{-2\pi\,\text{feature}/\Delta}$) and the
    truncated Gaussian tail is $e^{-50}$. The nodes mirror under $x\to-x$, so for
    `kind="h"` the result is exactly even.

    Args:
        spectrum: The rate function.
        x: Points, any shape.
        s: Gaussian standard deviation ($1/(2\tau)$ for a window $\tau$).
        kind: `"gamma"` or `"h"`.
        spacing: Node spacing (default as above).

    Returns:
        The convolution at `x`, same shape.

    Example:
        >>> bath = OhmicSpectrum()
        >>> abs(float(smoothed_rate(bath, 1.0, 1e-3)) - float(bath.gamma(1.0))) < 1e-6
        True
    """
    step = min(s / 3.0, spectrum.feature_scale / 8.0) if spacing is None else float(spacing)
    m = int(math.ceil(10.0 * s / step))
    x = jnp.asarray(x, float)
    return _smoothed(spectrum, kind, x, jnp.asarray(s, float), jnp.asarray(step, float), m)


@eqx.filter_jit
def _smoothed(spectrum, kind, x, s, step, m):
    c = spectrum.gamma if kind == "gamma" else spectrum.h
    u = jnp.arange(-m, m + 1, dtype=float) * step
    wts = step * jnp.exp(-0.5 * (u / s) ** 2) / jnp.sqrt(2 * jnp.pi * s * s)
    flat = x.reshape(-1)

    def block(xb):
        return jnp.sum(c(xb[:, None] + u[None, :]) * wts[None, :], axis=1)

    n = flat.shape[0]
    bs = max(1, min(n, 2**20 // (2 * m + 1)))
    pad = (-n) % bs
    xb = jnp.concatenate([flat, jnp.zeros((pad,), float)]).reshape(-1, bs)
    out = jax.lax.map(block, xb).reshape(-1)[:n]
    return out.reshape(x.shape)


def lamb_shift(spectrum: AbstractSpectralFunction, omega: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
    r"""Lamb-shift function $S(\omega) = \frac1{2\pi}\,\mathrm{P}\!\!\int d\omega'\,
    \frac{\gamma(\omega')}{\omega-\omega'}$, the imaginary part of the one-sided transform
    $\Gamma(\omega) = \int_0^\infty dt\,e^{i\omega t}\langle B(t)B\rangle = \gamma(\omega)/2 + iS(\omega)$.

    Computed as $S(\omega) = \frac1{2\pi}\int_0^\infty du\,[\gamma(\omega-u) - \gamma(\omega+u)]/u$,
    whose integrand is even in $u$ and smooth, by the offset trapezoid rule
    $u_m = (m+\tfrac12)\Delta$ (spectrally accurate; $\Delta$ = `feature_scale`/6) up
    to $u = \omega_{\max} + |\omega|$.

    Args:
        spectrum: The rate function.
        omega: Frequencies, any shape.

    Returns:
        $S(\omega)$, same shape (energy).

    Example:
        >>> bath = OhmicSpectrum()
        >>> bool(jnp.isfinite(lamb_shift(bath, jnp.array([-1.0, 0.0, 1.0]))).all())
        True
    """
    step = spectrum.feature_scale / 6.0
    w = jnp.asarray(omega, float)
    umax = spectrum.omega_max + float(jnp.max(jnp.abs(w))) if w.size else spectrum.omega_max
    n = int(math.ceil(umax / step))
    return _lamb(spectrum, w, jnp.asarray(step, float), n)


@eqx.filter_jit
def _lamb(spectrum, w, step, n):
    u = (jnp.arange(n, dtype=float) + 0.5) * step

    def one(x):
        return jnp.sum((spectrum.gamma(x - u) - spectrum.gamma(x + u)) / u)

    return (step / (2 * jnp.pi) * jax.lax.map(one, w.reshape(-1), batch_size=256)).reshape(w.shape)


@eqx.filter_jit
def _eval(spectrum, w, kind: str = "gamma"):
    return spectrum.gamma(w) if kind == "gamma" else spectrum.h(w)


_lamb_shift = lamb_shift  # BlochRedfield's argument `lamb_shift` shadows the function


# ----------------------------------------------------------------------------------
# the open system
# ----------------------------------------------------------------------------------


class OpenSystem(eqx.Module):
    r"""A system Hamiltonian, its couplings $A_a$ to independent baths with one rate function,
    and the coupling strength $\lambda$: everything the generators share.

    Args:
        hamiltonian: Hermitian `(d, d)` array or `Qobj`, or an `Eigensystem`.
        couplings: Hermitian coupling operators, a sequence of `(d, d)` arrays/`Qobj` or
            an array `(n_a, d, d)` (original basis).
        spectrum: An `AbstractSpectralFunction` (default `OhmicSpectrum()`).
        coupling_strength: $\lambda \ge 0$.
        bohr_atol: Bohr frequencies closer than this are one frequency for the
            Davies generator (single-linkage grouping). Default $10^{-9}\,(E_{\max}-E_{\min})$:
            merging two frequencies that differ by $\delta$ perturbs detailed balance by
            about $\beta\delta$ relative.

    Raises:
        ValueError: A non-Hermitian `hamiltonian` or coupling (named `couplings[a]`),
            mismatched shapes, a negative `coupling_strength`.
        TypeError: If `spectrum` is not an `AbstractSpectralFunction`.
        MemoryError: If the dense operators would not fit.

    Example:
        >>> system = OpenSystem.ising(2)
        >>> system.dim, system.couplings.shape
        (4, (2, 4, 4))
    """

    eigensystem: Eigensystem
    couplings: Float[Array, "a d d"]
    spectrum: AbstractSpectralFunction
    coupling_strength: Float[Array, ""]
    bohr_atol: float = eqx.field(static=True)

    def __init__(self, hamiltonian, couplings, spectrum=None, coupling_strength=1.0, *, bohr_atol=None):
        if isinstance(hamiltonian, Eigensystem):
            es = hamiltonian
        else:
            h = to_array(hamiltonian, "hamiltonian")
            if h.ndim != 2 or h.shape[0] != h.shape[1]:
                raise ValueError(f"Argument `hamiltonian` must be a square matrix (d, d), got shape {h.shape}.")
            check_memory(estimate_bytes(((6, *h.shape), jnp.complex128)), f"open system of dimension {h.shape[0]}")
            es = eigh(h, name="hamiltonian")
        d = es.dim
        ops = to_array(couplings, "couplings")
        if ops.ndim == 2:
            ops = ops[None]
        if ops.ndim != 3 or ops.shape[1:] != (d, d) or ops.shape[0] < 1:
            raise ValueError(f"Argument `couplings` must have shape (n_a, {d}, {d}) with n_a >= 1, got {ops.shape}.")
        for a in range(ops.shape[0]):
            check_hermitian(ops[a], f"couplings[{a}]")
        if spectrum is None:
            spectrum = OhmicSpectrum()
        if not isinstance(spectrum, AbstractSpectralFunction):
            raise TypeError(
                "Argument `spectrum` must be an AbstractSpectralFunction (OhmicSpectrum, SpectralFunction, "
                f"FiniteBathSpectrum), got {type(spectrum).__name__}; wrap a callable in SpectralFunction(fn, beta)."
            )
        check_positive(coupling_strength, "coupling_strength", allow_zero=True)
        ops_eig = es.op_to_eigenbasis(ops.astype(jnp.result_type(ops.dtype, es.vectors.dtype)))
        if not jnp.iscomplexobj(es.vectors) and not jnp.iscomplexobj(ops):
            ops_eig = ops_eig.real
        self.eigensystem = es
        self.couplings = ops_eig
        self.spectrum = spectrum
        self.coupling_strength = jnp.asarray(coupling_strength, float)
        if bohr_atol is None:
            e = np.asarray(es.energies)
            bohr_atol = 1e-9 * max(float(e[-1] - e[0]), 1e-300)
        self.bohr_atol = float(bohr_atol)

    @classmethod
    def ising(
        cls,
        n_sites: int,
        *,
        beta: float = 1.0,
        eta: float = 0.02,
        omega_c: float = 8.0,
        coupling_strength: float = 1.0,
        J: float = ISING_J,
        hx: float = ISING_HX,
        hz: float = ISING_HZ,
    ) -> "OpenSystem":
        r"""The reference model: `mixed_field_ising(n_sites)` with $X$ and $Z$ of the first
        site coupled to an `OhmicSpectrum(eta, omega_c, beta)`."""
        return cls(
            mixed_field_ising(n_sites, J, hx, hz),
            default_couplings(n_sites),
            OhmicSpectrum(eta, omega_c, beta),
            coupling_strength,
        )

    @property
    def dim(self) -> int:
        """Hilbert-space dimension `d`."""
        return self.eigensystem.dim

    @property
    def n_couplings(self) -> int:
        """Number of coupling operators."""
        return self.couplings.shape[0]

    @property
    def beta(self) -> Float[Array, ""]:
        """Inverse temperature of the bath."""
        return self.spectrum.beta

    @property
    def energies(self) -> Float[Array, " d"]:
        """Ascending energies $E_i$."""
        return self.eigensystem.energies

    def bohr_frequencies(self) -> Float[Array, "d d"]:
        r"""$\nu_{ij} = E_j - E_i$, the energy given to the bath by the jump $j\to i$."""
        e = self.energies
        return e[None, :] - e[:, None]

    def gibbs_weights(self) -> Float[Array, " d"]:
        r"""Gibbs populations $p_i = e^{-\beta E_i}/Z$ in the eigenbasis."""
        return gibbs_weights(self.energies, self.beta)

    def to_basis(self, op_eig: Array, basis: Basis) -> Array:
        """An operator given in the eigenbasis, expressed in `basis`."""
        _check_basis(basis)
        if basis == "eigen":
            return op_eig
        out = self.eigensystem.op_from_eigenbasis(op_eig)
        return out.real if not jnp.iscomplexobj(op_eig) and not jnp.iscomplexobj(self.eigensystem.vectors) else out

    def from_basis(self, op: Array, basis: Basis) -> Array:
        """An operator given in `basis`, expressed in the eigenbasis."""
        _check_basis(basis)
        return op if basis == "eigen" else self.eigensystem.op_to_eigenbasis(op)

    def hamiltonian(self, basis: Basis = "original") -> Array:
        """$H_S$ in `basis`."""
        return self.to_basis(jnp.diag(self.energies).astype(self.eigensystem.vectors.dtype), basis)

    def coupling_ops(self, basis: Basis = "original") -> Array:
        """The couplings $A_a$ in `basis`, shape `(n_a, d, d)`."""
        return self.to_basis(self.couplings, basis)

    def gibbs_state(self, basis: Basis = "original") -> Complex[Array, "d d"]:
        r"""$\sigma_\beta = e^{-\beta H_S}/Z$ in `basis`."""
        return self.to_basis(jnp.diag(self.gibbs_weights()).astype(complex), basis)


def _check_basis(basis):
    if basis not in ("original", "eigen"):
        raise ValueError(f"Argument `basis` must be 'original' or 'eigen', got {basis!r}.")


# ----------------------------------------------------------------------------------
# generators: the shared base class
# ----------------------------------------------------------------------------------


def _commutator_h(h, rho):
    return -1j * (matmul(h, rho) - matmul(rho, h))


def _sandwich_sum(jump, rho):
    r"""$\sum_r L_r\rho L_r^\dagger$ for a stack `(R, d, d)` (real stacks stay real)."""
    lr = matmul(jump, rho)
    return jnp.sum(matmul(lr, jnp.conj(jnp.swapaxes(jump, -1, -2))), axis=0)


class MasterEquation(AbstractGenerator):
    r"""A weak-coupling master equation on an `OpenSystem` (abstract).

    Every subclass is a `thermojax.lindblad.AbstractGenerator`, so
    `thermojax.mesolve(generator, [], rho0, tsave)` integrates it and the Lindblad
    layer's dense tools (`liouvillian`, `stationary_state`, ...) apply. Each also
    offers its reference $d^4$ kernel form (`kernel_form`), its kernel
    $\alpha(\nu_1,\nu_2)$ on all pairs of Bohr frequencies (`kernel`), and where a
    Lindblad form exists its jump operators (`jump_ops`, $\lambda$ absorbed), its
    Hamiltonian $H_S + \lambda^2B$ (`hamiltonian`) and a core
    `thermojax.lindblad.Lindbladian` (`lindbladian`).

    States are in the generator's `basis` ("original": the basis of the Hamiltonian
    as given; "eigen": its eigenbasis).
    """

    system: eqx.AbstractVar[OpenSystem]
    basis: eqx.AbstractVar[str]
    name: ClassVar[str] = "generator"

    @property
    def dim(self) -> int:
        return self.system.dim

    @abc.abstractmethod
    def kernel(self) -> Array:
        r"""Reference kernel $\alpha(\nu_{ij},\nu_{kl})$ on all pairs, shape `(n_a, d*d, d*d)`
        (index $(i,j)$ row-major; eigenbasis). Memory $n_a d^4$."""

    def _kernel_coherent(self, k_total: Array) -> Array:
        r"""Coherent term of the kernel form in the eigenbasis ($\lambda^2$ included), given
        $\lambda^2\sum_aK_a$ of the kernel form."""
        return jnp.zeros((self.dim, self.dim), complex)

    def kernel_form(self) -> "KernelGenerator":
        r"""The same generator evaluated by the $O(d^4)$ kernel sum (the reference for the
        fast right-hand sides), as a `KernelGenerator` in this generator's basis.

        Raises:
            MemoryError: If the $d^4$ arrays would not fit.
        """
        d = self.dim
        n_a = self.system.n_couplings
        check_memory(estimate_bytes(((n_a + 3, d * d, d * d), jnp.complex128)), f"d^4 kernel form of d = {d}")
        choi, k_total = _choi_tensor(self.system, self.kernel(), self.system.coupling_strength**2)
        return KernelGenerator(
            self.system, choi, k_total, self._kernel_coherent(k_total), self.basis, name=f"{self.name} (kernel)"
        )

    def jump_ops(self) -> Array:
        """Jump operators `(K, d, d)` in `basis` with $\\lambda$ absorbed.

        Raises:
            TypeError: If the generator has no Lindblad form (Bloch–Redfield).
        """
        raise TypeError(f"The {self.name} generator has no Lindblad form, hence no jump operators.")

    def hamiltonian(self) -> Array:
        r"""The Hamiltonian of the Lindblad form, $H_S + \lambda^2B$, in `basis`.

        Raises:
            TypeError: If the generator has no Lindblad form (Bloch–Redfield).
        """
        raise TypeError(f"The {self.name} generator has no Lindblad form.")

    def lindbladian(self) -> Lindbladian:
        """This generator as a core `thermojax.lindblad.Lindbladian` (same basis).

        Raises:
            TypeError: If the generator has no Lindblad form (Bloch–Redfield).
        """
        return Lindbladian(self.hamiltonian(), self.jump_ops())

    def liouvillian(self, t=0.0):
        d = self.dim
        check_memory(estimate_bytes(((2, d * d, d * d), jnp.complex128)), f"dense Liouvillian, d = {d}")
        return _jit_liouvillian(self)

    def dissipator(self, rho: Complex[Array, "d d"]) -> Complex[Array, "d d"]:
        r"""$\mathcal D(\rho) = \mathcal L(\rho) + i[H_S,\rho]$: everything but the system
        Hamiltonian (the coherent $\lambda^2B$ or Lamb-shift terms included)."""
        h = self.system.hamiltonian(self.basis)
        return self.rhs(0.0, rho) - _commutator_h(h, rho)


@eqx.filter_jit
def _jit_liouvillian(gen):
    d = gen.dim
    basis = jnp.eye(d * d, dtype=complex).reshape(d * d, d, d)
    return jax.vmap(lambda e: gen.rhs(0.0, e).reshape(d * d))(basis).T


@eqx.filter_jit
def _choi_tensor(system, alpha, lam2):
    d = system.dim
    n_a = system.n_couplings
    a_flat = system.couplings.reshape(n_a, d * d).astype(complex)
    choi = lam2 * jnp.einsum("aIJ,aI,aJ->IJ", alpha, a_flat, jnp.conj(a_flat)).reshape(d, d, d, d)
    return choi, jnp.einsum("ilij->jl", choi)


class KernelGenerator(AbstractGenerator):
    r"""A generator in the reference kernel form, $O(d^4)$ per call:

    $$
    \mathcal L(\rho) = -i[H_S + H_c, \rho] + \sum_{ijkl}C_{ijkl}\,\rho_{jl}\,|i\rangle\langle k|
    - \tfrac12\{K,\rho\},\quad C_{ijkl} = \lambda^2\sum_a\alpha_a(\nu_{ij},\nu_{kl})A_{a,ij}\bar A_{a,kl},
    $$

    all in the eigenbasis ($C$ is the Choi/Kossakowski tensor of the jump part,
    $K_{jl} = \sum_i C_{ilij}$). Build it with `MasterEquation.kernel_form`.

    Attributes:
        system: The `OpenSystem`.
        choi: $C$, shape `(d, d, d, d)`.
        k_total: $K$, shape `(d, d)`.
        coherent: $H_c$ in the eigenbasis, shape `(d, d)`.
        basis: Basis of the states.
    """

    system: OpenSystem
    choi: Complex[Array, "d d d d"]
    k_total: Complex[Array, "d d"]
    coherent: Complex[Array, "d d"]
    basis: str = eqx.field(static=True)
    name: str = eqx.field(static=True, default="kernel")

    @property
    def dim(self) -> int:
        return self.system.dim

    def rhs(self, t, rho):
        r = self.system.from_basis(rho, self.basis)
        h = jnp.diag(self.system.energies).astype(complex) + self.coherent
        out = _commutator_h(h, r) + jnp.einsum("ijkl,jl->ik", self.choi, r)
        out = out - 0.5 * (self.k_total @ r + r @ self.k_total)
        return self.system.to_basis(out, self.basis)

    def liouvillian(self, t=0.0):
        d = self.dim
        check_memory(estimate_bytes(((3, d * d, d * d), jnp.complex128)), f"dense Liouvillian, d = {d}")
        return _kernel_liouvillian(self)


@eqx.filter_jit
def _kernel_liouvillian(gen):
    d = gen.dim
    eye = jnp.eye(d, dtype=complex)
    h = jnp.diag(gen.system.energies).astype(complex) + gen.coherent
    big = -1j * (jnp.kron(h, eye) - jnp.kron(eye, h.T))
    big = big + jnp.transpose(gen.choi, (0, 2, 1, 3)).reshape(d * d, d * d)
    big = big - 0.5 * (jnp.kron(gen.k_total, eye) + jnp.kron(eye, gen.k_total.T))
    if gen.basis == "eigen":
        return big
    v = gen.system.eigensystem.vectors.astype(complex)
    s = jnp.kron(v, jnp.conj(v))  # vec(V X V^dagger) = (V kron conj V) vec X
    return s @ big @ jnp.conj(s.T)


# ----------------------------------------------------------------------------------
# Davies (secular)
# ----------------------------------------------------------------------------------


def _bohr_groups(system: OpenSystem):
    """Group labels of the Bohr frequencies (flat, row-major (i, j)) and the group means,
    single linkage at `system.bohr_atol`, exactly antisymmetric under (i, j) -> (j, i)."""
    nu = np.asarray(system.bohr_frequencies()).reshape(-1)
    d = system.dim
    order = np.argsort(nu, kind="stable")
    srt = nu[order]
    lab_sorted = np.concatenate([[0], np.cumsum(np.diff(srt) > system.bohr_atol)])
    labels = np.empty_like(lab_sorted)
    labels[order] = lab_sorted
    n_groups = int(lab_sorted[-1]) + 1
    means = np.bincount(labels, weights=nu, minlength=n_groups) / np.bincount(labels, minlength=n_groups)
    mirror_elem = np.arange(d * d).reshape(d, d).T.reshape(-1)
    mirror = np.empty(n_groups, dtype=np.int64)
    mirror[labels] = labels[mirror_elem]
    means = 0.5 * (means - means[mirror])
    return labels, means


class Davies(MasterEquation):
    r"""Davies (secular, rotating-wave) generator: kernel $\gamma(\nu_1)\delta_{\nu_1\nu_2}$.

    $$
    \mathcal L(\rho) = -i[H_S,\rho] + \lambda^2\sum_a\sum_\nu\gamma(\nu)\big(A_{a,\nu}\rho A_{a,\nu}^\dagger
    - \tfrac12\{A_{a,\nu}^\dagger A_{a,\nu},\rho\}\big),\quad
    A_\nu = \sum_{E_j - E_i = \nu}|i\rangle\langle i|A|j\rangle\langle j|.
    $$

    Bohr frequencies closer than `system.bohr_atol` are one frequency $\nu$ (their mean;
    single-linkage grouping, exactly symmetric under $\nu\to-\nu$). GNS and KMS
    detailed balanced; the Lamb shift is omitted. The right-hand side works in the
    eigenbasis on the $P = \sum_\nu n_\nu^2$ pairs of matrix elements that share a
    frequency ($P \approx 2d^2$ for a spectrum without degenerate gaps; $d^4$ at worst),
    at $O(d^3 + P)$ per call.

    Args:
        system: The `OpenSystem`.
        basis: `"original"` (default) or `"eigen"`.

    Raises:
        MemoryError: If the pair list would not fit.

    Example:
        >>> gen = Davies(OpenSystem.ising(2))
        >>> float(fixed_point_error(gen)) < 1e-12
        True
    """

    system: OpenSystem
    basis: str = eqx.field(static=True)
    out_idx: Array
    in_idx: Array
    coef: Array
    k_sum: Array
    rates: Float[Array, " G"]
    frequencies: Float[Array, " G"]
    labels: Array
    name: ClassVar[str] = "davies"

    def __init__(self, system: OpenSystem, basis: Basis = "original"):
        _check_basis(basis)
        d = system.dim
        labels, means = _bohr_groups(system)
        sizes = np.bincount(labels)
        n_pairs = int(np.sum(sizes.astype(np.int64) ** 2))
        check_memory(estimate_bytes(((n_pairs, 4), np.float64)), f"Davies pair list ({n_pairs} pairs)")
        members = np.argsort(labels, kind="stable")
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        counts = sizes[labels]
        left = np.repeat(np.arange(d * d), counts)
        offset = np.arange(n_pairs) - np.repeat(np.cumsum(counts) - counts, counts)
        right = members[starts[labels[left]] + offset]
        rates = np.asarray(_eval(system.spectrum, jnp.asarray(means)))
        a = np.asarray(system.couplings).reshape(system.n_couplings, d * d)
        coef = rates[labels[left]] * np.sum(a[:, left] * np.conj(a[:, right]), axis=0)
        i, j = np.divmod(left, d)
        k, m = np.divmod(right, d)
        out_idx = i * d + k
        order = np.argsort(out_idx, kind="stable")
        ksum = np.zeros((d, d), dtype=coef.dtype)
        diag = i == k
        np.add.at(ksum, (j[diag], m[diag]), np.conj(coef[diag]))
        self.system = system
        self.basis = basis
        self.out_idx = jnp.asarray(out_idx[order], jnp.int32)
        self.in_idx = jnp.asarray((j * d + m)[order], jnp.int32)
        self.coef = jnp.asarray(coef[order])
        self.k_sum = jnp.asarray(ksum)
        self.rates = jnp.asarray(rates)
        self.frequencies = jnp.asarray(means)
        self.labels = jnp.asarray(labels, jnp.int32)

    def _rhs_eig(self, r):
        d = self.dim
        lam2 = self.system.coupling_strength**2
        e = self.system.energies
        out = -1j * (e[:, None] - e[None, :]) * r
        jump = jax.ops.segment_sum(self.coef * r.reshape(-1)[self.in_idx], self.out_idx, d * d, indices_are_sorted=True)
        out = out + lam2 * (jump.reshape(d, d) - 0.5 * (matmul(self.k_sum, r) + matmul(r, self.k_sum)))
        return out

    def rhs(self, t, rho):
        r = self.system.from_basis(rho, self.basis)
        return self.system.to_basis(self._rhs_eig(r), self.basis)

    def kernel(self):
        lab = self.labels
        same = lab[:, None] == lab[None, :]
        rate = self.rates[lab]
        return jnp.broadcast_to(jnp.where(same, rate[:, None], 0.0), (self.system.n_couplings,) + same.shape)

    def jump_ops(self):
        d = self.dim
        g = int(self.rates.shape[0])
        n_a = self.system.n_couplings
        check_memory(estimate_bytes(((n_a * g, d, d), jnp.complex128)), f"{n_a * g} Davies jump operators of d = {d}")
        lab = np.asarray(self.labels).reshape(d, d)
        onehot = jnp.asarray(lab[None, :, :] == np.arange(g)[:, None, None])  # (G, d, d)
        lam = self.system.coupling_strength
        amp = lam * jnp.sqrt(self.rates)[:, None, None]
        ops = amp[None] * jnp.where(onehot[None], self.system.couplings[:, None], 0.0)  # (a, G, d, d)
        ops = ops.reshape(n_a * g, d, d)
        keep = np.asarray(jnp.max(jnp.abs(ops), axis=(1, 2)) > 0)
        return self.system.to_basis(ops[keep], self.basis)

    def hamiltonian(self):
        return self.system.hamiltonian(self.basis)


# ----------------------------------------------------------------------------------
# Bloch-Redfield
# ----------------------------------------------------------------------------------


class BlochRedfield(MasterEquation):
    r"""Bloch–Redfield generator (Born–Markov without the secular approximation):

    $$
    \mathcal L(\rho) = -i[H_S,\rho] + \lambda^2\sum_a\big(\tilde A_a\rho A_a + A_a\rho\tilde A_a^\dagger
    - A_a\tilde A_a\rho - \rho\tilde A_a^\dagger A_a\big),\qquad
    (\tilde A_a)_{ij} = \Gamma(\nu_{ij})\,A_{a,ij}\ \text{(eigenbasis)},
    $$

    with $\Gamma(\omega) = \gamma(\omega)/2 + iS(\omega)$ the one-sided transform
    ($S$ = `lamb_shift`; `lamb_shift=False`, the default, keeps $\Gamma = \gamma/2$,
    as QuTiP's `brmesolve` does). In the shared kernel form this is
    $\alpha = \Gamma(\nu_1) + \bar\Gamma(\nu_2)$ plus the coherent term
    $H_c = -\tfrac i2(X - X^\dagger)$, $X = \lambda^2\sum_aA_a\tilde A_a$: the real part of
    $\Gamma$ alone already produces a Hamiltonian correction, so the kernel with $B = 0$
    is *not* the Redfield equation. Its kernel factorises, so the right-hand side is
    $O(d^3)$ (three products per coupling for Hermitian $\rho$). Not completely
    positive in general (`choi_min_eigenvalue` < 0); no Lindblad form.

    Args:
        system: The `OpenSystem`.
        lamb_shift: Include the imaginary part $S$ of $\Gamma$ (default `False`).
        basis: `"original"` (default) or `"eigen"`.

    Example:
        >>> gen = BlochRedfield(OpenSystem.ising(2))
        >>> float(choi_min_eigenvalue(gen)) < 0
        True
    """

    system: OpenSystem
    basis: str = eqx.field(static=True)
    lamb: bool = eqx.field(static=True)
    gamma_c: Complex[Array, "d d"]
    a_ops: Array
    a_tilde: Array
    x_sum: Array
    h: Array
    name: ClassVar[str] = "redfield"

    def __init__(self, system: OpenSystem, lamb_shift: bool = False, basis: Basis = "original"):
        _check_basis(basis)
        nu = system.bohr_frequencies()
        big_gamma = 0.5 * system.spectrum.gamma(nu).astype(complex)
        if lamb_shift:
            big_gamma = big_gamma + 1j * _lamb_shift(system.spectrum, nu)
        a_eig = system.couplings.astype(complex)
        at_eig = a_eig * big_gamma[None]
        self.system = system
        self.basis = basis
        self.lamb = bool(lamb_shift)
        self.gamma_c = big_gamma
        self.a_ops = system.to_basis(system.couplings, basis)
        self.a_tilde = system.to_basis(at_eig, basis)
        self.x_sum = jnp.sum(matmul(self.a_ops, self.a_tilde), axis=0)
        self.h = system.hamiltonian(basis)

    def rhs(self, t, rho):
        lam2 = self.system.coupling_strength**2
        at_rho = matmul(self.a_tilde, rho)
        jump = jnp.sum(matmul(at_rho, self.a_ops), axis=0)
        jump = jump + jnp.sum(matmul(matmul(self.a_ops, rho), jnp.conj(jnp.swapaxes(self.a_tilde, -1, -2))), axis=0)
        xr = matmul(self.x_sum, rho) + matmul(rho, jnp.conj(self.x_sum.T))
        return _commutator_h(self.h, rho) + lam2 * (jump - xr)

    def rhs_hermitian(self, t, rho):
        lam2 = self.system.coupling_strength**2
        a = -1j * matmul(self.h, rho)
        a = a + lam2 * (jnp.sum(matmul(matmul(self.a_tilde, rho), self.a_ops), axis=0) - matmul(self.x_sum, rho))
        return a + jnp.conj(a.T)

    def kernel(self):
        g = self.gamma_c.reshape(-1)
        al = g[:, None] + jnp.conj(g)[None, :]
        return jnp.broadcast_to(al, (self.system.n_couplings,) + al.shape)

    def _kernel_coherent(self, k_total):
        lam2 = self.system.coupling_strength**2
        a = self.system.couplings.astype(complex)
        x = lam2 * jnp.sum(matmul(a, a * self.gamma_c[None]), axis=0)
        return -0.5j * (x - jnp.conj(x.T))


# ----------------------------------------------------------------------------------
# Lindblad forms: coarse-grained, exact-KMS, universal Lindblad equation
# ----------------------------------------------------------------------------------


class _LindbladForm(MasterEquation):
    """A generator given by jump operators and a Hamiltonian (both in `basis`), with an
    $O(R d^3)$ right-hand side that keeps real jump operators real."""

    system: eqx.AbstractVar[OpenSystem]
    basis: eqx.AbstractVar[str]
    h: eqx.AbstractVar[Array]
    jump: eqx.AbstractVar[Array]
    k_sum: eqx.AbstractVar[Array]

    def rhs(self, t, rho):
        out = _commutator_h(self.h, rho) - 0.5 * (matmul(self.k_sum, rho) + matmul(rho, self.k_sum))
        return out + _sandwich_sum(self.jump, rho)

    def rhs_hermitian(self, t, rho):
        a = -1j * matmul(self.h, rho) - 0.5 * matmul(self.k_sum, rho) + 0.5 * _sandwich_sum(self.jump, rho)
        return a + jnp.conj(a.T)

    def jump_ops(self):
        return self.jump

    def hamiltonian(self):
        return self.h

    @property
    def n_jump(self) -> int:
        """Number of jump operators $R$."""
        return int(self.jump.shape[0])


@eqx.filter_jit
def _finish_lindblad(system, jump_eig, coherent_fn, basis):
    """(h, jump, k_sum, coherent_eig) in `basis` from unit-coupling jump operators in the
    eigenbasis; `coherent_fn(system, K_eig)` gives the coherent term per unit lambda^2."""
    lam = system.coupling_strength
    k_eig = jnp.einsum("rji,rjk->ik", jnp.conj(jump_eig), jump_eig)
    coherent = lam**2 * coherent_fn(system, k_eig)
    jump = lam * system.to_basis(jump_eig, basis)
    k_sum = lam**2 * system.to_basis(k_eig, basis)
    h = system.hamiltonian(basis) + system.to_basis(coherent, basis)
    return h, jump, k_sum, coherent


def _no_coherent(system, k_eig):
    return jnp.zeros_like(k_eig)


class UniversalLindblad(_LindbladForm):
    r"""Universal Lindblad equation (Nathan–Rudner, arXiv:2004.01469) without its Lamb shift:
    one jump operator per coupling, $L_a = \lambda\,A_a\circ\sqrt{\gamma(\nu)}$ in the
    eigenbasis, i.e. kernel $\alpha = \sqrt{\gamma(\nu_1)\gamma(\nu_2)}$. Completely
    positive; neither GNS nor KMS balanced. $O(d^3)$ per call.

    Args:
        system: The `OpenSystem`.
        basis: `"original"` (default) or `"eigen"`.
    """

    system: OpenSystem
    basis: str = eqx.field(static=True)
    h: Array
    jump: Array
    k_sum: Array
    name: ClassVar[str] = "ule"

    def __init__(self, system: OpenSystem, basis: Basis = "original"):
        _check_basis(basis)
        root = jnp.sqrt(system.spectrum.gamma(system.bohr_frequencies()))
        jump_eig = system.couplings * root[None]
        self.system = system
        self.basis = basis
        self.h, self.jump, self.k_sum, _ = _finish_lindblad(system, jump_eig, _no_coherent, basis)

    def kernel(self):
        g = jnp.sqrt(self.system.spectrum.gamma(self.system.bohr_frequencies())).reshape(-1)
        al = g[:, None] * g[None, :]
        return jnp.broadcast_to(al, (self.system.n_couplings,) + al.shape)


def _filter(kind: str, omega, nu, s: float, beta):
    r"""$\varphi(\omega,\nu) = g(\omega-\nu)$ (coarse-grained) or $e^{\beta\nu/4}g(\omega-\nu)$ (exact-KMS)."""
    g = (2 * math.pi * s * s) ** -0.25 * jnp.exp(-((omega - nu) ** 2) / (4 * s * s))
    return g * jnp.exp(0.25 * beta * nu) if kind == "exact_kms" else g


def _bucket(n: int, low: int = 64) -> int:
    """`n` rounded up to a power of two >= `low` (fewer distinct shapes, fewer compilations)."""
    return max(low, 1 << max(0, int(n) - 1).bit_length())


def _frequency_nodes(system: OpenSystem, s: float, kind: str, spacing: float | None, cutoff: float):
    """Symmetric trapezoid nodes, weights `step * c(omega)`, and the spacing; nodes whose
    largest possible contribution to any kernel entry is below `cutoff` x the largest are
    dropped. Returned padded (zero weights) to a multiple of 64 nodes."""
    spec = system.spectrum
    beta = float(system.beta)
    numax = float(np.max(np.abs(np.asarray(system.bohr_frequencies()))))
    step = min(s / 2.0, spec.feature_scale / 5.0) if spacing is None else float(spacing)
    m = int(math.ceil((numax + 9.0 * s) / step))
    w = np.arange(-m, m + 1) * step
    wpad = np.concatenate([w, np.zeros(_bucket(w.size) - w.size)])
    c = np.asarray(_eval(spec, jnp.asarray(wpad), "gamma" if kind == "coarse_grained" else "h"))[: w.size]
    b = step * np.clip(c, 0.0, None)
    if kind == "coarse_grained":
        nu_star = np.clip(w, -numax, numax)
        logphi2 = -((w - nu_star) ** 2) / (2 * s * s)
    else:
        nu_star = np.clip(w + 0.5 * beta * s * s, -numax, numax)
        logphi2 = 0.5 * beta * nu_star - (w - nu_star) ** 2 / (2 * s * s)
    with np.errstate(divide="ignore"):
        bound = np.log(np.where(b > 0, b, 1e-300)) + logphi2
    keep = bound > np.max(bound) + math.log(cutoff)
    w, b = w[keep], b[keep]
    n = _bucket(w.size)
    return np.pad(w, (0, n - w.size)), np.pad(b, (0, n - w.size)), step, int(keep.sum()), int(keep.size)


def _row_blocks(n: int, width: int, budget: int = 2**22) -> int:
    return max(1, min(n, budget // max(width, 1)))


@eqx.filter_jit
def _gram(nu_b, wt_b, w, sqrt_b, s, beta, kind):
    def gram_block(carry, xs):
        nb, wb = xs
        f = _filter(kind, w[None, :], nb[:, None], s, beta)  # (B, K)
        return carry + jnp.einsum("ab,bk,bl->akl", wb, f, f), None

    n_a = wt_b.shape[1]
    gram, _ = jax.lax.scan(gram_block, jnp.zeros((n_a, w.shape[0], w.shape[0])), (nu_b, wt_b))
    return gram * sqrt_b[None, :, None] * sqrt_b[None, None, :]


@eqx.filter_jit
def _kossakowski(nu_b, w, b, s, beta, kind):
    f = jax.vmap(lambda nb: _filter(kind, w[None, :], nb[:, None], s, beta))(nu_b).reshape(-1, w.shape[0])
    return (f * b[None, :]) @ f.T


@eqx.filter_jit
def _filtered_ops(nu_b, w, cm, s, beta, kind, a_row):
    d2 = a_row.shape[0]
    psi = jax.lax.map(lambda nb: _filter(kind, w[None, :], nb[:, None], s, beta) @ cm, nu_b)
    return a_row[None, :] * psi.reshape(-1, cm.shape[1])[:d2].T  # (R, d*d)


def _gaussian_jumps(system, tau, kind, spacing, compress, cutoff):
    r"""Unit-coupling jump operators `(R, d, d)` (eigenbasis) of a Gaussian kernel, by the
    trapezoid rule in $\omega$ and (if `compress`) an exact re-diagonalisation of the
    Kossakowski matrix that keeps eigenvalues above `compress` x the largest."""
    d = system.dim
    n_a = system.n_couplings
    s_float = 1.0 / (2.0 * float(tau))
    s = jnp.asarray(s_float)
    beta = system.beta
    w, b, step, n_nodes, n_grid = _frequency_nodes(system, s_float, kind, spacing, cutoff)
    k = w.size
    nu = system.bohr_frequencies().reshape(-1)
    a_flat = system.couplings.reshape(n_a, d * d)
    bs = _row_blocks(d * d, k)
    pad = (-(d * d)) % bs
    nu_b = jnp.concatenate([nu, jnp.zeros((pad,))]).reshape(-1, bs)
    wj = jnp.asarray(w)
    sqrt_b = np.sqrt(b)
    if compress and d * d < n_nodes:
        # fewer Bohr pairs than nodes: diagonalise the (d^2, d^2) Kossakowski matrix directly
        kern = np.asarray(_kossakowski(nu_b, wj, jnp.asarray(b), s, beta, kind))[: d * d, : d * d]
        a_np = np.asarray(a_flat)
        jumps = []
        for a in range(n_a):
            kos = a_np[a][:, None] * kern * np.conj(a_np[a])[None, :]
            lam, vec = np.linalg.eigh(0.5 * (kos + np.conj(kos.T)))
            sel = lam > compress * lam[-1] if lam[-1] > 0 else np.zeros(lam.size, bool)
            jumps.append((vec[:, sel] * np.sqrt(lam[sel])[None, :]).T)
        jump = jnp.asarray(np.concatenate(jumps, axis=0).reshape(-1, d, d))
        return jump, {"n_nodes": n_nodes, "n_grid": n_grid, "spacing": float(step)}
    if compress:
        wt = jnp.concatenate([jnp.abs(a_flat) ** 2, jnp.zeros((n_a, pad))], axis=1)
        gram = _gram(nu_b, jnp.moveaxis(wt.reshape(n_a, -1, bs), 1, 0), wj, jnp.asarray(sqrt_b), s, beta, kind)
        lam, vec = np.linalg.eigh(np.asarray(gram))
        coeffs = []
        for a in range(n_a):
            top = lam[a, -1]
            sel = lam[a] > compress * top if top > 0 else np.zeros(k, bool)
            coeffs.append(sqrt_b[:, None] * vec[a][:, sel])
    else:
        coeffs = [np.diag(sqrt_b)[:, :n_nodes]] * n_a
    jumps = []
    for a in range(n_a):
        r = coeffs[a].shape[1]
        if r == 0:
            continue
        check_memory(estimate_bytes(((r, d, d), jnp.complex128)), f"{r} jump operators of d = {d}", key="tau")
        cm = np.pad(coeffs[a], ((0, 0), (0, _bucket(r, 16) - r)))
        ops = _filtered_ops(nu_b, wj, jnp.asarray(cm), s, beta, kind, a_flat[a])
        jumps.append(np.asarray(ops)[:r])
    jump = jnp.asarray(np.concatenate(jumps, axis=0).reshape(-1, d, d))
    return jump, {"n_nodes": n_nodes, "n_grid": n_grid, "spacing": float(step)}


def _gaussian_rate(system, tau, kind, mean):
    r"""$(\gamma * N_s)(\bar\nu)$ (coarse-grained) or $e^{\beta\bar\nu/2}(h * N_s)(\bar\nu)$ (exact-KMS)."""
    s = 0.5 / float(tau)
    if kind == "coarse_grained":
        return smoothed_rate(system.spectrum, mean, s, kind="gamma")
    return jnp.exp(0.5 * system.beta * mean) * smoothed_rate(system.spectrum, mean, s, kind="h")


def _gaussian_kernel(system, tau, kind):
    nu = system.bohr_frequencies().reshape(-1)
    mean = 0.5 * (nu[:, None] + nu[None, :])
    al = jnp.exp(-0.5 * (tau * (nu[:, None] - nu[None, :])) ** 2) * _gaussian_rate(system, tau, kind, mean)
    return jnp.broadcast_to(al, (system.n_couplings,) + al.shape)


class _GaussianForm(_LindbladForm):
    """Shared construction of the two Gaussian-filtered Lindblad forms."""

    system: eqx.AbstractVar[OpenSystem]
    basis: eqx.AbstractVar[str]
    tau: eqx.AbstractVar[Float[Array, ""]]
    h: eqx.AbstractVar[Array]
    jump: eqx.AbstractVar[Array]
    k_sum: eqx.AbstractVar[Array]
    coherent: eqx.AbstractVar[Array]
    quadrature_info: eqx.AbstractVar[dict]

    @property
    def quadrature(self) -> dict:
        """`{"n_nodes", "n_grid", "spacing", "n_jump"}` of the fast form (Python numbers)."""
        return {k: v.item() for k, v in self.quadrature_info.items()}

    def _build(self, system, tau, basis, spacing, compress, cutoff):
        _check_basis(basis)
        tau = jnp.asarray(check_positive(tau, "tau"), float)
        if compress is not None and not (compress is False or 0 <= float(compress) < 1):
            raise ValueError(f"Argument `compress` must be an eigenvalue cut in [0, 1) or None, got {compress!r}.")
        if spacing is not None:
            check_positive(spacing, "spacing")
        jump_eig, info = _gaussian_jumps(system, tau, self.name, spacing, compress, cutoff)
        h, jump, k_sum, coherent = _finish_lindblad(system, jump_eig, type(self)._coherent_from_k, basis)
        info["n_jump"] = int(jump.shape[0])
        # arrays, not static metadata: jitted diagnostics must not recompile for every tau
        return tau, h, jump, k_sum, coherent, {k: jnp.asarray(v) for k, v in info.items()}

    @staticmethod
    def _coherent_from_k(system, k_eig):
        return jnp.zeros_like(k_eig)

    def _smoothed(self, mean):
        return _gaussian_rate(self.system, self.tau, self.name, mean)

    def kernel(self):
        return _gaussian_kernel(self.system, self.tau, self.name)

    def _kernel_coherent(self, k_total):
        return type(self)._coherent_from_k(self.system, k_total)


_GAUSSIAN_ARGS = r"""
    Args:
        system: The `OpenSystem`.
        tau: Coarse-graining time $\tau > 0$ (time units).
        basis: `"original"` (default) or `"eigen"`.
        spacing: Trapezoid spacing $\Delta\omega$ (default $\min(s/2,\ \text{feature}/5)$,
            $s = 1/(2\tau)$, which puts the quadrature error near $10^{-13}$; see
            `quadrature_error`).
        compress: Keep Kossakowski eigen-directions above this fraction of the largest
            eigenvalue (default $10^{-14}$); `None` keeps one jump operator per node.
        cutoff: Drop nodes whose largest possible kernel contribution is below this
            fraction of the largest (default $10^{-20}$).

    Attributes:
        quadrature: `{"n_nodes", "n_grid", "spacing", "n_jump"}`.

    Raises:
        ValueError: If `tau` (or `spacing`) is not finite and positive.
        MemoryError: If the jump operators would not fit.
"""


class CoarseGrained(_GaussianForm):
    r"""Gaussian coarse-grained Lindbladian (a Gaussian time window $\tau$ in the manner of
    Mozgunov–Lidar, arXiv:1908.01095; the filtered-operator form of Ding–Li–Lin,
    arXiv:2404.05998): kernel

    $$
    \alpha(\nu_1,\nu_2) = e^{-\tau^2(\nu_1-\nu_2)^2/2}\,(\gamma * N_s)(\bar\nu),\qquad s = \frac1{2\tau},
    $$

    no coherent term. Completely positive; fixes $\sigma_\beta$ only to $O(\tau^{-2})$
    (the smoothed $\gamma * N_s$ violates KMS at $O(s^2)$); tends to `Davies` as
    $\tau\to\infty$.
    """ + _GAUSSIAN_ARGS + r"""
    Example:
        >>> gen = CoarseGrained(OpenSystem.ising(2), tau=5.0)
        >>> float(fixed_point_error(gen)) > 1e-8
        True
    """

    system: OpenSystem
    basis: str = eqx.field(static=True)
    tau: Float[Array, ""]
    h: Array
    jump: Array
    k_sum: Array
    coherent: Array
    quadrature_info: dict
    name: ClassVar[str] = "coarse_grained"

    def __init__(self, system, tau, basis: Basis = "original", *, spacing=None, compress=1e-14, cutoff=1e-20):
        self.system = system
        self.basis = basis
        self.tau, self.h, self.jump, self.k_sum, self.coherent, self.quadrature_info = self._build(
            system, tau, basis, spacing, compress, cutoff
        )


class ExactKMS(_GaussianForm):
    r"""Exact-KMS Lindbladian (Chen–Kastoryano–Gilyén, arXiv:2311.09207, with a Gaussian
    filter as in Ding–Li–Lin, arXiv:2404.05998): kernel

    $$
    \alpha(\nu_1,\nu_2) = e^{-\tau^2(\nu_1-\nu_2)^2/2}\,e^{\beta\bar\nu/2}\,(h * N_s)(\bar\nu),
    \qquad h(\omega) = e^{-\beta\omega/2}\gamma(\omega),
    $$

    and the coherent term $B_{ij} = \tfrac i2\tanh\!\big(\beta(E_i-E_j)/4\big)\,K_{ij}$,
    $K = \sum_aK_a$ (eigenbasis; the sign matters: with $-B$ or $B = 0$ the
    fixed-point error is $\sim 10^{-3}$–$10^{-5}$ on the reference model). KMS detailed
    balanced, hence fixes $\sigma_\beta$ exactly at every $\tau$; not GNS balanced;
    completely positive; tends to `Davies` as $\tau\to\infty$.
    """ + _GAUSSIAN_ARGS + r"""
    Example:
        >>> gen = ExactKMS(OpenSystem.ising(2), tau=1.0)
        >>> float(fixed_point_error(gen)) < 1e-12
        True
    """

    system: OpenSystem
    basis: str = eqx.field(static=True)
    tau: Float[Array, ""]
    h: Array
    jump: Array
    k_sum: Array
    coherent: Array
    quadrature_info: dict
    name: ClassVar[str] = "exact_kms"

    def __init__(self, system, tau, basis: Basis = "original", *, spacing=None, compress=1e-14, cutoff=1e-20):
        self.system = system
        self.basis = basis
        self.tau, self.h, self.jump, self.k_sum, self.coherent, self.quadrature_info = self._build(
            system, tau, basis, spacing, compress, cutoff
        )

    @staticmethod
    def _coherent_from_k(system, k_eig):
        e = system.energies
        return 0.5j * jnp.tanh(0.25 * system.beta * (e[:, None] - e[None, :])) * k_eig


def kernel_generator(name: str, system: OpenSystem, *, tau=None, basis: Basis = "original") -> KernelGenerator:
    r"""The reference $d^4$ kernel form of the coarse-grained or exact-KMS generator, built
    without its fast form (what `kernel_form` returns, at a fraction of the set-up cost).

    Args:
        name: `"coarse_grained"` or `"exact_kms"`.
        system: The `OpenSystem`.
        tau: Coarse-graining time $> 0$.
        basis: Basis of the states.

    Raises:
        ValueError: For another name or a bad `tau`.
        MemoryError: If the $d^4$ arrays would not fit.

    Example:
        >>> ker = kernel_generator("exact_kms", OpenSystem.ising(2), tau=3.0)
        >>> float(fixed_point_error(ker)) < 1e-12
        True
    """
    if name not in ("coarse_grained", "exact_kms"):
        raise ValueError(f"Argument `name` must be 'coarse_grained' or 'exact_kms', got {name!r}.")
    _check_basis(basis)
    tau = jnp.asarray(check_positive(tau, "tau"), float)
    d = system.dim
    check_memory(estimate_bytes(((system.n_couplings + 3, d * d, d * d), jnp.complex128)), f"d^4 kernel of d = {d}")
    choi, k_total = _choi_tensor(system, _gaussian_kernel(system, tau, name), system.coupling_strength**2)
    cls = GENERATORS[name]
    return KernelGenerator(system, choi, k_total, cls._coherent_from_k(system, k_total), basis, name=f"{name} (kernel)")


class InteractionPicture(AbstractGenerator):
    r"""A generator in the interaction picture of $H_S$, for fewer integration steps:

    $$
    \tilde\rho(t) = e^{iH_St}\rho(t)e^{-iH_St},\qquad
    \dot{\tilde\rho} = e^{iH_St}\,\mathcal D\big(e^{-iH_St}\tilde\rho\,e^{iH_St}\big)e^{-iH_St},
    $$

    with $\mathcal D = \mathcal L + i[H_S,\cdot]$, all in the eigenbasis, where the rotations
    are element-wise phases $e^{\mp i(E_i-E_j)t}$ ($O(d^2)$). The solution no longer
    oscillates at the Bohr frequencies, only at the differences the generator couples
    (damped by $e^{-\tau^2\Delta\nu^2/2}$ for the Gaussian forms), so an adaptive solver takes
    far fewer steps: 78 instead of 736 for exact KMS at $N = 5$, $\tau = 1$, $t \le 50$,
    rtol $10^{-6}$ (`benchmarks/kms.py`). Time dependent: pass `tsave` from the time at
    which `rho0` is given (phases are $e^{\mp i(E_i-E_j)t}$ with absolute $t$).

    Args:
        generator: A `MasterEquation` built with `basis="eigen"`.

    Raises:
        ValueError: If the generator is not in the eigenbasis.

    Example:
        >>> import jax.numpy as jnp
        >>> from thermojax import mesolve
        >>> system = OpenSystem.ising(2)
        >>> ip = InteractionPicture(Davies(system, basis="eigen"))
        >>> rho0 = system.gibbs_state("eigen")
        >>> res = mesolve(ip, [], rho0, jnp.array([0.0, 5.0]))
        >>> float(jnp.max(jnp.abs(ip.to_schrodinger(res.tsave, res.states)[-1] - system.gibbs_state()))) < 1e-8
        True
    """

    generator: MasterEquation

    def __init__(self, generator: MasterEquation):
        if not isinstance(generator, MasterEquation) or generator.basis != "eigen":
            raise ValueError("Argument `generator` must be a MasterEquation built with basis='eigen'.")
        self.generator = generator

    @property
    def dim(self) -> int:
        return self.generator.dim

    @property
    def is_constant(self) -> bool:
        return False

    def _phase(self, t):
        e = self.generator.system.energies
        return jnp.exp(-1j * t * (e[:, None] - e[None, :]))

    def rhs(self, t, rho):
        p = self._phase(t)
        return jnp.conj(p) * self.generator.dissipator(p * rho)

    def rhs_hermitian(self, t, rho):
        p = self._phase(t)
        e = self.generator.system.energies
        x = p * rho
        return jnp.conj(p) * (self.generator.rhs_hermitian(t, x) + 1j * (e[:, None] - e[None, :]) * x)

    def to_schrodinger(self, tsave, states, basis: Basis = "original"):
        """Interaction-picture states `(T, d, d)` at `tsave` back to the Schrödinger picture,
        in `basis`."""
        e = self.generator.system.energies
        tsave = jnp.asarray(tsave)
        rho = jnp.exp(-1j * tsave[:, None, None] * (e[:, None] - e[None, :])[None]) * states
        return self.generator.system.to_basis(rho, basis)

    def from_schrodinger(self, t, rho, basis: Basis = "original"):
        """A Schrödinger-picture state at time `t` (in `basis`) in the interaction picture."""
        r = self.generator.system.from_basis(jnp.asarray(rho), basis)
        return jnp.conj(self._phase(t)) * r


GENERATORS = {
    "davies": Davies,
    "redfield": BlochRedfield,
    "coarse_grained": CoarseGrained,
    "exact_kms": ExactKMS,
    "ule": UniversalLindblad,
}
"""Generator classes by name; `make_generator` builds one."""


def make_generator(name: str, system: OpenSystem, *, tau=None, basis: Basis = "original", **kwargs) -> MasterEquation:
    """Build the generator `name` (a key of `GENERATORS`) on `system`.

    Args:
        name: `"davies"`, `"redfield"`, `"coarse_grained"`, `"exact_kms"` or `"ule"`.
        system: The `OpenSystem`.
        tau: Coarse-graining time, required by the Gaussian forms, ignored otherwise.
        basis: Basis of the states.
        **kwargs: Passed to the class (e.g. `lamb_shift=True`, `spacing=...`).

    Raises:
        ValueError: For an unknown name or a missing `tau`.

    Example:
        >>> make_generator("exact_kms", OpenSystem.ising(2), tau=2.0).name
        'exact_kms'
    """
    if name not in GENERATORS:
        raise ValueError(f"Argument `name` must be one of {sorted(GENERATORS)}, got {name!r}.")
    cls = GENERATORS[name]
    if issubclass(cls, _GaussianForm):
        if tau is None:
            raise ValueError(f"Argument `tau` is required by the {name} generator.")
        return cls(system, tau, basis, **kwargs)
    return cls(system, basis=basis, **kwargs)


# ----------------------------------------------------------------------------------
# diagnostics
# ----------------------------------------------------------------------------------


def _as_gen(generator) -> AbstractGenerator:
    if not isinstance(generator, AbstractGenerator):
        raise TypeError(f"Argument `generator` must be a thermojax generator, got {type(generator).__name__}.")
    return generator


def _system_of(generator) -> OpenSystem:
    system = getattr(generator, "system", None)
    if not isinstance(system, OpenSystem):
        raise TypeError(
            "Argument `generator` must be a MasterEquation or KernelGenerator (it must know its OpenSystem), "
            f"got {type(generator).__name__}."
        )
    return system


def fixed_point_error(generator) -> Float[Array, ""]:
    r"""$\|\mathcal L(\sigma_\beta)\|_F$, the Frobenius norm of the generator applied to the
    Gibbs state of its system (rate units; matrix-free, one right-hand side).

    Example:
        >>> float(fixed_point_error(ExactKMS(OpenSystem.ising(2), 1.0))) < 1e-12
        True
    """
    gen = _as_gen(generator)
    _system_of(gen)
    return _fixed_point(gen)


@eqx.filter_jit
def _fixed_point(gen):
    return jnp.linalg.norm(gen.rhs(0.0, gen.system.gibbs_state(gen.basis)))


def _dense_dissipator(generator):
    gen = _as_gen(generator)
    system = _system_of(gen)
    return _minus_hamiltonian(gen.liouvillian(), system, gen.basis), system, gen.basis


@eqx.filter_jit
def _minus_hamiltonian(big, system, basis):
    h = system.hamiltonian(basis).astype(complex)
    eye = jnp.eye(system.dim, dtype=complex)
    return big + 1j * (jnp.kron(h, eye) - jnp.kron(eye, h.T))


def _balance_residual(generator, left, right):
    dis, system, basis = _dense_dissipator(generator)
    return _balance(dis, system, basis, left, right)


@eqx.filter_jit
def _balance(dis, system, basis, left, right):
    gam = jnp.kron(system.to_basis(left, basis), system.to_basis(right, basis).T)
    res = dis @ gam - gam @ jnp.conj(dis.T)
    return jnp.linalg.norm(res) / jnp.maximum(jnp.linalg.norm(dis), 1e-300)


def kms_residual(generator) -> Float[Array, ""]:
    r"""Relative KMS detailed-balance residual $\|\mathcal D\Gamma - \Gamma\mathcal D^\dagger\|_F /
    \|\mathcal D\|_F$, $\Gamma(X) = \sigma_\beta^{1/2}X\sigma_\beta^{1/2}$.

    $\mathcal D = \mathcal L + i[H_S,\cdot]$ is the generator without the system
    Hamiltonian (coherent $\lambda^2B$ and Lamb-shift terms stay in it); $\mathcal D^\dagger$ is
    its Hilbert–Schmidt adjoint. Zero iff $\mathcal D^\dagger$ is self-adjoint in the KMS inner
    product $\langle X,Y\rangle = \mathrm{Tr}(X^\dagger\sigma^{1/2}Y\sigma^{1/2})$. Dense: memory $d^4$.

    Example:
        >>> float(kms_residual(ExactKMS(OpenSystem.ising(2), 1.0))) < 1e-12
        True
    """
    system = _system_of(generator)
    root = jnp.diag(jnp.sqrt(system.gibbs_weights())).astype(complex)
    return _balance_residual(generator, root, root)


def gns_residual(generator) -> Float[Array, ""]:
    r"""Relative GNS detailed-balance residual, as `kms_residual` with $\Gamma(X) = \sigma_\beta X$
    (self-adjointness in $\langle X,Y\rangle = \mathrm{Tr}(\sigma X^\dagger Y)$; with the
    other ordering, $\Gamma(X) = X\sigma_\beta$, the conclusions are the same for every
    generator here, since a GNS-balanced generator commutes with the modular operator).

    Example:
        >>> float(gns_residual(Davies(OpenSystem.ising(2)))) < 1e-12
        True
    """
    system = _system_of(generator)
    sig = jnp.diag(system.gibbs_weights()).astype(complex)
    return _balance_residual(generator, sig, jnp.eye(system.dim, dtype=complex))


def choi_min_eigenvalue(generator) -> Float[Array, ""]:
    r"""Smallest eigenvalue of the generator's Choi matrix on the complement of the maximally
    entangled vector, $\min\mathrm{spec}(P_\perp C_{\mathcal L}P_\perp)|_{\Omega^\perp}$
    (rate units). $e^{t\mathcal L}$ is completely positive for all $t \ge 0$ iff it is $\ge 0$
    (conditional complete positivity; Lindblad/GKS). Dense: memory $d^4$.

    Example:
        >>> float(choi_min_eigenvalue(CoarseGrained(OpenSystem.ising(2), 1.0))) > -1e-12
        True
    """
    gen = _as_gen(generator)
    return _choi_min(gen.liouvillian())


@eqx.filter_jit
def _choi_min(big):
    d = int(round(math.sqrt(big.shape[0])))
    choi = jnp.transpose(big.reshape(d, d, d, d), (2, 0, 3, 1)).reshape(d * d, d * d)
    choi = 0.5 * (choi + jnp.conj(choi.T))
    omega = jnp.eye(d, dtype=complex).reshape(d * d) / math.sqrt(d)
    v = omega - jnp.zeros(d * d, complex).at[0].set(1.0)  # Householder: omega <-> e_0
    house = jnp.eye(d * d, dtype=complex) - 2.0 * jnp.outer(v, jnp.conj(v)) / jnp.vdot(v, v)
    q = house[:, 1:]
    return jnp.min(jnp.linalg.eigvalsh(jnp.conj(q.T) @ choi @ q))


def spectral_gap(
    generator, *, method: Literal["dense", "arnoldi"] = "dense", k: int = 6, tol: float = 1e-10, ncv: int | None = None
) -> Float[Array, ""]:
    r"""Spectral gap $\Delta = -\max\{\mathrm{Re}\,\lambda : \lambda\ne0\}$ of the generator.

    `method="dense"` diagonalises the $d^2\times d^2$ Liouvillian
    (`thermojax.lindblad.spectral_gap`). `method="arnoldi"` is matrix-free:
    `scipy.sparse.linalg.eigs` (ARPACK's implicitly restarted Arnoldi, `which="LR"`)
    on a `LinearOperator` whose product is the jitted right-hand side, so memory is
    $O(d^2)$ and each product one right-hand side; the eigenvalue nearest 0 is taken as
    the stationary one (assumed unique).

    Args:
        generator: Any `thermojax.lindblad.AbstractGenerator`.
        method: `"dense"` or `"arnoldi"`.
        k: Eigenvalues ARPACK computes (Arnoldi).
        tol: ARPACK relative tolerance.
        ncv: ARPACK Krylov dimension (default `max(4k, 40)`).

    Returns:
        $\Delta$ (rate units).

    Raises:
        ValueError: For an unknown `method`.
        RuntimeError: If ARPACK does not converge.

    Example:
        >>> gen = ExactKMS(OpenSystem.ising(2), 1.0)
        >>> g1 = spectral_gap(gen)
        >>> g2 = spectral_gap(gen, method="arnoldi")
        >>> bool(abs(g1 - g2) < 1e-8)
        True
    """
    gen = _as_gen(generator)
    if method == "dense":
        return _dense_gap(gen)
    if method != "arnoldi":
        raise ValueError(f"Argument `method` must be 'dense' or 'arnoldi', got {method!r}.")
    from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigs

    d = gen.dim
    apply = jax.jit(lambda v: gen.rhs(0.0, v.reshape(d, d)).reshape(d * d))
    op = LinearOperator((d * d, d * d), matvec=lambda v: np.asarray(apply(jnp.asarray(v, complex))), dtype=complex)
    k = min(k, d * d - 2)
    try:
        lam = eigs(op, k=k, which="LR", tol=tol, ncv=min(d * d - 1, ncv or max(4 * k, 40)), return_eigenvectors=False)
    except ArpackNoConvergence as err:
        raise RuntimeError(f"ARPACK did not converge for the spectral gap of d = {d}: {err}") from None
    lam = lam[np.argsort(np.abs(lam))][1:]
    return jnp.asarray(-np.max(lam.real))


def dissipative_gap(
    generator, *, method: Literal["dense", "lanczos"] = "dense", tol: float = 1e-10
) -> Float[Array, ""]:
    r"""Gap of the dissipative part $\mathcal D = \mathcal L + i[H_S,\cdot]$ of a KMS-balanced
    generator, from the Hermitian matrix $\Gamma^{-1/2}\mathcal D\,\Gamma^{1/2}$
    ($\Gamma(X) = \sigma^{1/2}X\sigma^{1/2}$; Hermitian iff `kms_residual` vanishes).

    For a KMS-balanced generator the full gap is at least this one (the system
    Hamiltonian adds an anti-Hermitian part in the same geometry), and this is the gap
    that mixing-time bounds of CKG-type samplers use. `method="lanczos"` is matrix-free:
    `scipy.sparse.linalg.eigsh` (ARPACK Lanczos, `which="LA"`, two eigenvalues) on the
    jitted dissipator.

    Raises:
        ValueError: For an unknown `method`.

    Example:
        >>> gen = ExactKMS(OpenSystem.ising(2), 1.0)
        >>> bool(dissipative_gap(gen) <= spectral_gap(gen) + 1e-10)
        True
    """
    gen = _as_gen(generator)
    system = _system_of(gen)
    d = system.dim
    q = system.gibbs_weights() ** 0.25
    scale = q[:, None] * q[None, :]

    def apply(x):
        y = gen.dissipator(system.to_basis(x * scale, gen.basis))
        return system.from_basis(y, gen.basis) / scale

    if method == "dense":
        basis = jnp.eye(d * d, dtype=complex).reshape(d * d, d, d)
        big = jax.vmap(lambda e: apply(e).reshape(d * d))(basis).T
        lam = jnp.linalg.eigvalsh(0.5 * (big + jnp.conj(big.T)))
        return -lam[-2]
    if method != "lanczos":
        raise ValueError(f"Argument `method` must be 'dense' or 'lanczos', got {method!r}.")
    from scipy.sparse.linalg import LinearOperator, eigsh

    jitted = jax.jit(lambda v: apply(v.reshape(d, d)).reshape(d * d))
    op = LinearOperator((d * d, d * d), matvec=lambda v: np.asarray(jitted(jnp.asarray(v, complex))), dtype=complex)
    lam = eigsh(op, k=2, which="LA", tol=tol, return_eigenvectors=False)
    return jnp.asarray(-np.min(lam.real))


def distance_to_davies(generator, davies: Davies | None = None) -> Float[Array, ""]:
    r"""$\|\mathcal L - \mathcal L_{\rm Davies}\|_F / \|\mathcal D_{\rm Davies}\|_F$: the distance of a
    generator to the Davies generator of the same system, relative to the Davies
    dissipator (dense Liouvillians, memory $d^4$).

    Example:
        >>> system = OpenSystem.ising(2)
        >>> bool(distance_to_davies(ExactKMS(system, 20.0)) < distance_to_davies(ExactKMS(system, 2.0)))
        True
    """
    gen = _as_gen(generator)
    system = _system_of(gen)
    dav = Davies(system, basis=gen.basis) if davies is None else davies
    dis, _, _ = _dense_dissipator(dav)
    return _rel_distance(gen.liouvillian(), dav.liouvillian(), dis)


@eqx.filter_jit
def _rel_distance(a, b, ref):
    return jnp.linalg.norm(a - b) / jnp.linalg.norm(ref)


def quadrature_error(generator, *, n_sample: int = 200_000, key: PRNGKeyArray | None = None) -> Float[Array, ""]:
    r"""Error of a fast Gaussian form against its reference kernel, on the Choi tensor:
    $\max|C^{\rm fast}_{ijkl} - C^{\rm ref}_{ijkl}| / \max|C^{\rm ref}|$ with
    $C^{\rm fast}_{ijkl} = \sum_rL_{r,ij}\bar L_{r,kl}$ and $C^{\rm ref} = \lambda^2\sum_a
    \alpha(\nu_{ij},\nu_{kl})A_{a,ij}\bar A_{a,kl}$ (eigenbasis). Every entry when
    $d^4 \le$ `n_sample`, else `n_sample` random entries (fixed `key`) plus the diagonal.
    It bounds the error of the generator's jump part entry by entry; 0 for generators
    without a quadrature.

    Example:
        >>> float(quadrature_error(ExactKMS(OpenSystem.ising(2), 1.0))) < 1e-10
        True
    """
    gen = _as_gen(generator)
    if not isinstance(gen, _GaussianForm):
        return jnp.zeros(())
    system = gen.system
    d = system.dim
    jump = system.from_basis(gen.jump, gen.basis).reshape(-1, d * d)
    if d**4 <= n_sample:
        rows = jnp.repeat(jnp.arange(d * d), d * d)
        cols = jnp.tile(jnp.arange(d * d), d * d)
    else:
        key = jax.random.key(0) if key is None else key
        k1, k2 = jax.random.split(key)
        rows = jnp.concatenate([jax.random.randint(k1, (n_sample,), 0, d * d), jnp.arange(d * d)])
        cols = jnp.concatenate([jax.random.randint(k2, (n_sample,), 0, d * d), jnp.arange(d * d)])
    nu = system.bohr_frequencies().reshape(-1)
    n1, n2 = nu[rows], nu[cols]
    smooth = gen._smoothed(0.5 * (n1 + n2))
    return _quad_err(system, jump, gen.tau, rows, cols, smooth)


@eqx.filter_jit
def _quad_err(system, jump, tau, rows, cols, smooth):
    d = system.dim
    nu = system.bohr_frequencies().reshape(-1)
    al = jnp.exp(-0.5 * (tau * (nu[rows] - nu[cols])) ** 2) * smooth
    a = system.couplings.reshape(system.n_couplings, d * d)
    ref = system.coupling_strength**2 * al * jnp.sum(a[:, rows] * jnp.conj(a[:, cols]), axis=0)
    fast = jnp.sum(jump[:, rows] * jnp.conj(jump[:, cols]), axis=0)
    return jnp.max(jnp.abs(fast - ref)) / jnp.max(jnp.abs(ref))


def liouvillian_parts(generator) -> tuple[Complex[Array, "d2 d2"], Complex[Array, "d2 d2"]]:
    r"""Dense $(\mathcal L_0, \mathcal L_1)$ with $\mathcal L = \mathcal L_0 + \lambda^2\mathcal L_1$:
    $\mathcal L_0 = -i[H_S,\cdot]$ and $\mathcal L_1$ the dissipator per unit $\lambda^2$ (every
    generator here is linear in $\lambda^2$ at fixed $\tau$). What a fit of $\lambda^2$ uses.

    Raises:
        ValueError: If the generator's coupling strength is 0.
    """
    dis, system, basis = _dense_dissipator(generator)
    lam2 = float(system.coupling_strength) ** 2
    if lam2 == 0:
        raise ValueError("Argument `generator` has coupling_strength 0; liouvillian_parts needs lambda > 0.")
    h = system.hamiltonian(basis).astype(complex)
    eye = jnp.eye(system.dim, dtype=complex)
    return -1j * (jnp.kron(h, eye) - jnp.kron(eye, h.T)), dis / lam2


# ----------------------------------------------------------------------------------
# an exact finite bath
# ----------------------------------------------------------------------------------


class FiniteBath(eqx.Module):
    r"""A finite bath: Hamiltonian $H_B$ (as its `Eigensystem`), coupling operator $B$ with
    $\langle B\rangle_\beta = 0$, inverse temperature $\beta$.

    Attributes:
        eigensystem: Eigen-decomposition of $H_B$, dimension $d_B$.
        coupling: $B$ in the original basis, `(d_B, d_B)`.
        beta: Inverse temperature of the bath's initial Gibbs state.
    """

    eigensystem: Eigensystem
    coupling: Float[Array, "dB dB"]
    beta: Float[Array, ""]

    @property
    def dim(self) -> int:
        """Bath dimension $d_B$."""
        return self.eigensystem.dim

    def gibbs_state(self) -> Complex[Array, "dB dB"]:
        r"""$\sigma_B = e^{-\beta H_B}/Z$ in the original basis."""
        w = gibbs_weights(self.eigensystem.energies, self.beta)
        return self.eigensystem.op_from_eigenbasis(jnp.diag(w).astype(self.eigensystem.vectors.dtype))

    def spectrum(self, sigma: float, *, rtol: float = 1e-14) -> FiniteBathSpectrum:
        r"""The bath's rate function from its spectrum and matrix elements,
        $\gamma(\omega) = e^{\beta\omega/2}\sum_{mn}2\pi\sqrt{p_mp_n}|B_{mn}|^2N(\omega-\nu_{mn};\sigma^2)$
        (`FiniteBathSpectrum`; exactly KMS at every `sigma`). Peaks with weight below
        `rtol` x the largest are dropped (in mirrored pairs, so KMS stays exact).

        Args:
            sigma: Smoothing width of each delta peak (energy); it should exceed the
                spacing of the bath's transition frequencies near the system's Bohr
                frequencies, and stay below the scale on which $\gamma$ varies.
            rtol: Relative weight below which peaks are dropped.
        """
        nu, w = (np.asarray(x) for x in _bath_peaks(self))
        keep = w > rtol * np.max(w)
        return FiniteBathSpectrum(nu[keep], w[keep], sigma, self.beta)


@eqx.filter_jit
def _bath_peaks(bath):
    e = bath.eigensystem.energies
    p = gibbs_weights(e, bath.beta)
    b = bath.eigensystem.op_to_eigenbasis(bath.coupling)
    nu = (e[None, :] - e[:, None]).reshape(-1)
    return nu, (2 * jnp.pi * jnp.sqrt(p[:, None] * p[None, :]) * jnp.abs(b) ** 2).reshape(-1)


@eqx.filter_jit
def _center_coupling(es, b, beta):
    p = gibbs_weights(es.energies, beta)
    mean = jnp.sum(p * jnp.diagonal(es.op_to_eigenbasis(b)))
    return b - mean * jnp.eye(b.shape[0])


def goe_bath(
    key: PRNGKeyArray, dim: int, *, radius: float = 4.0, coupling_radius: float = 1.0, beta: float = 1.0
) -> FiniteBath:
    r"""A random-matrix bath: $H_B$ from the GOE with semicircle radius `radius` (its
    transition frequencies cover $[-2R, 2R]$), and a coupling $B$ from an independent
    GOE of radius `coupling_radius`, shifted so that $\mathrm{Tr}(\sigma_B B) = 0$ (no
    first-order force on the system).

    Args:
        key: PRNG key.
        dim: Bath dimension $d_B$.
        radius: Semicircle radius of $H_B$ (energy).
        coupling_radius: Semicircle radius of $B$.
        beta: Inverse temperature.

    Raises:
        ValueError: On a non-positive size or scale.
        MemoryError: If the bath would not fit.

    Example:
        >>> import jax
        >>> bath = goe_bath(jax.random.key(0), 16)
        >>> abs(float(jnp.trace(bath.gibbs_state() @ bath.coupling).real)) < 1e-12
        True
    """
    dim = check_int(dim, "dim", low=2)
    check_memory(estimate_bytes(((4, dim, dim), jnp.float64)), f"GOE bath of dimension {dim}", key="dim")
    check_positive(radius, "radius")
    check_positive(coupling_radius, "coupling_radius")
    check_positive(beta, "beta")
    k1, k2 = jax.random.split(key)
    es = eigh(goe_matrix(k1, dim, radius=radius))
    b = _center_coupling(es, goe_matrix(k2, dim, radius=coupling_radius), jnp.asarray(beta, float))
    return FiniteBath(es, b, jnp.asarray(beta, float))


def coupled_hamiltonian(
    hamiltonian: ArrayLike, coupling: ArrayLike, bath: FiniteBath, coupling_strength: float
) -> Float[Array, "D D"]:
    r"""$H = H_S\otimes1 + 1\otimes H_B + \lambda\,A\otimes B$, dimension $D = d_Sd_B$ (system first).

    Raises:
        ValueError: On non-Hermitian or mismatched inputs (named).
        MemoryError: If the $D\times D$ matrix would not fit.
    """
    hs = check_hermitian(to_array(hamiltonian, "hamiltonian"), "hamiltonian")
    a = check_hermitian(to_array(coupling, "coupling"), "coupling")
    if a.shape != hs.shape:
        raise ValueError(f"Argument `coupling` must have the shape of `hamiltonian` {hs.shape}, got {a.shape}.")
    check_positive(coupling_strength, "coupling_strength", allow_zero=True)
    ds, db = hs.shape[0], bath.dim
    check_memory(estimate_bytes(((4, ds * db, ds * db), jnp.complex128)), f"system + bath of dimension {ds * db}")
    hb = bath.eigensystem.matrix()
    return jnp.kron(hs, jnp.eye(db)) + jnp.kron(jnp.eye(ds), hb) + coupling_strength * jnp.kron(a, bath.coupling)


def reduced_evolution(
    eigensystem: Eigensystem, rho0: ArrayLike, tsave: ArrayLike, dims: tuple[int, int]
) -> Complex[Array, "T dS dS"]:
    r"""Exact reduced state $\rho_S(t) = \mathrm{Tr}_B[U(t)\rho_0U(t)^\dagger]$ of a system ⊗
    bath evolved by the eigensystem propagator, without forming $\rho(t)$:

    $$
    \rho_S(t)_{ss'} = \sum_{\mu\nu}\big(V_s^TV_{s'}^*\big)_{\mu\nu}\,\tilde\rho_{\mu\nu}\,
    e^{-i(E_\mu - E_\nu)t},\qquad \tilde\rho = V^\dagger\rho_0V,
    $$

    with $V_s$ the rows $(s, \cdot)$ of the eigenvectors. Cost $O(D^3)$ once and
    $O(d_S^2D^2(d_B + T))$ for all `T` times, against $O(D^3)$ per time for the full state.

    Args:
        eigensystem: `Eigensystem` of the total Hamiltonian, $D = d_Sd_B$ (system first).
        rho0: Initial density matrix `(D, D)`.
        tsave: Times `(T,)`.
        dims: `(d_S, d_B)`.

    Returns:
        $\rho_S(t)$, shape `(T, d_S, d_S)`.

    Raises:
        ValueError: If `dims` does not match or `rho0` is not a density matrix.

    Example:
        >>> import jax.numpy as jnp
        >>> es = eigh(jnp.kron(jnp.diag(jnp.array([0.0, 1.0])), jnp.eye(2)))
        >>> rho0 = jnp.eye(4) / 4
        >>> reduced_evolution(es, rho0, jnp.array([0.0, 1.0]), (2, 2)).shape
        (2, 2, 2)
    """
    ds, db = (int(x) for x in dims)
    d = eigensystem.dim
    if ds * db != d:
        raise ValueError(f"Argument `dims` = {dims} must multiply to the dimension {d}.")
    rho0, _ = check_state(rho0, d, "rho0", kind="dm", batch=False)
    tsave = jnp.asarray(tsave, float)
    rt = eigensystem.op_to_eigenbasis(rho0)
    return _reduced(eigensystem.energies, eigensystem.vectors, rt, tsave, ds, db)


@eqx.filter_jit
def _reduced(energies, vectors, rt, tsave, ds, db):
    v = vectors.reshape(ds, db, -1)
    u = jnp.exp(-1j * tsave[:, None] * energies[None, :])  # (T, D)
    pairs = jnp.array([(s, q) for s in range(ds) for q in range(ds)])

    def one(pq):
        w = matmul(v[pq[0]].T, jnp.conj(v[pq[1]]))  # (D, D)
        y = matmul(w * rt, jnp.conj(u).T)  # (D, T)
        return jnp.einsum("tm,mt->t", u, y)

    vals = jax.lax.map(one, pairs)  # (ds*ds, T)
    return jnp.moveaxis(vals.reshape(ds, ds, -1), -1, 0)
