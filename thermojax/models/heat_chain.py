r"""Heat conduction chain of weakly coupled many-level subunits (HAM).

Source: M. Michel, J. Gemmer, G. Mahler, "Application of the Hilbert space average
method on heat conduction models", Phys. Rev. E 73, 016101 (2006),
cond-mat/0511727; the project's own account is `docs/models/heat_chain.md`.

Model, single-excitation subspace (dimension `d = N n`), basis `|mu, i>` =
subunit `mu` excited to band level `i`, all others in their ground state:

$$
H = \sum_{\mu i} \varepsilon_i |\mu,i\rangle\langle\mu,i|
+ \lambda \sum_{\mu=1}^{N-1} \Big(\sum_{ij} v^{(\mu)}_{ij}
|\mu,i\rangle\langle\mu+1,j| + \mathrm{h.c.}\Big)
$$

Band levels `eps_i = gap - band_width/2 + (i + 1/2) band_width / n` (evenly spaced,
centred on the gap; level spacing `band_width / n`). Couplings `v^(mu)` are
complex Gaussian with independent entries, mean 0 and `E|v_ij|^2 = 1`; this
normalisation is what makes the golden-rule rate come out as
`kappa = 2 pi lambda^2 n / (hbar band_width)` (paper eq. 27).

Units: hbar = k_B = 1; energies in units of the gap `Delta E` (default 1), times
in `hbar / Delta E`.

Closed forms used (and said so):

* exact evolution: the eigendecomposition propagator (`thermojax.spectra.Eigensystem`);
  the diffrax path integrates the interaction picture with respect to the band
  energies, where the right-hand side only oscillates at frequencies <= band_width;
* HAM rate equations (paper eqs. 30-32): `dP/dt = -kappa L P` with `L` the
  path-graph Laplacian, solved in closed form from its known eigenvectors
  `cos(pi k (mu - 1/2) / N)` and eigenvalues `2 - 2 cos(pi k / N)`.
"""

import math
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Complex, Float, PRNGKeyArray
from pydantic import Field, model_validator

from .._checks import check_memory, check_positive, check_state, estimate_bytes
from ..config import Section
from ..spectra import Eigensystem, eigh, random_ket

__all__ = [
    "HeatChain",
    "HAMValidityWarning",
    "ham_populations",
    "path_laplacian",
    "golden_rule_kappa",
    "deviation_d2",
    "heat_capacity",
    "log_partition_function",
    "thermal_conductivity",
    "multiband_conductivity",
    "single_band_multiband_data",
    "random_band_state",
    "memory_estimate",
    "HeatChainParams",
]


class HAMValidityWarning(UserWarning):
    """The parameters violate the HAM validity criteria (paper eq. 29)."""


def golden_rule_kappa(coupling, n_levels, band_width, hbar=1.0):
    r"""Energy diffusion constant `kappa = 2 pi lambda^2 n / (hbar band_width)` (eq. 27/51).

    Args:
        coupling: `lambda` (energy).
        n_levels: Levels `n` per band.
        band_width: Band width `delta epsilon` (energy).
        hbar: Planck's constant (default 1).

    Returns:
        `kappa` in 1/time, same shape as the broadcast inputs.
    """
    return 2 * jnp.pi * coupling**2 * n_levels / (hbar * band_width)


def path_laplacian(n_subunits: int) -> Float[Array, "N N"]:
    """Laplacian `L` of the open chain: HAM reads `dP/dt = -kappa L P` (eqs. 30-32)."""
    a = np.zeros((n_subunits, n_subunits))
    for mu in range(n_subunits - 1):
        a[mu, mu + 1] = a[mu + 1, mu] = 1.0
    return jnp.asarray(np.diag(a.sum(1)) - a)


