r"""Objective quantum thermalization (OQT) and its SUI hybrid with collapse: the physics.

Implements A. Mukherjee, "On a modified quantum theory with objective quantum
thermalization and spontaneous universal irreversibility", arXiv:2504.16197; the
project's own account is `docs/models/oqt.md`. Units: $\hbar = 1$, so the
paper's $\alpha\mathcal N/\hbar$ is the rate `alpha_N` (written $\gamma$)
and $\mathcal J\mathcal N/\hbar$ is `Gamma`.

Everything dynamical works in the eigenbasis of $H = \sum_\mu E_\mu|\mu\rangle
\langle\mu|$ (ascending $E_\mu$): states passed to `OQTModel`'s dynamics
and to `OQTSSE` are eigenbasis components; convert with
`model.eigensystem.ket_to_eigenbasis` / `op_to_eigenbasis` and back with
`ket_from_eigenbasis` / `op_from_eigenbasis`. The constructors
`microcanonical` and `canonical` take the initial state
in the basis of the Hamiltonian you pass.

What lives here is OQT physics only; the general machinery is shared:

* steady states $\chi$ (`SteadyState`) from the thermal layer
  (`thermojax.thermal`: energy moments, microcanonical window, the $\beta$
  root find);
* the master equation (eqs. 6, 8) as an `thermojax.lindblad.AbstractGenerator`
  with a structured $O(d^2)$ right-hand side (tested against the generic GKSL
  form with the $d^2$ jump operators of `oqt_jump_ops`), its closed form
  `evolve`, and `thermojax.mesolve` / the Lindblad layer for the
  rest (dense Liouvillian, stationary state);
* the Itô stochastic Schrödinger equation (eqs. 5, 7), `OQTSSE` and
  `InteractionPictureSSE`, run by `thermojax.trajectories`;
* closed forms the experiments test against: `population_closed_form`,
  `born_probabilities`, `dephase`, `hybrid_stationary_h0`,
  `zeno_stationary`;
* diagnostics (`diagnostics`, `d_chi`).

Decisions on edge cases (documented where they act):

* **Degenerate levels** are eigenvalues closer than `degeneracy_atol` (default
  $10^{-9}(E_{\max}-E_{\min})$, invariant under $H\to H+c$); a level enters
  the microcanonical window as a whole.
* **Eigenstate input** ($V_0 \approx 0$): the window is the eigenstate's own
  degenerate level (paper, text after eq. 4: eigenstates stay stable).
* **Empty window** (rounding only): the level(s) nearest $E_0$.
* **Canonical** $\chi_\beta$: `thermojax.thermal.solve_beta`; $E_0$
  outside the spectrum raises, at an end gives $\beta=\pm\infty$.
* **Stationary state at** $\gamma = 0$: degenerate null space; given `rho0`
  the $t\to\infty$ limit (the Born state $\sum_kP_k\rho_0P_k$ at $H=0$).
  The limits do not commute: for $\gamma>0$ the state is unique and tends to
  $\sum_kP_k\chi P_k$, not the Born state of $\rho_0$, as $\gamma\to0$.
* **Entropy.** The paper claims $dS/dt > 0$ for every non-equilibrium state.
  False in general: a pure $\chi$ ($|W| = 1$) drives the von Neumann
  entropy to 0 (a test shows it, $E = (0, 1)$, $\rho_0 = \mathrm{diag}(0.9,
  0.1)$). What holds: $D_\chi$ and the trace distance to $\chi$ never increase.
* **SSE expectations** are divided by the norm by default (`expectation="normalized"`).
"""

from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Complex, Float, PRNGKeyArray, PyTree, Shaped

from .._checks import check_positive, check_state, is_concrete
from ..lindblad import AbstractGenerator, StationaryState, liouvillian, stationary_state
from ..result import Result, Status
from ..spectra import Eigensystem, eigh, haar_unitary, ket_to_dm, purity, trace_distance, von_neumann_entropy
from ..thermal import energy_moments, microcanonical_weights, microcanonical_window, solve_beta
from ..trajectories import AbstractSDE

__all__ = [
    "SteadyState",
    "microcanonical_steady_state",
    "canonical_steady_state",
    "given_steady_state",
    "oqt_jump_ops",
    "OQTModel",
    "OQTSSE",
    "InteractionPictureSSE",
    "Diagnostics",
    "diagnostics",
    "ket_diagnostics",
    "d_chi",
    "population_closed_form",
    "sector_projectors",
    "sector_weights",
    "born_probabilities",
    "dephase",
    "hybrid_stationary_h0",
    "zeno_stationary",
]

_STATE_ATOL = 1e-8


# ----------------------------------------------------------------------------------
# input checks
# ----------------------------------------------------------------------------------


def _as_eigensystem(hamiltonian) -> Eigensystem:
    if isinstance(hamiltonian, Eigensystem):
        return hamiltonian
    if isinstance(hamiltonian, tuple):
        if len(hamiltonian) != 2:
            raise ValueError(
                "Argument `hamiltonian` given as a tuple must be (energies, eigenvectors), "
                f"got a tuple of length {len(hamiltonian)}."
            )
        return Eigensystem(*hamiltonian)
    return eigh(hamiltonian, name="hamiltonian")


def _rate(x, name: str) -> Float[Array, ""]:
    """A rate as a float array of shape (); negative or non-finite values raise."""
    x = jnp.asarray(x)
    if x.shape != ():
        raise ValueError(f"Argument `{name}` must be a scalar, got shape {x.shape}.")
    if jnp.iscomplexobj(x):
        raise ValueError(f"Argument `{name}` must be real, got dtype {x.dtype}.")
    x = x.astype(jnp.result_type(float))
    return jnp.asarray(check_positive(x, name, allow_zero=True))


def _state(state, d: int, name: str, normalize: bool) -> tuple[Array, bool]:
    """A ket `(d,)` or density matrix `(d, d)` (no batch), checked as everywhere."""
    return check_state(state, d, name, normalize=normalize, batch=False)


def _check_projectors(projectors, es: Eigensystem, atol: float) -> Complex[Array, "K d d"]:
    """Validate a complete orthogonal set of projectors (original basis); return them in
    the eigenbasis."""
    p = jnp.asarray(projectors)
    d = es.dim
    if p.ndim != 3 or p.shape[1:] != (d, d) or p.shape[0] < 1:
        raise ValueError(f"Argument `projectors` must have shape (K, {d}, {d}) with K >= 1, got {p.shape}.")
    p = p.astype(jnp.result_type(p.dtype, complex))
    if is_concrete(p):
        h = np.asarray(p)
        herm = np.max(np.abs(h - np.conj(np.swapaxes(h, -1, -2))))
        if herm > atol:
            raise ValueError(f"Argument `projectors` must be Hermitian: max|P_k - P_k^dagger| = {herm:.3e}.")
        prod = np.einsum("kab,lbc->klac", h, h)
        expected = np.einsum("kl,kac->klac", np.eye(h.shape[0]), h)
        orth = np.max(np.abs(prod - expected))
        if orth > atol:
            raise ValueError(
                "Argument `projectors` must be orthogonal projectors, P_k P_l = delta_kl P_k: "
                f"max deviation {orth:.3e} exceeds {atol:.0e}."
            )
        comp = np.max(np.abs(h.sum(0) - np.eye(d)))
        if comp > atol:
            raise ValueError(
                f"Argument `projectors` must be complete, sum_k P_k = 1: max deviation {comp:.3e} exceeds {atol:.0e}."
            )
    return es.op_to_eigenbasis(p)