def ham_populations(
    kappa, p0: Float[Array, "*batch N"], ts: Float[Array, " T"]
) -> Float[Array, "*batch T N"]:
    r"""Closed-form solution of the HAM rate equations (paper eqs. 30-32).

    $$
    P(t) = \sum_k e^{-\kappa \ell_k t}\, \phi_k\, \frac{\phi_k\cdot P(0)}{\phi_k\cdot\phi_k},
    \quad \phi_k(\mu) = \cos\frac{\pi k (\mu - 1/2)}{N},\quad \ell_k = 2 - 2\cos\frac{\pi k}{N}
    $$

    Args:
        kappa: Rate (1/time), scalar; differentiable.
        p0: Initial subunit populations, shape `(*batch, N)`.
        ts: Times, shape `(T,)`.

    Returns:
        Populations, shape `(*batch, T, N)`.
    """
    n = p0.shape[-1]
    k = np.arange(n)
    mu = np.arange(1, n + 1)
    phi = jnp.asarray(np.cos(np.pi * np.outer(k, mu - 0.5) / n))  # (k, mu)
    ell = jnp.asarray(2 - 2 * np.cos(np.pi * k / n))
    amp = (p0 @ phi.T) / jnp.sum(phi**2, axis=1)  # (*batch, k)
    decay = jnp.exp(-kappa * jnp.outer(ts, ell))  # (T, k)
    return (amp[..., None, :] * decay) @ phi


def memory_time(band_energies, ts, band_width):
    r"""The band's second-order time $\tau(t)$ of the HAM rate equations.

    At second order in $\lambda$, the population that leaves a band whose levels
    $\varepsilon_i$ are equally occupied, into a neighbouring band with the same levels
    and couplings $E|v_{ij}|^2 = 1$, is
    $\frac{\lambda^2}{n}\sum_{ij}\frac{2(1-\cos\omega_{ij}t)}{\omega_{ij}^2}$,
    $\omega_{ij} = \varepsilon_i-\varepsilon_j$ ($t^2$ for $\omega = 0$). Divided by
    the golden-rule rate $\kappa = 2\pi\lambda^2 n/\delta\varepsilon$ (eq. 27) this is

    $$
    \tau(t) = \frac{\delta\varepsilon}{\pi n^2}\sum_{ij}\frac{1-\cos\omega_{ij}t}{\omega_{ij}^2},
    $$

    independent of $\lambda$: $P(t) = e^{-\kappa L\tau(t)}P(0)$ is HAM (eqs. 30-32) with
    the band's memory. Limits: $\tau \approx \delta\varepsilon\,t^2/2\pi$ for
    $t \ll 1/\delta\varepsilon$ (so $\kappa\tau = \lambda^2 n t^2$, first-order
    perturbation theory); for a dense band and $1/\delta\varepsilon \ll t \ll$ the
    Heisenberg time $2\pi n/\delta\varepsilon$,
    $\tau \approx t - \frac{2}{\pi\delta\varepsilon}(1 + \gamma_E + \ln\delta\varepsilon t)$
    (the onset and the band edges). $\hbar = 1$.

    Args:
        band_energies: Levels $\varepsilon_i$ of one band, shape `(n,)`.
        ts: Times, shape `(T,)`.
        band_width: $\delta\varepsilon$.

    Returns:
        $\tau(t)$, shape `(T,)`, in the units of `ts`.

    Example:
        >>> e = jnp.linspace(0.0, 1.0, 400, endpoint=False) + 0.5 / 400
        >>> tau = memory_time(e, jnp.array([1e-3, 40.0]), 1.0)
        >>> round(float(tau[0] / (1e-6 / (2 * jnp.pi))), 4), round(float(tau[1]), 2)
        (1.0, 36.65)
    """
    e = jnp.asarray(band_energies)
    n = e.shape[0]
    w = e[:, None] - e[None, :]
    zero = w == 0
    w_safe = jnp.where(zero, 1.0, w)

    def one(t):
        return jnp.sum(jnp.where(zero, 0.5 * t**2, (1.0 - jnp.cos(w * t)) / w_safe**2))

    return band_width / (jnp.pi * n**2) * jax.lax.map(one, jnp.asarray(ts))


def deviation_d2(
    ts: Float[Array, " T"], p_exact: Float[Array, "*batch T"], p_ham: Float[Array, "*batch T"]
) -> Float[Array, " *batch"]:
    r"""Time-averaged squared deviation (paper eq. 33).

    $$
    D^2 = \frac{1}{t_T - t_0}\int_{t_0}^{t_T} (P^{HAM}(t) - P^{exact}(t))^2\,dt
    $$

    by the trapezoidal rule on the grid `ts`. The paper integrates to `T = 5 tau`
    without defining `tau` precisely; thermojax uses `tau = 1/kappa` (pass
    `ts` spanning `[0, 5/kappa]`).

    Args:
        ts: Time grid, shape `(T,)`, increasing.
        p_exact: Exact values on the grid, shape `(*batch, T)`.
        p_ham: HAM values on the grid, shape `(*batch, T)`.

    Returns:
        `D^2`, shape `(*batch,)`.
    """
    sq = (p_ham - p_exact) ** 2
    return jnp.trapezoid(sq, jnp.broadcast_to(ts, sq.shape), axis=-1) / (ts[-1] - ts[0])