# ----------------------------------------------------------------------------------
# steady states chi
# ----------------------------------------------------------------------------------


class SteadyState(eqx.Module):
    r"""A diagonal OQT steady state $\chi$ and how it relates to the initial state.

    Attributes:
        chi: Diagonal weights $\chi_\mu$ in the eigenbasis, shape `(d,)`,
            nonnegative, summing to 1.
        energy: Initial energy $E_0 = \langle H\rangle$ (NaN if no state was given).
        energy_variance: Initial variance $V_0$ (NaN if no state was given).
        energy_mismatch: $\mathrm{Tr}(\chi H) - E_0$. The ensemble energy relaxes as
            $dE/dt = \gamma(\mathrm{Tr}(\chi H) - E)$, so it is conserved only if this
            vanishes (arXiv:2504.16197, eq. 4).
        window: Support of $\chi$, boolean, shape `(d,)`.
        beta: Inverse temperature for canonical $\chi_\beta$ ($\pm\infty$ at
            the spectrum's ends); NaN otherwise.
    """

    chi: Float[Array, " d"]
    energy: Float[Array, ""]
    energy_variance: Float[Array, ""]
    energy_mismatch: Float[Array, ""]
    window: Bool[Array, " d"]
    beta: Float[Array, ""]



def _steady(energies, chi, window, e0, v0, beta) -> SteadyState:
    mismatch = jnp.sum(chi * energies) - e0
    return SteadyState(
        chi=chi,
        energy=jnp.asarray(e0, energies.dtype),
        energy_variance=jnp.asarray(v0, energies.dtype),
        energy_mismatch=mismatch,
        window=window,
        beta=jnp.asarray(beta, energies.dtype),
    )


def microcanonical_steady_state(
    energies: Float[Array, " d"],
    state: Shaped[Array, " d"] | Shaped[Array, "d d"],
    *,
    degeneracy_atol: float | None = None,
    normalize: bool = False,
) -> SteadyState:
    r"""Microcanonical $\chi_E = |W|^{-1}\sum_{\mu\in W}|\mu\rangle\langle\mu|$ of a state.

    arXiv:2504.16197, eq. 5 and the text before it; window rules as in
    `thermojax.thermal.microcanonical_window`.

    Args:
        energies: Ascending energies, shape `(d,)`.
        state: Initial ket `(d,)` or density matrix `(d, d)` *in the eigenbasis*.
        degeneracy_atol: Level-grouping tolerance (energy units), default
            $10^{-9}(E_{\max}-E_{\min})$.
        normalize: Rescale an unnormalised state instead of raising.

    Returns:
        A `SteadyState` (`beta` is NaN).

    Raises:
        ValueError: If `state` has the wrong shape, is not finite, not normalised
            (unless `normalize`), or (density matrix) not Hermitian / positive.

    Example:
        >>> import jax.numpy as jnp
        >>> e = jnp.array([0.0, 1.0, 2.0, 3.0])
        >>> psi = jnp.array([0.0, 1.0, 1.0, 0.0]) / jnp.sqrt(2.0)
        >>> microcanonical_steady_state(e, psi).chi.tolist()
        [0.0, 0.5, 0.5, 0.0]
    """
    energies = jnp.asarray(energies)
    state, _ = _state(state, energies.shape[0], "state", normalize)
    e0, v0 = energy_moments(energies, state)
    window = microcanonical_window(energies, e0, v0, degeneracy_atol=degeneracy_atol)
    chi = microcanonical_weights(window, energies.dtype)
    return _steady(energies, chi, window, e0, v0, jnp.nan)


def canonical_steady_state(
    energies: Float[Array, " d"],
    state: Shaped[Array, " d"] | Shaped[Array, "d d"] | None = None,
    *,
    energy: Float[ArrayLike, ""] | None = None,
    degeneracy_atol: float | None = None,
    normalize: bool = False,
) -> SteadyState:
    r"""Canonical $\chi_\beta = e^{-\beta H}/Z$ with $\mathrm{Tr}(\chi_\beta H)=E_0$.

    arXiv:2504.16197, text after eq. 4. $\beta$ from
    `thermojax.thermal.solve_beta` (optimistix bisection; at the spectrum's ends
    the limits $\beta = \pm\infty$).

    Args:
        energies: Ascending energies, shape `(d,)`.
        state: Initial ket `(d,)` or density matrix `(d, d)` in the eigenbasis.
        energy: Alternatively, the target energy $E_0$ itself (exactly one of
            `state` and `energy`).
        degeneracy_atol: Energy tolerance for the ends and level grouping.
        normalize: Rescale an unnormalised state instead of raising.

    Returns:
        A `SteadyState` with the solved `beta` (1/energy).

    Raises:
        ValueError: If `state` is invalid, not exactly one of `state`/`energy` is
            given, or $E_0$ lies outside $[E_{\min}, E_{\max}]$.
    """
    energies = jnp.asarray(energies)
    if (state is None) == (energy is None):
        raise ValueError("Give exactly one of the arguments `state` and `energy`.")
    if state is not None:
        state, _ = _state(state, energies.shape[0], "state", normalize)
        e0, v0 = energy_moments(energies, state)
    else:
        e0 = jnp.asarray(energy, energies.dtype)
        if e0.shape != ():
            raise ValueError(f"Argument `energy` must be a scalar, got shape {e0.shape}.")
        v0 = jnp.asarray(jnp.nan, energies.dtype)
    beta, chi = solve_beta(energies, e0, degeneracy_atol=degeneracy_atol)
    return _steady(energies, chi, chi > 0, e0, v0, beta)


def given_steady_state(
    energies: Float[Array, " d"],
    chi: Float[ArrayLike, " d"],
    state: Shaped[Array, " d"] | Shaped[Array, "d d"] | None = None,
    *,
    atol: float = 1e-10,
    normalize: bool = False,
) -> SteadyState:
    r"""Wrap user-given diagonal weights $\chi_\mu$ as a `SteadyState`.

    Args:
        energies: Ascending energies, shape `(d,)`.
        chi: Weights, shape `(d,)`: real, finite, $\ge 0$ and summing to 1 within
            `atol` (negative rounding within `atol` is clipped to 0).
        state: Optional initial state (eigenbasis) for `energy` and `energy_mismatch`.
        atol: Tolerance of the checks.
        normalize: Passed to the state check.

    Raises:
        ValueError: If `chi` has the wrong shape, is complex, negative, not finite or
            does not sum to 1 (eagerly, or via `eqx.error_if` inside `jit`).
    """
    energies = jnp.asarray(energies)
    d = energies.shape[0]
    chi = jnp.asarray(chi)
    if chi.shape != (d,):
        raise ValueError(f"Argument `chi` must have shape ({d},), got {chi.shape}.")
    if jnp.iscomplexobj(chi):
        raise ValueError(f"Argument `chi` must hold real diagonal weights, got dtype {chi.dtype}.")
    chi = chi.astype(energies.dtype)
    bad_sign = jnp.any(chi < -atol) | ~jnp.all(jnp.isfinite(chi))
    bad_sum = jnp.abs(jnp.sum(chi) - 1.0) > atol
    if is_concrete(bad_sign, bad_sum):
        if bool(bad_sign):
            raise ValueError(f"Argument `chi` must be finite and >= 0, got {np.asarray(chi)}.")
        if bool(bad_sum):
            raise ValueError(f"Argument `chi` must sum to 1, got sum {float(jnp.sum(chi))!r}.")
    else:
        chi = eqx.error_if(chi, bad_sign | bad_sum, "Argument `chi` must be >= 0 and sum to 1.")
    chi = jnp.clip(chi, 0.0, None)
    if state is None:
        e0 = v0 = jnp.nan
    else:
        state, _ = _state(state, d, "state", normalize)
        e0, v0 = energy_moments(energies, state)
    return _steady(energies, chi, chi > 0, e0, v0, jnp.nan)


@eqx.filter_jit
def oqt_jump_ops(chi: Float[Array, " d"], gamma: Float[ArrayLike, ""]) -> Complex[Array, "d2 d d"]:
    r"""The $d^2$ OQT jump operators $\sqrt{\gamma\chi_\mu}\,|\mu\rangle\langle\nu|$.

    arXiv:2504.16197, eqs. 5–6 with $L_{\mu\nu} = |\mu\rangle\langle\nu|$ and
    $\mathcal A^\mu = \gamma\chi_\mu$. In the eigenbasis; operator index
    `k = mu * d + nu`. With them the generic GKSL form
    (`thermojax.lindblad.Lindbladian`) equals `rhs`, since
    $\sum_{\mu\nu}\chi_\mu L_{\mu\nu}\rho L_{\mu\nu}^\dagger = \chi\,\mathrm{Tr}\rho$.

    Returns:
        Jump operators, shape `(d*d, d, d)`.
    """
    chi = jnp.asarray(chi)
    d = chi.shape[0]
    amp = jnp.sqrt(gamma) * jnp.sqrt(chi)
    eye = jnp.eye(d, dtype=complex)
    ops = amp[:, None, None, None] * eye[:, None, :, None] * eye[None, :, None, :]
    return ops.reshape(d * d, d, d)


# ----------------------------------------------------------------------------------
# the model
# ----------------------------------------------------------------------------------