def log_partition_function(temperature, n_levels, gap=1.0):
    """`ln Z` of one (n+1)-level subunit, `Z = 1 + n exp(-gap / T)` (paper §VIII)."""
    return jnp.log1p(n_levels * jnp.exp(-gap / temperature))


def heat_capacity(temperature, n_levels, gap=1.0):
    r"""Heat capacity of one subunit (paper eq. 50), in units of k_B.

    $$
    c = \frac{n e^{-\Delta E/T}}{(1 + n e^{-\Delta E/T})^2}\Big(\frac{\Delta E}{T}\Big)^2
    $$

    Args:
        temperature: `k_B T` in energy units, any shape, > 0.
        n_levels: Band size `n`.
        gap: `Delta E`.
    """
    x = gap / temperature
    w = n_levels * jnp.exp(-x)
    return w / (1 + w) ** 2 * x**2


def thermal_conductivity(temperature, kappa, n_levels, gap=1.0):
    r"""Single-band heat conductivity `kappa_th = kappa c(T)` (paper eqs. 48, 51).

    Units: `k_B Delta E / hbar` when `kappa` is in `Delta E / hbar`.
    """
    return kappa * heat_capacity(temperature, n_levels, gap)


def multiband_conductivity(temperature, energies, offsets, counts, kappa, z2):
    r"""General multi-band HAM heat conductivity (paper eq. 47).

    $$
    \kappa_{th} = \sum_{E,\mathcal{E},\mathcal{E}'} \kappa(E,\mathcal{E},\mathcal{E}')
    \frac{e^{-E/k_BT}}{k_B T^2 Z^2(T)}\big(n(E,\mathcal{E})\mathcal{E}^2
    - n(E,\mathcal{E}')\mathcal{E}\mathcal{E}'\big)
    $$

    for two subunits: `E` is a band of total energy, `calE` labels its sub-bands
    by half the energy difference of the two subunits, `n(E, calE)` counts their
    levels. Padding sub-bands with `counts = 0` is allowed.

    Args:
        temperature: `k_B T`, scalar.
        energies: Band energies `E`, shape `(B,)`.
        offsets: Sub-band labels `calE`, shape `(B, S)`.
        counts: `n(E, calE)`, shape `(B, S)`.
        kappa: Symmetric rates `kappa(E, calE, calE')`, shape `(B, S, S)`.
        z2: Two-subunit partition function `Z^2(T)`, scalar.

    Returns:
        `kappa_th` (scalar).
    """
    boltz = jnp.exp(-energies / temperature)  # (B,)
    e, ep = offsets[:, :, None], offsets[:, None, :]
    bracket = counts[:, :, None] * e**2 - counts[:, None, :] * e * ep
    return jnp.sum(kappa * boltz[:, None, None] * bracket) / (temperature**2 * z2)


def single_band_multiband_data(temperature, n_levels, kappa, gap=1.0):
    """Eq. 47's inputs for the single-band two-subunit model (paper §VIII).

    Bands `E = 0` (one state), `E = gap` (sub-bands `+-gap/2` with `n` levels
    each, exchanged at rate `kappa`) and `E = 2 gap` (`n^2` states). Returns the
    tuple `(energies, offsets, counts, kappa, z2)` for `multiband_conductivity`.
    """
    energies = jnp.array([0.0, gap, 2 * gap])
    offsets = jnp.array([[0.0, 0.0], [gap / 2, -gap / 2], [0.0, 0.0]])
    counts = jnp.array([[1.0, 0.0], [n_levels, n_levels], [n_levels**2, 0.0]])
    rates = jnp.zeros((3, 2, 2)).at[1].set(jnp.array([[0.0, kappa], [kappa, 0.0]]))
    z2 = jnp.exp(2 * log_partition_function(temperature, n_levels, gap))
    return energies, offsets, counts, rates, z2