class OQTModel(AbstractGenerator):
    r"""OQT master equation with optional SUI collapse, in the eigenbasis of $H$.

    $$
    \dot\rho = -i[H,\rho] + \gamma(\chi\,\mathrm{Tr}\rho - \rho)
    + \Gamma\Big(\sum_k P_k\rho P_k - \rho\Big)
    $$

    arXiv:2504.16197, eqs. 6 and 8, with $\hbar = 1$, $\gamma = \alpha\mathcal N$
    (`alpha_N`) and $\Gamma = \mathcal J\mathcal N$ (`Gamma`). `alpha_N` and
    `Gamma` are array fields, differentiable; sizes and the SUI switch are static. A
    generator object: `thermojax.mesolve(model, [], rho0, tsave)` integrates it, and
    the Lindblad layer gives its Liouvillian, stationary state and gap.

    Args:
        hamiltonian: Dense Hermitian matrix `(d, d)`, an
            `thermojax.spectra.Eigensystem`, or a tuple `(energies, vectors)`.
        chi: A `SteadyState`, or diagonal weights `(d,)`.
        alpha_N: Thermalization rate $\gamma \ge 0$ (1/time).
        Gamma: Collapse rate $\Gamma \ge 0$ (1/time), used only with `projectors`.
        projectors: Complete set of orthogonal projectors `(K, d, d)` in the basis of
            `hamiltonian` (stored in the eigenbasis). `None`: no SUI term.
        projector_atol: Tolerance of the projector checks.

    Raises:
        ValueError: Non-Hermitian `hamiltonian`, bad `chi`, negative or non-finite
            `alpha_N`/`Gamma`, or projectors that are not Hermitian, orthogonal and
            complete (each message names the argument).

    Example:
        >>> import jax.numpy as jnp
        >>> h = jnp.array([[0.0, 0.3], [0.3, 1.0]])
        >>> model = OQTModel.microcanonical(h, jnp.array([1.0, 0.0]), alpha_N=0.5)
        >>> rho0 = model.eigensystem.op_to_eigenbasis(jnp.diag(jnp.array([1.0, 0.0])))
        >>> model.evolve(rho0, jnp.array([0.0, 1.0])).states.shape
        (2, 2, 2)
    """

    eigensystem: Eigensystem
    steady: SteadyState
    alpha_N: Float[Array, ""]
    Gamma: Float[Array, ""]
    projectors: Complex[Array, "K d d"] | None
    sui: bool = eqx.field(static=True)

    def __init__(
        self,
        hamiltonian,
        chi,
        alpha_N: Float[ArrayLike, ""],
        *,
        Gamma: Float[ArrayLike, ""] = 0.0,
        projectors: Shaped[ArrayLike, "K d d"] | None = None,
        projector_atol: float = 1e-8,
    ):
        es = _as_eigensystem(hamiltonian)
        if not isinstance(chi, SteadyState):
            chi = given_steady_state(es.energies, chi)
        elif chi.chi.shape != (es.dim,):
            raise ValueError(
                f"Argument `chi` has shape {chi.chi.shape}, expected ({es.dim},) to match `hamiltonian`."
            )
        self.eigensystem = es
        self.steady = chi
        self.alpha_N = _rate(alpha_N, "alpha_N")
        self.Gamma = _rate(Gamma, "Gamma")
        if projectors is None:
            self.projectors = None
            self.sui = False
        else:
            self.projectors = _check_projectors(projectors, es, projector_atol)
            self.sui = True

    @classmethod
    def microcanonical(
        cls,
        hamiltonian,
        state0: Shaped[ArrayLike, " d"] | Shaped[ArrayLike, "d d"],
        alpha_N: Float[ArrayLike, ""],
        *,
        Gamma: Float[ArrayLike, ""] = 0.0,
        projectors: Shaped[ArrayLike, "K d d"] | None = None,
        degeneracy_atol: float | None = None,
        normalize: bool = False,
    ) -> "OQTModel":
        r"""Model whose $\chi$ is the microcanonical state of `state0`.

        Args:
            hamiltonian: As in `OQTModel`.
            state0: Initial ket `(d,)` or density matrix `(d, d)` in the basis of
                `hamiltonian`.
            alpha_N: As in `OQTModel`.
            Gamma: As in `OQTModel`.
            projectors: As in `OQTModel`.
            degeneracy_atol: As in `microcanonical_steady_state`.
            normalize: Rescale an unnormalised `state0`.

        Raises:
            ValueError: As `OQTModel` and `microcanonical_steady_state`.
        """
        es = _as_eigensystem(hamiltonian)
        state = _state_to_eigenbasis(es, state0, normalize)
        steady = microcanonical_steady_state(es.energies, state, degeneracy_atol=degeneracy_atol)
        return cls(es, steady, alpha_N, Gamma=Gamma, projectors=projectors)

    @classmethod
    def canonical(
        cls,
        hamiltonian,
        state0: Shaped[ArrayLike, " d"] | Shaped[ArrayLike, "d d"],
        alpha_N: Float[ArrayLike, ""],
        *,
        Gamma: Float[ArrayLike, ""] = 0.0,
        projectors: Shaped[ArrayLike, "K d d"] | None = None,
        degeneracy_atol: float | None = None,
        normalize: bool = False,
    ) -> "OQTModel":
        r"""Model whose $\chi$ is canonical with $\mathrm{Tr}(\chi_\beta H)=E_0$.

        Arguments as `microcanonical`; see `canonical_steady_state`.
        """
        es = _as_eigensystem(hamiltonian)
        state = _state_to_eigenbasis(es, state0, normalize)
        steady = canonical_steady_state(es.energies, state, degeneracy_atol=degeneracy_atol)
        return cls(es, steady, alpha_N, Gamma=Gamma, projectors=projectors)

    @property
    def dim(self) -> int:
        """Hilbert-space dimension `d`."""
        return self.eigensystem.dim

    @property
    def energies(self) -> Float[Array, " d"]:
        """Ascending energies, shape `(d,)`."""
        return self.eigensystem.energies

    @property
    def chi(self) -> Float[Array, " d"]:
        r"""Steady-state weights $\chi_\mu$, shape `(d,)`."""
        return self.steady.chi

    @property
    def energy_mismatch(self) -> Float[Array, ""]:
        r"""$\mathrm{Tr}(\chi H) - E_0$ (NaN if $E_0$ is unknown)."""
        return self.steady.energy_mismatch

    def hamiltonian_eig(self) -> Complex[Array, "d d"]:
        r"""$H$ in its eigenbasis, $\mathrm{diag}(E)$, complex, `(d, d)`."""
        return jnp.diag(self.energies).astype(complex)

    def chi_matrix(self) -> Complex[Array, "d d"]:
        r"""$\chi$ as a density matrix in the eigenbasis, `(d, d)`."""
        return jnp.diag(self.chi).astype(complex)

    # -- the generator --------------------------------------------------------------

    def rhs(self, t, rho: Complex[Array, "*batch d d"], args=None) -> Complex[Array, "*batch d d"]:
        r"""Structured right-hand side of eqs. 6/8, eigenbasis, batched over leading axes.

        $\dot\rho_{\mu\nu} = -i(E_\mu-E_\nu)\rho_{\mu\nu} + \gamma(\chi_\mu\delta_{\mu\nu}
        \mathrm{Tr}\rho - \rho_{\mu\nu}) + \Gamma(\sum_k P_k\rho P_k - \rho)_{\mu\nu}$; cost
        $O(d^2)$ ($O(Kd^3)$ with SUI).
        """
        del args
        rho = jnp.asarray(rho)
        lead = (1,) * (rho.ndim - 2)
        e = self.energies
        omega = (e[:, None] - e[None, :]).reshape(lead + (self.dim, self.dim))
        tr = jnp.trace(rho, axis1=-2, axis2=-1)[..., None, None]
        chi_m = self.chi_matrix().reshape(lead + (self.dim, self.dim))
        out = -1j * omega * rho + self.alpha_N * (chi_m * tr - rho)
        if self.sui:
            p = self.projectors
            out = out + self.Gamma * (jnp.einsum("kab,...bc,kcd->...ad", p, rho, p) - rho)
        return out

    def jump_ops(self) -> Complex[Array, "K2 d d"]:
        r"""All jump operators in the eigenbasis: the $d^2$ OQT operators followed
        (with SUI) by $\sqrt\Gamma P_k$; shape `(d*d [+ K], d, d)`."""
        ops = oqt_jump_ops(self.chi, self.alpha_N)
        if self.sui:
            ops = jnp.concatenate([ops, jnp.sqrt(self.Gamma) * self.projectors], axis=0)
        return ops

    def liouvillian(self, t=0.0) -> Complex[Array, "d2 d2"]:
        r"""Dense generic-GKSL Liouvillian (row-major vec), `(d*d, d*d)`, from the
        $d^2$ jump operators (a cross-check of `rhs` for $d\lesssim32$)."""
        return liouvillian(self.hamiltonian_eig(), self.jump_ops())

    def evolve(self, rho0: Complex[Array, "*batch d d"], tsave: Float[ArrayLike, " T"]) -> Result:
        r"""Closed-form solution of eq. 6 (time-independent $H$, no SUI term).

        $$
        \rho(t) = c\,\chi + e^{-\gamma t}\,U(t)(\rho_0 - c\,\chi)U(t)^\dagger,
        \quad U(t)=e^{-iHt},\ c=\mathrm{Tr}\rho_0,
        $$

        i.e. $\rho_{\mu\nu}(t) = c\chi_\mu\delta_{\mu\nu} + e^{-\gamma t -
        i(E_\mu-E_\nu)t}(\rho_0-c\chi)_{\mu\nu}$.

        Args:
            rho0: Initial density matrices in the eigenbasis, `(*batch, d, d)`.
            tsave: Times `(T,)`.

        Returns:
            `thermojax.result.Result` with `states` `(*batch, T, d, d)`.

        Raises:
            ValueError: If the model has an SUI term (use `thermojax.mesolve(model, [],
                ...)`) or `rho0`'s last axes are not `(d, d)`.
        """
        if self.sui:
            raise ValueError(
                "OQTModel.evolve is the closed form without collapse; this model has `projectors` "
                "(SUI). Integrate it with thermojax.mesolve(model, [], rho0, tsave)."
            )
        rho0 = _check_rho_shape(rho0, self.dim, "rho0")
        tsave = jnp.asarray(tsave)
        if tsave.ndim != 1:
            raise ValueError(f"Argument `tsave` must have shape (T,), got {tsave.shape}.")
        states = self._evolve_closed(rho0, tsave)
        batch = rho0.shape[:-2]
        return Result(
            tsave=tsave,
            states=states,
            expect=None,
            stats={},
            status=jax.tree.map(lambda x: jnp.broadcast_to(x, batch), Status.successful),
            method="OQT closed form",
        )

    @eqx.filter_jit
    def _evolve_closed(self, rho0, tsave):
        d = self.dim
        nb = rho0.ndim - 2
        c = jnp.trace(rho0, axis1=-2, axis2=-1)[..., None, None, None]  # (*batch, 1, 1, 1)
        chi_m = self.chi_matrix().reshape((1,) * (nb + 1) + (d, d))  # explicit rank: no implicit promotion
        dev = rho0[..., None, :, :] - c * chi_m  # (*batch, 1, d, d)
        e = self.energies
        omega = (e[:, None] - e[None, :]).reshape((1,) * (nb + 1) + (d, d))
        tt = tsave.reshape((1,) * nb + (-1, 1, 1))
        factor = jnp.exp(-self.alpha_N * tt - 1j * tt * omega)
        return c * chi_m + factor * dev

    def stationary_state(self, rho0: Complex[Array, "d d"] | None = None, **kwargs) -> StationaryState:
        r"""Null vector of the hybrid generator (eq. 8): `thermojax.lindblad.stationary_state`
        on the dense Liouvillian (with `rho0`: its $t\to\infty$ projection)."""
        if rho0 is not None:
            rho0 = _check_rho_shape(rho0, self.dim, "rho0")
            if rho0.shape != (self.dim, self.dim):
                raise ValueError(f"Argument `rho0` must have shape ({self.dim}, {self.dim}), got {rho0.shape}.")
        return stationary_state(self, rho0, **kwargs)

    def sse(
        self,
        noise: Literal["reduced", "literal"] = "reduced",
        expectation: Literal["raw", "normalized"] = "normalized",
    ) -> "OQTSSE":
        """The stochastic Schrödinger equation of this model; see `OQTSSE`."""
        return OQTSSE(self, noise=noise, expectation=expectation)


def _state_to_eigenbasis(es: Eigensystem, state, normalize: bool = False) -> Array:
    state, is_ket = check_state(state, es.dim, "state0", normalize=normalize, batch=False)
    return es.ket_to_eigenbasis(state) if is_ket else es.op_to_eigenbasis(state)


def _check_rho_shape(rho, d: int, name: str) -> Array:
    rho = jnp.asarray(rho)
    if rho.ndim < 2 or rho.shape[-2:] != (d, d):
        raise ValueError(f"Argument `{name}` must have shape (*batch, {d}, {d}), got {rho.shape}.")
    return rho.astype(jnp.result_type(rho.dtype, complex))


# ----------------------------------------------------------------------------------
# stochastic Schrödinger equation
# ----------------------------------------------------------------------------------


class OQTSSE(AbstractSDE):
    r"""Itô stochastic Schrödinger equation of OQT (+ SUI), eigenbasis components.

    arXiv:2504.16197, eqs. 5 and 7.
    With $a_\mu = \gamma\chi_\mu$, $n = \langle\psi|\psi\rangle$,
    $p_\mu = |\psi_\mu|^2$, $A = \sum_\nu a_\nu p_\nu$, the paper's
    expectations taken literally (`expectation="raw"`,
    $\langle P_k\rangle = \psi^\dagger P_k\psi$):

    $$
    f_\mu = -iE_\mu\psi_\mu + a_\mu n\psi_\mu - \tfrac12\gamma\psi_\mu
    - \tfrac12 A n\psi_\mu
    - \tfrac{\Gamma}{2}\Big[\sum_k (P_k - \langle P_k\rangle)^2\psi\Big]_\mu
    (g\,dW)_\mu = \sqrt{a_\mu}X_\mu - \psi_\mu\sum_\kappa\sqrt{a_\kappa}\bar\psi_\kappa
    X_\kappa + \sqrt\Gamma\Big[\sum_k (P_k - \langle P_k\rangle)\psi\,dW^k\Big]_\mu
    $$

    `expectation="normalized"` (default) divides every expectation by $n$
    ($\langle L_{\mu\nu}\rangle = \bar\psi_\mu\psi_\nu/n$,
    $\langle P_k\rangle = \psi^\dagger P_k\psi/n$), i.e.
    $f_\mu = -iE_\mu\psi_\mu + (a_\mu - \tfrac12\gamma - \tfrac12 A/n)\psi_\mu
    + \dots$ and the noise projection carries $1/n$. The two forms are the same
    SDE on the physical manifold $n = 1$ (where the paper's ψ lives); both
    conserve $n$ exactly in Itô calculus and both give, for any $n$, the
    one-step Euler–Maruyama mean $E[\psi'\psi'^\dagger] = \rho + dt\,\mathcal
    L(\rho) + O(dt^2)$ with the linear generator. Only the normalised form has no
    first-order noise in the norm off the unit sphere,
    $\mathrm{Re}\langle\psi|g\,dW\rangle = 0$; the raw form has
    $\langle\psi|g\,dW\rangle \propto (1-n)$, so the $O(dt)$ norm error
    of a discrete step is amplified: measured at $d=4$,
    $\gamma=\Gamma=1$, $dt=0.01$, $t=20$, 2% of 1000 Euler–Maruyama
    paths reached NaN and others norms of $10^{-21}$, while the normalised form
    stayed finite with norms in $[0.28, 3.5]$ (the Born-rule collapse also
    fails with `"raw"`). Use `"raw"` for comparisons with the paper's literal
    equation at small `dt`.

    Noise forms (static field `noise`), `dw` entries are increments with variance
    `dt`:

    * `"literal"`: `dw["oqt"]` has shape `(d, d)`, channel $(\mu,\nu)$ is the
      paper's $dW^{\mu\nu}$, and $X_\mu = \sum_\nu\psi_\nu dW^{\mu\nu}$.
    * `"reduced"` (default): `dw["oqt"]` has shape `(d, 2)`. Given $\psi$, the
      $X_\mu$ are independent complex Gaussians with $E|X_\mu|^2 = n\,dt$
      and $E X_\mu^2 = c\,dt$, $c = \sum_\nu\psi_\nu^2$ (equivalently
      $\mathrm{Cov}(\mathrm{Re}X,\mathrm{Im}X) = dt\,[[a\cdot a, a\cdot b],
      [a\cdot b, b\cdot b]]$, $a=\mathrm{Re}\psi$, $b=\mathrm{Im}\psi$). They
      are built from two normals per row as
      $X_\mu = e^{i\varphi/2}\big(\sigma_+ z_{\mu1} + i\sigma_- z_{\mu2}\big)$,
      $\varphi=\arg c$, $\sigma_\pm^2 = (n\pm|c|)/2$, which is exact also
      in the rank-one case $|c| = n$ (parallel real and imaginary parts,
      $\sigma_-=0$). Same law for the process and for every Euler–Maruyama
      step; $O(d)$ instead of $O(d^2)$ random numbers.

    With SUI (static `sui`), `dw["sui"]` has shape `(K,)`. `dw` is always a dict.
    Discrete steps make the norm drift by $O(dt)$ per step (a random walk);
    report it (`Options(record_norm=True)` of `thermojax.trajectories.simulate_trajectories`,
    `ket_diagnostics`); renormalising after each step is that module's
    documented `normalize` option.

    Args:
        model: An `OQTModel` (energies, $\chi$, rates, projectors are copied).
        noise: `"reduced"` or `"literal"` (static).
        expectation: `"normalized"` or `"raw"` (static), see above.

    Raises:
        ValueError: For an unknown `noise` or `expectation`.
    """

    energies: Float[Array, " d"]
    chi: Float[Array, " d"]
    alpha_N: Float[Array, ""]
    Gamma: Float[Array, ""]
    projectors: Complex[Array, "K d d"] | None
    noise: str = eqx.field(static=True)
    expectation: str = eqx.field(static=True)
    sui: bool = eqx.field(static=True)

    def __init__(
        self,
        model: OQTModel,
        *,
        noise: Literal["reduced", "literal"] = "reduced",
        expectation: Literal["raw", "normalized"] = "normalized",
    ):
        if noise not in ("reduced", "literal"):
            raise ValueError(
                f"Argument `noise` must be 'reduced' or 'literal', got {noise!r}."
            )
        if expectation not in ("raw", "normalized"):
            raise ValueError(
                f"Argument `expectation` must be 'raw' or 'normalized', got {expectation!r}."
            )
        self.expectation = expectation
        self.energies = model.energies
        self.chi = model.chi
        self.alpha_N = model.alpha_N
        self.Gamma = model.Gamma
        self.projectors = model.projectors
        self.noise = noise
        self.sui = model.sui

    @property
    def dim(self) -> int:
        return self.energies.shape[0]

    def noise_shape(self) -> PyTree[jax.ShapeDtypeStruct]:
        """`{"oqt": (d, 2) or (d, d)[, "sui": (K,)]}` of real `ShapeDtypeStruct`."""
        d = self.dim
        dtype = self.energies.dtype
        shape = (d, 2) if self.noise == "reduced" else (d, d)
        out = {"oqt": jax.ShapeDtypeStruct(shape, dtype)}
        if self.sui:
            out["sui"] = jax.ShapeDtypeStruct((self.projectors.shape[0],), dtype)
        return out

    def divergence_norm(self) -> float:
        """A ket whose norm passes 10 is flagged as diverged by default: the Itô SSE keeps
        `<psi|psi> = 1` and Euler--Maruyama drifts only by O(sqrt(dt)) per unit time,
        so a norm of 10 is a blow-up (e.g. of the `expectation="raw"` form), never
        legitimate data. Pass `max_norm=float("inf")` to the integrator to disable."""
        return 10.0

    def drift(self, t, y: Complex[Array, " d"], args=None) -> Complex[Array, " d"]:
        r"""Itô drift $f(t, \psi)$, shape `(d,)` (eigenbasis)."""
        del t, args
        gamma = self.alpha_N
        a = gamma * self.chi
        p = jnp.abs(y) ** 2
        n = jnp.sum(p)
        big_a = jnp.sum(a * p)
        if self.expectation == "normalized":
            f = -1j * self.energies * y + (a - 0.5 * gamma - 0.5 * big_a / n) * y
        else:
            f = -1j * self.energies * y + (a * n - 0.5 * gamma - 0.5 * big_a * n) * y
        if self.sui:
            py, pk = self._sui_parts(y)
            # (P - <P>)^2 psi = (1 - 2<P>) P psi + <P>^2 psi for a projector P
            sq = jnp.sum((1.0 - 2.0 * pk)[:, None] * py, axis=0) + jnp.sum(pk**2) * y
            f = f - 0.5 * self.Gamma * sq
        return f

    def _sui_parts(self, y):
        py = jnp.einsum("kab,b->ka", self.projectors, y)
        pk = jnp.real(jnp.einsum("a,ka->k", y.conj(), py))
        if self.expectation == "normalized":
            pk = pk / jnp.sum(jnp.abs(y) ** 2)
        return py, pk

    def _x(self, y: Array, w: Array) -> Array:
        r"""$X_\mu$ from the OQT noise block `w`."""
        if self.noise == "literal":
            # real noise times complex ket as two real products: avoids promoting the
            # (d, d) noise to complex (measured 16x cheaper at d = 64, batch 256)
            return jax.lax.complex(w @ y.real, w @ y.imag)
        n = jnp.sum(jnp.abs(y) ** 2)
        c = jnp.sum(y * y)
        absc = jnp.abs(c)
        ok = absc > 0
        unit = jnp.where(ok, c / jnp.where(ok, absc, 1.0), 1.0)
        phase = jnp.sqrt(unit)  # exp(i arg(c) / 2)
        s_plus = jnp.sqrt(0.5 * (n + absc))
        s_minus = jnp.sqrt(jnp.clip(0.5 * (n - absc), 0.0, None))
        return phase * (s_plus * w[:, 0] + 1j * s_minus * w[:, 1])

    def diffusion_mv(
        self, t, y: Complex[Array, " d"], args, dw: dict[str, Float[Array, "..."]]
    ) -> Complex[Array, " d"]:
        r"""Noise contraction $g(t,\psi)\,dW$, shape `(d,)`; `dw` as
        `noise_shape` (increments of variance `dt`)."""
        del t, args
        sa = jnp.sqrt(self.alpha_N) * jnp.sqrt(self.chi)
        x = self._x(y, dw["oqt"])
        proj = jnp.sum(sa * y.conj() * x)
        if self.expectation == "normalized":
            proj = proj / jnp.sum(jnp.abs(y) ** 2)
        g = sa * x - y * proj
        if self.sui:
            py, pk = self._sui_parts(y)
            w = dw["sui"]
            g = g + jnp.sqrt(self.Gamma) * (
                jnp.sum(w[:, None] * py, axis=0) - jnp.sum(w * pk) * y
            )
        return g