def memory_estimate(n_subunits: int, n_levels: int) -> int:
    """Bytes a chain of this size needs before it can be evolved: the random couplings
    `(N-1, n, n)`, the dense Hamiltonian, its eigenvectors and `eigh`'s workspace
    (complex128). Checked before anything is drawn."""
    d = n_subunits * n_levels
    return estimate_bytes(((n_subunits - 1, n_levels, n_levels), jnp.complex128), ((4, d, d), jnp.complex128))


def random_band_state(key: PRNGKeyArray, n_levels: int, batch: tuple[int, ...] = ()):
    """Haar-random normalised kets of one band, shape `(*batch, n_levels)`
    (`thermojax.spectra.random_ket`)."""
    return random_ket(key, n_levels, batch)


class HeatChain(eqx.Module):
    """The closed chain of `N` subunits with `n`-level bands (paper §II).

    Array fields (differentiable, fittable): `coupling` (lambda), `band_width`
    (delta epsilon), `gap` (Delta E), `couplings` (the random `v`).
    Static fields: `n_subunits` (N), `n_levels` (n).

    Attributes:
        couplings: `v^(mu)`, shape `(N-1, n, n)`, complex, `E|v_ij|^2 = 1`.
        coupling: `lambda`, scalar energy.
        band_width: `delta epsilon`, scalar energy.
        gap: `Delta E`, scalar energy.
        hbar: Planck's constant (default 1).

    Example:
        >>> import jax
        >>> chain = HeatChain.random(jax.random.key(0), 3, 32, band_width=0.05, coupling=9e-4)
        >>> chain.dim
        96
    """

    couplings: Complex[Array, "Nm1 n n"]
    coupling: Float[Array, ""]
    band_width: Float[Array, ""]
    gap: Float[Array, ""]
    n_subunits: int = eqx.field(static=True)
    n_levels: int = eqx.field(static=True)
    hbar: float = eqx.field(static=True, default=1.0)

    @classmethod
    def random(
        cls,
        key: PRNGKeyArray,
        n_subunits: int,
        n_levels: int,
        *,
        band_width: float = 0.05,
        gap: float = 1.0,
        coupling: float = 5e-5,
        hbar: float = 1.0,
        warn: bool = True,
    ) -> "HeatChain":
        r"""Draw the random couplings from `key` and build the chain.

        Args:
            key: PRNG key; the same key gives the same couplings.
            n_subunits: `N >= 2`.
            n_levels: `n >= 1`.
            band_width: Band width $\delta\varepsilon > 0$ (energy).
            gap: $\Delta E > 0$ (energy).
            coupling: $\lambda \ge 0$ (energy).
            hbar: Planck's constant.
            warn: Emit `HAMValidityWarning` if eq. 29 is violated.

        Raises:
            ValueError: For `N < 2`, `n < 1`, non-integer sizes, or non-positive
                `band_width`/`gap`/negative `coupling`; also if
                `band_width >= 2 gap` (levels would reach zero energy).
        """
        for name, val, low in (("n_subunits", n_subunits, 2), ("n_levels", n_levels, 1)):
            if not isinstance(val, (int, np.integer)) or isinstance(val, bool) or val < low:
                raise ValueError(f"Argument `{name}` must be an integer >= {low}, got {val!r}.")
        check_positive(band_width, "band_width")
        check_positive(gap, "gap")
        check_positive(coupling, "coupling", allow_zero=True)
        check_positive(hbar, "hbar")
        if band_width >= 2 * gap:
            raise ValueError(
                f"Argument `band_width` ({band_width}) must be < 2 * gap ({2 * gap}) so the "
                "excited band stays above the ground state."
            )
        check_memory(
            memory_estimate(n_subunits, n_levels),
            f"heat chain of N = {n_subunits} subunits with n = {n_levels} levels (dense H of dimension "
            f"{n_subunits * n_levels}, its couplings and eigendecomposition)",
            key="n_levels / n_subunits",
        )
        kr, ki = jax.random.split(key)
        shape = (n_subunits - 1, n_levels, n_levels)
        v = (jax.random.normal(kr, shape) + 1j * jax.random.normal(ki, shape)) / math.sqrt(2)
        chain = cls(
            couplings=v,
            coupling=jnp.asarray(coupling, float),
            band_width=jnp.asarray(band_width, float),
            gap=jnp.asarray(gap, float),
            n_subunits=int(n_subunits),
            n_levels=int(n_levels),
            hbar=float(hbar),
        )
        if warn:
            chain.check_validity()
        return chain

    @property
    def dim(self) -> int:
        """Hilbert-space dimension `N n` of the single-excitation subspace."""
        return self.n_subunits * self.n_levels

    @property
    def kappa(self) -> Array:
        """Golden-rule rate `2 pi lambda^2 n / (hbar delta epsilon)` (eq. 27), 1/time."""
        return golden_rule_kappa(self.coupling, self.n_levels, self.band_width, self.hbar)

    def validity(self) -> dict[str, float]:
        """The two numbers of eq. 29: `lambda n / delta eps` (want >= 1/2) and
        `lambda^2 n / delta eps^2` (want << 1)."""
        lam, n, w = float(self.coupling), self.n_levels, float(self.band_width)
        return {"lambda_n_over_width": lam * n / w, "lambda2_n_over_width2": lam**2 * n / w**2}

    def check_validity(self, small: float = 0.1) -> bool:
        """Warn (`HAMValidityWarning`) if eq. 29 fails; `<< 1` read as `<= small`.

        Returns:
            Whether both criteria hold.
        """
        v = self.validity()
        ok = True
        if v["lambda_n_over_width"] < 0.5:
            ok = False
            warnings.warn(
                f"HAM criterion lambda n / delta_eps >= 1/2 violated "
                f"({v['lambda_n_over_width']:.3g}): the band is not quasi-continuous on the "
                "scale of the coupling; rate equations may fail (paper eq. 29).",
                HAMValidityWarning,
                stacklevel=3,
            )
        if v["lambda2_n_over_width2"] > small:
            ok = False
            warnings.warn(
                f"HAM criterion lambda^2 n / delta_eps^2 << 1 violated "
                f"({v['lambda2_n_over_width2']:.3g} > {small}): the decay is too fast for "
                "the band width; rate equations may fail (paper eq. 29).",
                HAMValidityWarning,
                stacklevel=3,
            )
        return ok

    def band_energies(self) -> Float[Array, " n"]:
        """Level energies `eps_i` of one band, shape `(n,)`, ascending."""
        i = jnp.arange(self.n_levels)
        return self.gap - self.band_width / 2 + (i + 0.5) * self.band_width / self.n_levels

    def diagonal(self) -> Float[Array, " d"]:
        """Unperturbed energies of the `d = N n` basis states `|mu, i>`."""
        return jnp.tile(self.band_energies(), self.n_subunits)

    def memory_estimate(self) -> int:
        """Bytes for the couplings, the dense Hamiltonian, its eigenvectors and eigh's workspace."""
        return memory_estimate(self.n_subunits, self.n_levels)

    def hamiltonian(self, budget: int | None = None) -> Complex[Array, "d d"]:
        """Dense Hamiltonian, shape `(d, d)`, complex, Hermitian by construction.

        Raises:
            MemoryError: If the dense matrix and its diagonalisation would not fit in
                `budget` bytes (default: available device memory).
        """
        check_memory(self.memory_estimate(), f"dense Hamiltonian of dimension {self.dim}", budget)
        n, nsub = self.n_levels, self.n_subunits
        h = jnp.zeros((nsub, n, nsub, n), complex)
        mu = jnp.arange(nsub - 1)
        lv = self.coupling * self.couplings
        h = h.at[mu, :, mu + 1, :].set(lv)
        h = h.at[mu + 1, :, mu, :].set(jnp.conj(jnp.swapaxes(lv, -1, -2)))
        h = h.reshape(self.dim, self.dim)
        return h + jnp.diag(self.diagonal().astype(complex))

    def eigensystem(self, budget: int | None = None) -> Eigensystem:
        """Eigendecomposition of `hamiltonian`: the exact propagator
        (`thermojax.spectra.Eigensystem.evolve`)."""
        return eigh(self.hamiltonian(budget), check=False)

    def apply_coupling(self, psi: Complex[Array, " d"]) -> Complex[Array, " d"]:
        """`V psi` with `V` the nearest-neighbour coupling (without lambda), using the
        `N-1` blocks: O(N n^2) instead of O(N^2 n^2)."""
        p = psi.reshape(self.n_subunits, self.n_levels)
        down = jnp.einsum("mij,mj->mi", self.couplings, p[1:])  # v^(mu) psi_{mu+1}
        up = jnp.einsum("mji,mj->mi", jnp.conj(self.couplings), p[:-1])  # v^(mu)^dag psi_mu
        out = jnp.zeros_like(p).at[:-1].add(down).at[1:].add(up)
        return out.reshape(-1)

    def interaction_vector_field(self, t, psi_int: Complex[Array, " d"], args=None):
        r"""Right-hand side in the interaction picture w.r.t. the band energies.

        $$
        \dot\psi_I = -\frac{i\lambda}{\hbar} e^{i(H_0-\Delta E)t} V e^{-i(H_0-\Delta E)t}\psi_I
        $$

        The common gap cancels (`V` conserves the excitation number), so the phases
        oscillate at most at `band_width / hbar`. Populations are the same in both
        pictures. Signature `(t, y, args)` for diffrax.
        """
        phase = jnp.exp(1j * (self.diagonal() - self.gap) * t / self.hbar)
        return (-1j * self.coupling / self.hbar) * phase * self.apply_coupling(jnp.conj(phase) * psi_int)

    def populations(self, psi: Complex[Array, "*batch d"]) -> Float[Array, "*batch N"]:
        """Subunit populations `P_mu = sum_i |<mu,i|psi>|^2`, shape `(*batch, N)`."""
        p = jnp.abs(psi) ** 2
        return p.reshape(*psi.shape[:-1], self.n_subunits, self.n_levels).sum(-1)

    def local_state(self, psi_band: Complex[Array, "*batch n"], subunit: int = 0, *, normalize: bool = False):
        """Embed kets of one band into the chain: excitation in `subunit` (0-based).

        Args:
            psi_band: Normalised kets of one band, shape `(*batch, n)`.
            subunit: The excited subunit (0-based).
            normalize: Rescale unnormalised kets instead of raising.

        Returns:
            Kets of the chain, shape `(*batch, N n)`, unit norm.

        Raises:
            ValueError: On a wrong band size, a state that is not normalised (unless
                `normalize`) or not finite, or a subunit index out of range.
        """
        psi_band, _ = check_state(psi_band, self.n_levels, "psi_band", kind="ket", normalize=normalize)
        if not 0 <= subunit < self.n_subunits:
            raise ValueError(f"Argument `subunit` must be in [0, {self.n_subunits}), got {subunit}.")
        full = jnp.zeros((*psi_band.shape[:-1], self.n_subunits, self.n_levels), complex)
        full = full.at[..., subunit, :].set(psi_band)
        return full.reshape(*psi_band.shape[:-1], self.dim)

    def ham_populations(self, p0, ts):
        """HAM rate-equation populations at the golden-rule `kappa`; see
        `ham_populations`."""
        return ham_populations(self.kappa, p0, ts)

    def ham_vector_field(self, t, p, args=None):
        """HAM right-hand side `-kappa L P` for diffrax (args may carry `kappa`)."""
        kappa = self.kappa if args is None else args
        return -kappa * (path_laplacian(self.n_subunits) @ p)