# ----------------------------------------------------------------------------------
# diagnostics

class Diagnostics(eqx.Module):
    r"""Per-state OQT diagnostics (all in the eigenbasis; leading `*batch` axes).

    Expectation values (`energy`, `energy_variance`, `populations`) are of the
    state normalised by its norm; `norm` and `norm_drift` show that norm; the
    distances and `purity` use the state as given; `entropy` uses
    $\rho/\mathrm{Tr}\rho$.

    Attributes:
        norm: $\langle\psi|\psi\rangle$ or $\mathrm{Tr}\rho$, `(*batch,)`.
        norm_drift: `norm - 1`.
        energy: $E = \mathrm{Tr}(\rho H)/\mathrm{Tr}\rho$.
        energy_variance: $\mathrm{Tr}(\rho H^2)/\mathrm{Tr}\rho - E^2$.
        populations: $\rho_{\mu\mu}/\mathrm{Tr}\rho$, `(*batch, d)`.
        d_chi: $D_\chi = \mathrm{Tr}[(\rho-\chi)^2]$ (paper, after eq. 6).
        trace_distance: $\tfrac12\|\rho-\chi\|_1$.
        entropy: Von Neumann entropy (nats) of $\rho/\mathrm{Tr}\rho$. It need
            not increase: the paper's claim $dS/dt > 0$ fails for a pure
            $\chi$ ($|W| = 1$), which drives $S$ to 0; $D_\chi$ and
            the trace distance to $\chi$ do decrease monotonically.
        purity: $\mathrm{Tr}\rho^2$.
        energy_mismatch: $\mathrm{Tr}(\chi H) - E$; $dE/dt = \gamma\times$ this.
    """

    norm: Float[Array, " *batch"]
    norm_drift: Float[Array, " *batch"]
    energy: Float[Array, " *batch"]
    energy_variance: Float[Array, " *batch"]
    populations: Float[Array, "*batch d"]
    d_chi: Float[Array, " *batch"]
    trace_distance: Float[Array, " *batch"]
    entropy: Float[Array, " *batch"]
    purity: Float[Array, " *batch"]
    energy_mismatch: Float[Array, " *batch"]