class HeatChainParams(Section):
    """Config section of a heat chain (the paper's values by default); `build` draws it."""

    n_subunits: int = Field(3, ge=2, description="N, subunits")
    n_levels: int = Field(500, ge=1, description="n, levels per band")
    band_width: float = Field(0.05, gt=0, description="delta epsilon (energy)")
    gap: float = Field(1.0, gt=0, description="Delta E (energy)")
    coupling: float = Field(5e-5, gt=0, description="lambda (energy)")

    @model_validator(mode="after")
    def _band_below_gap(self):
        if self.band_width >= 2 * self.gap:
            raise ValueError(f"band_width ({self.band_width}) must be < 2 * gap ({2 * self.gap})")
        return self

    @property
    def kappa(self) -> float:
        """Golden-rule rate of these parameters (1/time)."""
        return float(golden_rule_kappa(self.coupling, self.n_levels, self.band_width))

    def memory_bytes(self) -> int:
        """Bytes the chain needs before it can be evolved (see `memory_estimate`)."""
        return memory_estimate(self.n_subunits, self.n_levels)

    def build(self, key, warn: bool = True) -> HeatChain:
        """Draw the random couplings from `key` and build the chain.

        Raises:
            MemoryError: If the chain's dense Hamiltonian would not fit (before drawing).
        """
        return HeatChain.random(
            key, self.n_subunits, self.n_levels, band_width=self.band_width, gap=self.gap,
            coupling=self.coupling, warn=warn,
        )