def d_chi(model: OQTModel, rho: Complex[Array, "*batch d d"]) -> Float[Array, " *batch"]:
    r"""$D_\chi = \mathrm{Tr}[(\rho-\chi)^2]$ (arXiv:2504.16197, text after eq. 6:
    $D_\chi(t) = D_\chi(0)e^{-2\gamma t}$).

    Args:
        model: Supplies $\chi$.
        rho: Density matrices in the eigenbasis, `(*batch, d, d)`.

    Returns:
        Shape `(*batch,)`.
    """
    return _d_chi(model, _check_rho_shape(rho, model.dim, "rho"))


@eqx.filter_jit
def _d_chi(model: OQTModel, rho: Array) -> Array:
    diff = rho - model.chi_matrix().reshape((1,) * (rho.ndim - 2) + (model.dim, model.dim))
    return jnp.real(jnp.einsum("...ij,...ji->...", diff, diff))


def diagnostics(model: OQTModel, rho: Complex[Array, "*batch d d"]) -> Diagnostics:
    """All `Diagnostics` of density matrices `rho` (eigenbasis), shape
    `(*batch, d, d)`; results have shape `(*batch,)` (`populations`:
    `(*batch, d)`).

    Raises:
        ValueError: If `rho`'s last two axes are not `(d, d)`.
    """
    return _diagnostics(model, _check_rho_shape(rho, model.dim, "rho"))


@eqx.filter_jit
def _diagnostics(model: OQTModel, rho: Array) -> Diagnostics:
    d = model.dim
    lead = (1,) * (rho.ndim - 2)
    e = model.energies
    norm = jnp.real(jnp.trace(rho, axis1=-2, axis2=-1))
    pops = jnp.real(jnp.diagonal(rho, axis1=-2, axis2=-1)) / norm[..., None]
    e_row = e.reshape(lead + (d,))
    energy = jnp.sum(pops * e_row, axis=-1)
    var = jnp.sum(pops * (e_row - energy[..., None]) ** 2, axis=-1)
    chi_m = model.chi_matrix().reshape(lead + (d, d))
    return Diagnostics(
        norm=norm,
        norm_drift=norm - 1.0,
        energy=energy,
        energy_variance=var,
        populations=pops,
        d_chi=_d_chi(model, rho),
        trace_distance=trace_distance(rho, chi_m),
        entropy=von_neumann_entropy(rho / norm[..., None, None]),
        purity=purity(rho),
        energy_mismatch=jnp.sum(model.chi * e) - energy,
    )


def ket_diagnostics(model: OQTModel, psi: Complex[Array, "*batch d"]) -> Diagnostics:
    r"""`Diagnostics` of kets (eigenbasis), shape `(*batch, d)`, through
    $|\psi\rangle\langle\psi|$ (memory $d^2$ per ket). For the ensemble state
    average first: `diagnostics(model, ket_to_dm(psi).mean(0))`.

    Raises:
        ValueError: If `psi`'s last axis is not `d`.
    """
    psi = jnp.asarray(psi)
    if psi.ndim < 1 or psi.shape[-1] != model.dim:
        raise ValueError(
            f"Argument `psi` must have shape (*batch, {model.dim}), got {psi.shape}."
        )
    return diagnostics(model, ket_to_dm(psi))


class InteractionPictureSSE(AbstractSDE):
    r"""The OQT SSE for $\phi(t) = e^{iHt}\psi(t)$ (eigenbasis, $\hbar = 1$).

    With $U(t) = \mathrm{diag}(e^{-iE_\mu t})$ and the Itô SSE
    $d\psi = f(t,\psi)dt + g(t,\psi)dW$ of `sse` (arXiv:2504.16197, eqs. 5 and 7), the exact change of
    variables gives

    $$
    d\phi = U^\dagger\big[f(t, U\phi) + iHU\phi\big]dt + U^\dagger g(t, U\phi)dW,
    $$

    the same process (same populations, $\rho = U\rho_IU^\dagger$) without the
    fast $-iE_\mu$ rotation in the drift. Its Euler–Maruyama scheme has no
    $E_\mu^2dt^2$ population gain (measured in `docs/models/oqt.md`), so ensemble means
    follow the master equation to $O(\gamma^2dt)$ instead of
    $O(E_{\max}^2dt)$. Works with either noise form and with SUI.

    Attributes:
        sse: An `OQTSSE`.

    Example:
        >>> import jax.numpy as jnp
        >>> model = OQTModel(jnp.diag(jnp.array([0.0, 1.0])), jnp.array([0.5, 0.5]), 1.0)
        >>> ip = InteractionPictureSSE(model.sse())
        >>> psi = jnp.array([0.0, 1.0], complex)  # E = 1: the SSE drift has -i psi, ip has not
        >>> model.sse().drift(0.0, psi, None), ip.drift(0.0, psi, None)
        (Array([ 0.  +0.j, -0.25-1.j], dtype=complex128), Array([ 0.  +0.j, -0.25+0.j], dtype=complex128))
    """

    sse: OQTSSE

    def _phase(self, t):
        return jnp.exp(-1j * self.sse.energies * t)

    def drift(self, t, y, args):
        u = self._phase(t)
        psi = u * y
        return jnp.conj(u) * (self.sse.drift(t, psi, args) + 1j * self.sse.energies * psi)

    def diffusion_mv(self, t, y, args, dw):
        u = self._phase(t)
        return jnp.conj(u) * self.sse.diffusion_mv(t, u * y, args, dw)

    def noise_shape(self):
        return self.sse.noise_shape()


# ----------------------------------------------------------------------------------
# closed forms the experiments test against
# ----------------------------------------------------------------------------------


def population_closed_form(model: OQTModel, p0, ts):
    r"""Eigenbasis populations of the closed form of eq. 6,
    $p_\mu(t) = \chi_\mu + e^{-\gamma t}(p_\mu(0) - \chi_\mu)$ (the diagonal of
    `thermojax.models.oqt.OQTModel.evolve`; unit trace).

    Args:
        model: Supplies $\chi$ and $\gamma$ (`alpha_N`).
        p0: Initial populations, shape `(d,)`.
        ts: Times, shape `(T,)`.

    Returns:
        Shape `(T, d)`.
    """
    decay = jnp.exp(-model.alpha_N * jnp.asarray(ts))
    return model.chi[None, :] + decay[:, None] * (jnp.asarray(p0) - model.chi)[None, :]


def sector_projectors(
    sizes: list[int] | tuple[int, ...], key: PRNGKeyArray | None = None
) -> Complex[Array, "K d d"]:
    r"""Complete set of orthogonal projectors $P_k$ of ranks `sizes`.

    $P_k = \sum_{j\in S_k} |v_j\rangle\langle v_j|$ with consecutive index blocks
    $S_k$ of lengths `sizes` and $v_j$ the standard basis (`key=None`) or
    the columns of a Haar-random unitary drawn from `key`. Hence
    $\sum_kP_k = 1$, $P_kP_l=\delta_{kl}P_k$, $d = \sum_k$ `sizes[k]`.

    Args:
        sizes: Rank of each projector, all >= 1.
        key: Optional PRNG key for a random basis.

    Returns:
        Projectors, shape `(K, d, d)`, complex.

    Raises:
        ValueError: If `sizes` is empty or holds a rank < 1.

    Example:
        >>> p = sector_projectors([2, 1])
        >>> p.shape, [int(x) for x in jnp.real(jnp.trace(p, axis1=1, axis2=2))]
        ((2, 3, 3), [2, 1])
    """
    sizes = [int(s) for s in sizes]
    if not sizes or min(sizes) < 1:
        raise ValueError(f"Argument `sizes` must be a non-empty list of ranks >= 1, got {sizes}.")
    d = sum(sizes)
    basis = jnp.eye(d, dtype=complex) if key is None else haar_unitary(key, d)
    out, start = [], 0
    for s in sizes:
        cols = basis[:, start : start + s]
        out.append(cols @ cols.conj().T)
        start += s
    return jnp.stack(out)


def sector_weights(
    psi: Complex[Array, "*batch d"], projectors: Complex[Array, "K d d"]
) -> Float[Array, "*batch K"]:
    r"""Normalised sector weights $\langle\psi|P_k|\psi\rangle/\langle\psi|\psi\rangle$.

    Args:
        psi: Kets, shape `(*batch, d)` (same basis as `projectors`).
        projectors: Shape `(K, d, d)`.

    Returns:
        Weights, shape `(*batch, K)`, summing to 1 for complete projectors.
    """
    psi = jnp.asarray(psi)
    w = jnp.real(jnp.einsum("...a,kab,...b->...k", psi.conj(), projectors, psi))
    return w / jnp.sum(w, axis=-1, keepdims=True)


def born_probabilities(
    psi0: Complex[Array, " d"], projectors: Complex[Array, "K d d"]
) -> Float[Array, " K"]:
    r"""Born probabilities $p_k = \langle\psi_0|P_k|\psi_0\rangle$ of a normalised ket.

    arXiv:2504.16197, text after eq. 7: with
    $H=0$, $\gamma=0$ the SUI collapse ends in sector $k$ with this
    probability.

    Args:
        psi0: Ket, shape `(d,)`.
        projectors: Shape `(K, d, d)`.

    Returns:
        Shape `(K,)`.
    """
    return sector_weights(psi0, projectors)


def dephase(
    rho: Complex[Array, "*batch d d"], projectors: Complex[Array, "K d d"]
) -> Complex[Array, "*batch d d"]:
    r"""Block dephasing $\mathcal D(\rho) = \sum_k P_k\rho P_k$; for
    $\rho = |\psi_0\rangle\langle\psi_0|$ this is the Born state."""
    return jnp.einsum("kab,...bc,kcd->...ad", projectors, rho, projectors)


def hybrid_stationary_h0(
    chi: Complex[Array, "d d"], projectors: Complex[Array, "K d d"], gamma, Gamma
) -> Complex[Array, "d d"]:
    r"""Closed-form stationary state of eq. 8 for $H = 0$, $\gamma > 0$.

    $$
    \rho_\infty = \frac{\gamma\chi + \Gamma\,\mathcal D(\chi)}{\gamma + \Gamma},
    \qquad \mathcal D(\chi) = \sum_kP_k\chi P_k.
    $$

    Derivation: $\mathcal D$ is a projection ($\mathcal D^2 = \mathcal D$), so
    on $\rho = a\chi + b\mathcal D(\chi)$ the generator gives
    $\Gamma(\mathcal D - 1)\rho = -\Gamma a(\chi - \mathcal D\chi)$ and
    $\gamma(\chi - \rho)$; both vanish together for $a = \gamma/(\gamma+\Gamma)$,
    $b = \Gamma/(\gamma+\Gamma)$. Limits: $\chi$ as $\Gamma\to 0$,
    $\mathcal D(\chi)$ (not the Born state of $\rho_0$) as $\gamma\to 0$;
    see the module docstring.

    Args:
        chi: Steady state $\chi$ as a matrix, shape `(d, d)`.
        projectors: Shape `(K, d, d)`, same basis as `chi`.
        gamma: $\gamma > 0$.
        Gamma: $\Gamma \ge 0$.

    Returns:
        Shape `(d, d)`.
    """
    return (gamma * chi + Gamma * dephase(chi, projectors)) / (gamma + Gamma)


def zeno_stationary(
    hamiltonian: Complex[Array, "d d"],
    chi: Complex[Array, "d d"],
    projectors: Complex[Array, "K d d"],
    gamma,
) -> Complex[Array, "d d"]:
    r"""Stationary state of eq. 8 in the Zeno limit $\Gamma \to \infty$ ($\gamma > 0$).

    Strong collapse confines $\rho$ to block-diagonal matrices; projecting the
    generator onto them ($\mathcal D\mathcal L\mathcal D$, corrections
    $O(\|H\|^2/\Gamma)$) leaves
    $\dot\rho = -i[H_D,\rho] + \gamma(\mathcal D(\chi) - \rho)$ with
    $H_D = \sum_kP_kHP_k$, whose stationary state in the eigenbasis
    $\{\varepsilon_a\}$ of $H_D$ is

    $$
    (\rho_Z)_{ab} = \frac{\gamma\,\mathcal D(\chi)_{ab}}{\gamma + i(\varepsilon_a - \varepsilon_b)}.
    $$

    For $H = 0$ it is $\mathcal D(\chi)$, the $\Gamma\to\infty$ limit of
    `hybrid_stationary_h0`.

    Args:
        hamiltonian: Shape `(d, d)`.
        chi: Shape `(d, d)`.
        projectors: Shape `(K, d, d)`; all three in one basis.
        gamma: $\gamma > 0$.

    Returns:
        Shape `(d, d)`, in the basis of the arguments.
    """
    h_d = dephase(hamiltonian, projectors)
    eps, v = jnp.linalg.eigh(0.5 * (h_d + h_d.conj().T))
    dchi = v.conj().T @ dephase(chi, projectors) @ v
    w = eps.reshape(-1, 1) - eps.reshape(1, -1)
    return v @ (gamma * dchi / (gamma + 1j * w)) @ v.conj().T
