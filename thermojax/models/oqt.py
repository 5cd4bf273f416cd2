r"""Objective quantum thermalization (OQT) and its SUI hybrid with collapse.

Implements A. Mukherjee, "Objective quantum thermalization", arXiv:2504.16197 (OCR text
in ``shared/seeds/001_72cbdd6588fdbaef.txt``; notation of ``shared/PHYSICS.md`` §1).
Units: :math:`\hbar = 1`, so the paper's :math:`\alpha\mathcal N/\hbar` is the rate
``alpha_N`` (written :math:`\gamma`) and :math:`\mathcal J\mathcal N/\hbar` is ``Gamma``.

Everything dynamical works in the eigenbasis of :math:`H = \sum_\mu E_\mu|\mu\rangle
\langle\mu|` (ascending :math:`E_\mu`): states passed to :class:`OQTModel`'s dynamics
methods and to :class:`OQTSSE` are eigenbasis components. Convert with
``model.eigensystem.ket_to_eigenbasis`` / ``to_eigenbasis`` and back with
``ket_from_eigenbasis`` / ``from_eigenbasis``. The classmethod constructors
(:meth:`OQTModel.microcanonical`, :meth:`OQTModel.canonical`) take the initial state in
the basis of the Hamiltonian you pass.

Pieces:

* steady states :math:`\chi` (diagonal, returned as weights ``chi``, shape ``(d,)``):
  :func:`microcanonical_steady_state`, :func:`canonical_steady_state`,
  :func:`given_steady_state`, all returning a :class:`SteadyState` that reports the
  energy mismatch :math:`\mathrm{Tr}(\chi H) - E_0` (paper eqs. 3–4 ask it to vanish;
  for finite spectra it generally does not);
* the master equation (paper eqs. 6 and 8) three ways: the structured right-hand side
  :meth:`OQTModel.rhs`, the generic dense GKSL form with the :math:`d^2` jump operators
  (:func:`oqt_jump_ops`, :func:`gksl_liouvillian`, :meth:`OQTModel.liouvillian`) and the
  closed form :meth:`OQTModel.evolve`;
* the stationary state of the hybrid generator, :meth:`OQTModel.stationary_state`;
* the Itô stochastic Schrödinger equation (paper eqs. 5 and 7), :class:`OQTSSE`;
* per-state diagnostics, :func:`diagnostics` and :func:`ket_diagnostics`.

Decisions on edge cases (all documented where they act):

* **Degenerate levels** are eigenvalues closer than ``degeneracy_atol`` (default
  :math:`10^{-9}\max_\mu|E_\mu|`, chained, see :func:`thermojax.spectra.degenerate_levels`);
  a level enters the microcanonical window as a whole, judged by its mean energy.
* **Eigenstate input** (:math:`V_0 \approx 0`): no special case is needed; :math:`V_0`
  is computed as :math:`\sum_\mu p_\mu (E_\mu-E_0)^2` (no cancellation) and the window
  radius is :math:`\sqrt{V_0}` + ``degeneracy_atol``, so the window is the eigenstate's
  own degenerate level (paper, text after eq. 4: eigenstates stay stable).
* **Empty window** (only possible through rounding, since some populated level always
  lies within :math:`\sqrt{V_0}` of :math:`E_0`): fall back to the level(s) nearest
  :math:`E_0` (all levels within ``degeneracy_atol`` of the nearest distance).
* **Canonical** :math:`\chi_\beta`: :math:`\beta` solved by optimistix bisection on the
  dimensionless :math:`\beta(E_{\max}-E_{\min})`. :math:`E_0` outside
  :math:`[E_{\min}, E_{\max}]` raises; :math:`E_0` at an end (within ``degeneracy_atol``)
  returns the uniform state on the ground (top) level with :math:`\beta=+\infty`
  (:math:`-\infty`); a fully degenerate spectrum gives the uniform state with
  :math:`\beta = 0`.
* **Stationary state at** :math:`\gamma = 0`: the null space of the generator is then
  degenerate (every state block-diagonal in the :math:`P_k` is stationary when
  :math:`H=0`). :meth:`OQTModel.stationary_state` reports the null-space dimension and,
  given ``rho0``, returns the spectral projection of ``rho0`` onto the null space (the
  :math:`t\to\infty` limit), which is the Born state :math:`\sum_k P_k\rho_0P_k` for
  :math:`H=0`, :math:`\gamma=0`. Note the limits do not commute: for any
  :math:`\gamma > 0` the stationary state is unique and independent of :math:`\rho_0`;
  at :math:`H = 0` it is :math:`(\gamma\chi + \Gamma\sum_kP_k\chi P_k)/(\gamma+\Gamma)`,
  which tends to :math:`\sum_k P_k\chi P_k` (not the Born state of :math:`\rho_0`) as
  :math:`\gamma\to 0`. PHYSICS.md §1's "interpolates between the Born state
  (:math:`\gamma\to0`)" holds only for the :math:`\gamma = 0` long-time limit, or for
  times :math:`1/\Gamma \ll t \ll 1/\gamma`.
* **SSE expectations** are divided by the norm by default
  (``expectation="normalized"``); the paper's literal unnormalised form is
  ``expectation="raw"``. Identical on :math:`\langle\psi|\psi\rangle = 1`; the raw
  form is unstable under Euler–Maruyama (see :class:`OQTSSE`).
* **Checks**: shapes and options raise eagerly; values (rates, ``chi``, state norm,
  canonical range) raise ``ValueError`` eagerly when concrete and go through
  ``eqx.error_if`` when traced; projector and eigenvector checks run only on concrete
  values.
"""

import math
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import optimistix as optx
from jaxtyping import Array, ArrayLike, Bool, Complex, Float, Int, PyTree, Shaped

from ..spectra import (
    Eigensystem,
    degenerate_levels,
    eigh,
    is_concrete,
    ket_to_dm,
    purity,
    trace_distance,
    von_neumann_entropy,
)
from ..trajectories import AbstractSDE

__all__ = [
    "InteractionPictureSSE",
    "SteadyState",
    "energy_moments",
    "microcanonical_window",
    "microcanonical_steady_state",
    "canonical_chi",
    "canonical_steady_state",
    "given_steady_state",
    "oqt_jump_ops",
    "gksl_rhs",
    "gksl_liouvillian",
    "StationaryState",
    "OQTModel",
    "OQTSSE",
    "Diagnostics",
    "diagnostics",
    "ket_diagnostics",
    "d_chi",
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


def _nonneg_scalar(x, name: str) -> Float[Array, ""]:
    """A rate as a float array of shape (); negative or non-finite values raise."""
    x = jnp.asarray(x)
    if x.shape != ():
        raise ValueError(f"Argument `{name}` must be a scalar, got shape {x.shape}.")
    if jnp.iscomplexobj(x):
        raise ValueError(f"Argument `{name}` must be real, got dtype {x.dtype}.")
    x = x.astype(jnp.result_type(float))
    if is_concrete(x):
        v = float(x)
        if not math.isfinite(v) or v < 0:
            raise ValueError(f"Argument `{name}` must be finite and >= 0, got {v!r}.")
        return x
    return eqx.error_if(x, ~(jnp.isfinite(x) & (x >= 0)), f"`{name}` must be finite and >= 0.")


def _check_state(state, d: int, name: str, normalize: bool) -> tuple[Array, bool]:
    """Validate a ket ``(d,)`` or density matrix ``(d, d)``; return it (complex) and
    whether it is a ket. Unnormalised states raise unless ``normalize``."""
    state = jnp.asarray(state)
    if state.shape == (d,):
        is_ket = True
    elif state.shape == (d, d):
        is_ket = False
    else:
        raise ValueError(
            f"Argument `{name}` must be a ket of shape ({d},) or a density matrix of shape "
            f"({d}, {d}), got shape {state.shape}."
        )
    state = state.astype(jnp.result_type(state.dtype, complex))
    norm = jnp.sum(jnp.abs(state) ** 2) if is_ket else jnp.real(jnp.trace(state))
    if is_concrete(state, norm):
        s = np.asarray(state)
        if not np.all(np.isfinite(s)):
            raise ValueError(f"Argument `{name}` must be finite.")
        nrm = float(norm)
        if not nrm > 0:
            raise ValueError(f"Argument `{name}` must be a nonzero state, got norm {nrm!r}.")
        if not is_ket:
            herm = np.max(np.abs(s - s.conj().T))
            if herm > _STATE_ATOL * max(1.0, nrm):
                raise ValueError(
                    f"Argument `{name}` must be a Hermitian density matrix: max|rho - "
                    f"rho^dagger| = {herm:.3e}."
                )
            lam = np.linalg.eigvalsh(0.5 * (s + s.conj().T))
            if lam[0] < -_STATE_ATOL * nrm:
                raise ValueError(
                    f"Argument `{name}` must be positive semidefinite: smallest eigenvalue "
                    f"{lam[0]:.3e}."
                )
        if abs(nrm - 1.0) > _STATE_ATOL and not normalize:
            what = "<psi|psi>" if is_ket else "Tr rho"
            raise ValueError(
                f"Argument `{name}` must be normalised ({what} = 1 within {_STATE_ATOL:.0e}), "
                f"got {nrm!r}; pass `normalize=True` to rescale it."
            )
    elif not normalize:
        state = eqx.error_if(
            state, jnp.abs(norm - 1.0) > _STATE_ATOL, f"`{name}` must be normalised."
        )
    if normalize:
        state = state / (jnp.sqrt(norm) if is_ket else norm)
    return state, is_ket


def _check_projectors(projectors, es: Eigensystem, atol: float) -> Complex[Array, "K d d"]:
    """Validate a complete orthogonal set of projectors (original basis); return them in
    the eigenbasis."""
    p = jnp.asarray(projectors)
    d = es.dim
    if p.ndim != 3 or p.shape[1:] != (d, d) or p.shape[0] < 1:
        raise ValueError(
            f"Argument `projectors` must have shape (K, {d}, {d}) with K >= 1, got {p.shape}."
        )
    p = p.astype(jnp.result_type(p.dtype, complex))
    if is_concrete(p):
        h = np.asarray(p)
        herm = np.max(np.abs(h - np.conj(np.swapaxes(h, -1, -2))))
        if herm > atol:
            raise ValueError(
                f"Argument `projectors` must be Hermitian: max|P_k - P_k^dagger| = {herm:.3e}."
            )
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
                "Argument `projectors` must be complete, sum_k P_k = 1: max deviation "
                f"{comp:.3e} exceeds {atol:.0e}."
            )
    return es.to_eigenbasis(p)


def _default_atol(energies: Array, degeneracy_atol) -> Array:
    if degeneracy_atol is not None:
        return jnp.asarray(degeneracy_atol, energies.dtype)
    return 1e-9 * jnp.max(jnp.abs(energies))


# ----------------------------------------------------------------------------------
# steady states chi
# ----------------------------------------------------------------------------------


class SteadyState(eqx.Module):
    r"""A diagonal OQT steady state :math:`\chi` and how it relates to the initial state.

    Attributes:
        chi: Diagonal weights :math:`\chi_\mu` in the eigenbasis, shape ``(d,)``,
            nonnegative, summing to 1.
        energy: Initial energy :math:`E_0 = \langle H\rangle` (NaN if no state was given).
        energy_variance: Initial variance :math:`V_0` (NaN if no state was given).
        energy_mismatch: :math:`\mathrm{Tr}(\chi H) - E_0`. The ensemble energy relaxes as
            :math:`dE/dt = \gamma(\mathrm{Tr}(\chi H) - E)`, so it is conserved only if this
            vanishes (seed ``001_72cbdd6588fdbaef.txt``, arXiv:2504.16197, eq. 4).
        window: Support of :math:`\chi`, boolean, shape ``(d,)``.
        beta: Inverse temperature for canonical :math:`\chi_\beta` (:math:`\pm\infty` at
            the spectrum's ends); NaN otherwise.
    """

    chi: Float[Array, " d"]
    energy: Float[Array, ""]
    energy_variance: Float[Array, ""]
    energy_mismatch: Float[Array, ""]
    window: Bool[Array, " d"]
    beta: Float[Array, ""]


def _populations(state: Array, is_ket: bool) -> Float[Array, " d"]:
    if is_ket:
        return jnp.abs(state) ** 2
    return jnp.real(jnp.diagonal(state))


@eqx.filter_jit
def energy_moments(
    energies: Float[Array, " d"], state: Shaped[Array, " d"] | Shaped[Array, "d d"]
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    r"""Energy mean and variance of a state given in the eigenbasis.

    .. math:: E_0 = \sum_\mu p_\mu E_\mu,\qquad V_0 = \sum_\mu p_\mu (E_\mu - E_0)^2,

    with :math:`p_\mu = |\psi_\mu|^2` (ket) or :math:`\rho_{\mu\mu}` (density matrix),
    normalised by their sum. The centred form of :math:`V_0` avoids the cancellation of
    :math:`\langle H^2\rangle - \langle H\rangle^2`.

    Args:
        energies: Ascending energies, shape ``(d,)``.
        state: Ket ``(d,)`` or density matrix ``(d, d)`` in the eigenbasis.

    Returns:
        ``(E0, V0)``, each of shape ``()``.
    """
    energies = jnp.asarray(energies)
    state = jnp.asarray(state)
    p = _populations(state, state.ndim == 1)
    p = p / jnp.sum(p)
    e0 = jnp.sum(p * energies)
    v0 = jnp.sum(p * (energies - e0) ** 2)
    return e0, v0


@eqx.filter_jit
def microcanonical_window(
    energies: Float[Array, " d"],
    energy: Float[Array, ""],
    variance: Float[Array, ""],
    *,
    degeneracy_atol: float | None = None,
) -> Bool[Array, " d"]:
    r"""Microcanonical window :math:`W = \{\mu : |E_\mu - E_0| \le \sqrt{V_0}\}`.

    Seed ``001_72cbdd6588fdbaef.txt`` (arXiv:2504.16197), text between eqs. 4 and 5:
    :math:`\chi_E` is uniform on the eigenstates in :math:`[E_0-\sqrt{V_0},
    E_0+\sqrt{V_0}]`. Degenerate levels (eigenvalues chained within ``degeneracy_atol``)
    enter or leave together, judged by the level's mean energy; the radius is
    :math:`\sqrt{V_0}` + ``degeneracy_atol`` (so an eigenstate, :math:`V_0\approx0`,
    selects its own level). If rounding leaves the window empty, the level(s) nearest
    :math:`E_0` are used.

    Args:
        energies: Ascending energies, shape ``(d,)``.
        energy: :math:`E_0`, shape ``()``.
        variance: :math:`V_0 \ge 0`, shape ``()`` (negative rounding is clipped).
        degeneracy_atol: Absolute energy tolerance; default :math:`10^{-9}\max|E_\mu|`.

    Returns:
        Boolean mask, shape ``(d,)``, never empty.

    Example:
        >>> import jax.numpy as jnp
        >>> e = jnp.array([0.0, 1.0, 1.0, 2.0, 3.0])
        >>> microcanonical_window(e, 1.5, 0.25).tolist()
        [False, True, True, True, False]
    """
    energies = jnp.asarray(energies)
    d = energies.shape[0]
    atol = _default_atol(energies, degeneracy_atol)
    labels = degenerate_levels(energies, atol)
    sums = jax.ops.segment_sum(energies, labels, num_segments=d)
    counts = jax.ops.segment_sum(jnp.ones_like(energies), labels, num_segments=d)
    level_energy = (sums / jnp.where(counts > 0, counts, 1.0))[labels]
    dist = jnp.abs(level_energy - energy)
    radius = jnp.sqrt(jnp.clip(variance, 0.0, None))
    inside = dist <= radius + atol
    nearest = dist <= jnp.min(dist) + atol
    return jnp.where(jnp.any(inside), inside, nearest)


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
    r"""Microcanonical :math:`\chi_E = |W|^{-1}\sum_{\mu\in W}|\mu\rangle\langle\mu|` of a
    state.

    Seed ``001_72cbdd6588fdbaef.txt`` (arXiv:2504.16197), eq. 5 and the text before it;
    window rules as in :func:`microcanonical_window`.

    Args:
        energies: Ascending energies, shape ``(d,)``.
        state: Initial ket ``(d,)`` or density matrix ``(d, d)`` *in the eigenbasis*.
        degeneracy_atol: Level-grouping tolerance (energy units), default
            :math:`10^{-9}\max|E_\mu|`.
        normalize: Rescale an unnormalised state instead of raising.

    Returns:
        A :class:`SteadyState` (``beta`` is NaN).

    Raises:
        ValueError: If ``state`` has the wrong shape, is not finite, not normalised
            (unless ``normalize``), or (density matrix) not Hermitian / positive.

    Example:
        >>> import jax.numpy as jnp
        >>> e = jnp.array([0.0, 1.0, 2.0, 3.0])
        >>> psi = jnp.array([0.0, 1.0, 1.0, 0.0]) / jnp.sqrt(2.0)
        >>> microcanonical_steady_state(e, psi).chi.tolist()
        [0.0, 0.5, 0.5, 0.0]
    """
    energies = jnp.asarray(energies)
    state, is_ket = _check_state(state, energies.shape[0], "state", normalize)
    e0, v0 = energy_moments(energies, state)
    window = microcanonical_window(energies, e0, v0, degeneracy_atol=degeneracy_atol)
    chi = window.astype(energies.dtype) / jnp.sum(window)
    return _steady(energies, chi, window, e0, v0, jnp.nan)


def canonical_chi(energies: Float[Array, " d"], beta: Float[Array, ""]) -> Float[Array, " d"]:
    r"""Canonical weights :math:`\chi_\mu = e^{-\beta E_\mu}/Z` (overflow-safe softmax).

    Args:
        energies: Energies, shape ``(d,)``.
        beta: Inverse temperature (1/energy), shape ``()``.

    Returns:
        Weights, shape ``(d,)``.
    """
    return jax.nn.softmax(-beta * jnp.asarray(energies))


@eqx.filter_jit
def _canonical_solve(energies, e0, tol, *, rtol: float, atol: float, max_steps: int):
    """Jitted core of :func:`canonical_steady_state` (one compilation per size)."""
    if energies.shape[0] == 1:
        return jnp.ones_like(energies), jnp.zeros((), energies.dtype)
    emin, emax = energies[0], energies[-1]
    spread = emax - emin
    safe_spread = jnp.where(spread > 0, spread, 1.0)
    eps = (energies - emin) / safe_spread
    at_bottom = e0 - emin <= tol
    at_top = emax - e0 <= tol
    interior = ~(at_bottom | at_top)
    # a target with a root keeps the bisection's interval expansion finite
    target = jnp.where(interior, (e0 - emin) / safe_spread, 0.5)
    eps_solve = jnp.where(interior, eps, jnp.linspace(0.0, 1.0, eps.shape[0]))

    def fn(x, args):
        e, t = args
        return jnp.sum(jax.nn.softmax(-x * e) * e) - t

    sol = optx.root_find(
        fn,
        optx.Bisection(rtol=rtol, atol=atol, expand_if_necessary=True),
        jnp.zeros((), energies.dtype),
        args=(eps_solve, target),
        options=dict(lower=-1.0, upper=1.0),
        max_steps=max_steps,
    )
    beta_interior = sol.value / safe_spread
    labels = degenerate_levels(energies, tol)
    ground = (labels == labels[0]).astype(energies.dtype)
    top = (labels == labels[-1]).astype(energies.dtype)
    chi = jnp.where(
        interior,
        jax.nn.softmax(-sol.value * eps),
        jnp.where(at_bottom, ground / jnp.sum(ground), top / jnp.sum(top)),
    )
    beta = jnp.where(
        interior,
        beta_interior,
        jnp.where(at_bottom & at_top, 0.0, jnp.where(at_bottom, jnp.inf, -jnp.inf)),
    )
    return chi, beta


def canonical_steady_state(
    energies: Float[Array, " d"],
    state: Shaped[Array, " d"] | Shaped[Array, "d d"] | None = None,
    *,
    energy: Float[ArrayLike, ""] | None = None,
    degeneracy_atol: float | None = None,
    normalize: bool = False,
    rtol: float = 1e-12,
    atol: float = 1e-13,
    max_steps: int = 512,
) -> SteadyState:
    r"""Canonical :math:`\chi_\beta = e^{-\beta H}/Z` with :math:`\mathrm{Tr}(\chi_\beta H)=E_0`.

    Seed ``001_72cbdd6588fdbaef.txt`` (arXiv:2504.16197), text after eq. 4. The scalar
    root :math:`x = \beta(E_{\max}-E_{\min})` of the monotone function
    :math:`x \mapsto (\langle E\rangle_x - E_0)/(E_{\max}-E_{\min})` is found with
    ``optimistix.Bisection`` (interval expanded as needed); gradients flow by implicit
    differentiation. At the spectrum's ends (within ``degeneracy_atol``) the limit is
    returned: the uniform state on the ground level (:math:`\beta=+\infty`) or top level
    (:math:`\beta=-\infty`); a fully degenerate spectrum gives :math:`\beta=0`.

    Args:
        energies: Ascending energies, shape ``(d,)``.
        state: Initial ket ``(d,)`` or density matrix ``(d, d)`` in the eigenbasis,
            setting :math:`E_0 = \langle H\rangle`.
        energy: Alternatively, the target energy :math:`E_0` itself (exactly one of
            ``state`` and ``energy``; ``energy_variance`` is then NaN).
        degeneracy_atol: Energy tolerance for the ends and level grouping.
        normalize: Rescale an unnormalised state instead of raising.
        rtol: Relative tolerance on :math:`x` for the bisection.
        atol: Absolute tolerance on :math:`x` and on the scaled energy residual.
        max_steps: Maximum bisection steps.

    Returns:
        A :class:`SteadyState`; ``beta`` is the solved :math:`\beta` (1/energy) and
        ``energy_mismatch`` the residual :math:`\mathrm{Tr}(\chi_\beta H) - E_0`.

    Raises:
        ValueError: If ``state`` is invalid (see :func:`microcanonical_steady_state`),
            not exactly one of ``state``/``energy`` is given, or :math:`E_0` lies outside
            :math:`[E_{\min}, E_{\max}]` (checked eagerly; inside
            ``jit`` an ``eqx.error_if`` runtime error).
    """
    energies = jnp.asarray(energies)
    if (state is None) == (energy is None):
        raise ValueError("Give exactly one of the arguments `state` and `energy`.")
    if state is not None:
        state, _ = _check_state(state, energies.shape[0], "state", normalize)
        e0, v0 = energy_moments(energies, state)
    else:
        e0 = jnp.asarray(energy, energies.dtype)
        if e0.shape != ():
            raise ValueError(f"Argument `energy` must be a scalar, got shape {e0.shape}.")
        v0 = jnp.asarray(jnp.nan, energies.dtype)
    tol = _default_atol(energies, degeneracy_atol)
    emin, emax = energies[0], energies[-1]
    out_of_range = (e0 < emin - tol) | (e0 > emax + tol)
    if is_concrete(out_of_range):
        if bool(out_of_range):
            raise ValueError(
                f"Initial energy E0 = {float(e0)!r} lies outside the range "
                f"[{float(emin)!r}, {float(emax)!r}] reachable by canonical states."
            )
    else:
        e0 = eqx.error_if(e0, out_of_range, "E0 outside the canonical range [E_min, E_max].")
    chi, beta = _canonical_solve(energies, e0, tol, rtol=rtol, atol=atol, max_steps=max_steps)
    return _steady(energies, chi, chi > 0, e0, v0, beta)


def given_steady_state(
    energies: Float[Array, " d"],
    chi: Float[ArrayLike, " d"],
    state: Shaped[Array, " d"] | Shaped[Array, "d d"] | None = None,
    *,
    atol: float = 1e-10,
    normalize: bool = False,
) -> SteadyState:
    r"""Wrap user-given diagonal weights :math:`\chi_\mu` as a :class:`SteadyState`.

    Args:
        energies: Ascending energies, shape ``(d,)``.
        chi: Weights, shape ``(d,)``: real, finite, :math:`\ge 0` and summing to 1 within
            ``atol`` (tiny negative rounding within ``atol`` is clipped to 0).
        state: Optional initial state (eigenbasis) for ``energy`` and ``energy_mismatch``;
            without it those are NaN.
        atol: Tolerance of the checks.
        normalize: Passed to the state check.

    Returns:
        A :class:`SteadyState` (``beta`` NaN).

    Raises:
        ValueError: If ``chi`` has the wrong shape, is complex, negative, not finite or
            does not sum to 1 (eagerly, or via ``eqx.error_if`` inside ``jit``).
    """
    energies = jnp.asarray(energies)
    d = energies.shape[0]
    chi = jnp.asarray(chi)
    if chi.shape != (d,):
        raise ValueError(f"Argument `chi` must have shape ({d},), got {chi.shape}.")
    if jnp.iscomplexobj(chi):
        raise ValueError(
            f"Argument `chi` must hold real diagonal weights, got dtype {chi.dtype}."
        )
    chi = chi.astype(energies.dtype)
    bad_sign = jnp.any(chi < -atol) | ~jnp.all(jnp.isfinite(chi))
    bad_sum = jnp.abs(jnp.sum(chi) - 1.0) > atol
    if is_concrete(bad_sign, bad_sum):
        if bool(bad_sign):
            raise ValueError(f"Argument `chi` must be finite and >= 0, got {np.asarray(chi)}.")
        if bool(bad_sum):
            raise ValueError(f"Argument `chi` must sum to 1, got sum {float(jnp.sum(chi))!r}.")
    else:
        chi = eqx.error_if(chi, bad_sign | bad_sum, "`chi` must be >= 0 and sum to 1.")
    chi = jnp.clip(chi, 0.0, None)
    if state is None:
        e0 = v0 = jnp.nan
    else:
        state, _ = _check_state(state, d, "state", normalize)
        e0, v0 = energy_moments(energies, state)
    return _steady(energies, chi, chi > 0, e0, v0, jnp.nan)


# ----------------------------------------------------------------------------------
# generic GKSL
# ----------------------------------------------------------------------------------


@eqx.filter_jit
def oqt_jump_ops(chi: Float[Array, " d"], gamma: Float[ArrayLike, ""]) -> Complex[Array, "d2 d d"]:
    r"""The :math:`d^2` OQT jump operators :math:`\sqrt{\gamma\chi_\mu}\,|\mu\rangle\langle\nu|`.

    Seed ``001_72cbdd6588fdbaef.txt`` (arXiv:2504.16197), eqs. 5–6 with
    :math:`L_{\mu\nu} = |\mu\rangle\langle\nu|` and :math:`\mathcal A^\mu = \gamma\chi_\mu`.
    In the eigenbasis; operator index ``k = mu * d + nu``.

    Args:
        chi: Steady-state weights, shape ``(d,)``.
        gamma: Rate :math:`\gamma = \alpha\mathcal N/\hbar`, shape ``()``.

    Returns:
        Jump operators, shape ``(d*d, d, d)``.
    """
    chi = jnp.asarray(chi)
    d = chi.shape[0]
    amp = jnp.sqrt(gamma) * jnp.sqrt(chi)
    eye = jnp.eye(d, dtype=complex)
    ops = amp[:, None, None, None] * eye[:, None, :, None] * eye[None, :, None, :]
    return ops.reshape(d * d, d, d)


@eqx.filter_jit
def gksl_rhs(
    rho: Complex[Array, "*batch d d"],
    hamiltonian: Shaped[Array, "d d"],
    jump_ops: Complex[Array, "K d d"],
) -> Complex[Array, "*batch d d"]:
    r"""Generic GKSL right-hand side with explicit jump operators (dense reference).

    .. math:: \dot\rho = -i[H,\rho] + \sum_k \big(L_k\rho L_k^\dagger
        - \tfrac12\{L_k^\dagger L_k, \rho\}\big)

    Args:
        rho: Density matrices, shape ``(*batch, d, d)``.
        hamiltonian: Shape ``(d, d)`` (:math:`\hbar=1`).
        jump_ops: Shape ``(K, d, d)``; rates are absorbed in the operators.

    Returns:
        :math:`\dot\rho`, shape ``(*batch, d, d)``.
    """
    k = jnp.einsum("kba,kbc->ac", jump_ops.conj(), jump_ops)
    comm = jnp.einsum("ab,...bc->...ac", hamiltonian, rho) - jnp.einsum(
        "...ab,bc->...ac", rho, hamiltonian
    )
    sand = jnp.einsum("kab,...bc,kdc->...ad", jump_ops, rho, jump_ops.conj())
    anti = jnp.einsum("ab,...bc->...ac", k, rho) + jnp.einsum("...ab,bc->...ac", rho, k)
    return -1j * comm + sand - 0.5 * anti


@eqx.filter_jit
def gksl_liouvillian(
    hamiltonian: Shaped[Array, "d d"], jump_ops: Complex[Array, "K d d"]
) -> Complex[Array, "d2 d2"]:
    r"""Dense Liouvillian superoperator of a GKSL generator, row-major vectorisation.

    With :math:`\mathrm{vec}(A\rho B) = (A\otimes B^T)\,\mathrm{vec}\rho` (``rho.reshape(d*d)``):

    .. math:: \mathcal L = -i(H\otimes 1 - 1\otimes H^T) + \sum_k L_k\otimes\bar L_k
        - \tfrac12 (K\otimes 1 + 1\otimes K^T),\quad K=\sum_k L_k^\dagger L_k.

    Memory :math:`d^4` complex numbers and :math:`K d^4` operations: a cross-check for
    :math:`d \lesssim 32`.

    Args:
        hamiltonian: Shape ``(d, d)``.
        jump_ops: Shape ``(K, d, d)``.

    Returns:
        Superoperator, shape ``(d*d, d*d)``.
    """
    d = hamiltonian.shape[0]
    eye = jnp.eye(d, dtype=complex)
    k = jnp.einsum("kba,kbc->ac", jump_ops.conj(), jump_ops)
    sand = jnp.einsum("kac,kbd->abcd", jump_ops, jump_ops.conj()).reshape(d * d, d * d)
    h = hamiltonian.astype(complex)
    return (
        -1j * (jnp.kron(h, eye) - jnp.kron(eye, h.T))
        + sand
        - 0.5 * (jnp.kron(k, eye) + jnp.kron(eye, k.T))
    )


# ----------------------------------------------------------------------------------
# the model
# ----------------------------------------------------------------------------------


class StationaryState(eqx.Module):
    r"""Null vector of the OQT/SUI generator.

    Attributes:
        rho: Stationary density matrix (eigenbasis), shape ``(d, d)``, trace 1 (or
            ``Tr rho0`` when projected from ``rho0``).
        residual: :math:`\|\mathcal L(\rho_\infty)\|_F` with the structured right-hand side.
        null_dim: Number of singular values of :math:`\mathcal L` below
            ``1e-10 * max`` (1 means a unique stationary state).
    """

    rho: Complex[Array, "d d"]
    residual: Float[Array, ""]
    null_dim: Int[Array, ""]


class OQTModel(eqx.Module):
    r"""OQT master equation with optional SUI collapse, in the eigenbasis of :math:`H`.

    .. math:: \dot\rho = -i[H,\rho] + \gamma(\chi\,\mathrm{Tr}\rho - \rho)
        + \Gamma\Big(\sum_k P_k\rho P_k - \rho\Big)

    Seed ``001_72cbdd6588fdbaef.txt`` (arXiv:2504.16197), eqs. 6 and 8, with
    :math:`\hbar = 1`, :math:`\gamma = \alpha\mathcal N` (``alpha_N``) and
    :math:`\Gamma = \mathcal J\mathcal N` (``Gamma``). ``alpha_N`` and ``Gamma`` are array
    fields, differentiable with ``jax.grad``/``eqx.filter_grad``; sizes and the SUI
    switch are static.

    Args:
        hamiltonian: Dense Hermitian matrix ``(d, d)`` (e.g. a heat-chain or GOE
            Hamiltonian), an :class:`~thermojax.spectra.Eigensystem`, or a tuple
            ``(energies, eigenvectors)``.
        chi: A :class:`SteadyState`, or diagonal weights ``(d,)`` (validated by
            :func:`given_steady_state`).
        alpha_N: Thermalization rate :math:`\gamma \ge 0` (1/time).
        Gamma: Collapse rate :math:`\Gamma \ge 0` (1/time), used only with
            ``projectors``.
        projectors: Complete set of orthogonal projectors, shape ``(K, d, d)``, in the
            basis of ``hamiltonian`` (stored in the eigenbasis). ``None``: no SUI term.
        projector_atol: Tolerance of the projector checks.

    Raises:
        ValueError: Non-Hermitian ``hamiltonian``, bad ``chi``, negative or non-finite
            ``alpha_N``/``Gamma``, or projectors that are not Hermitian, orthogonal and
            complete (each message names the argument).

    Example:
        >>> import jax.numpy as jnp
        >>> h = jnp.array([[0.0, 0.3], [0.3, 1.0]])
        >>> model = OQTModel.microcanonical(h, jnp.array([1.0, 0.0]), alpha_N=0.5)
        >>> rho0 = model.eigensystem.to_eigenbasis(jnp.diag(jnp.array([1.0, 0.0])))
        >>> model.evolve(rho0, jnp.array([0.0, 1.0])).shape
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
                f"Argument `chi` has shape {chi.chi.shape}, expected ({es.dim},) to match "
                "`hamiltonian`."
            )
        self.eigensystem = es
        self.steady = chi
        self.alpha_N = _nonneg_scalar(alpha_N, "alpha_N")
        self.Gamma = _nonneg_scalar(Gamma, "Gamma")
        if projectors is None:
            self.projectors = None
            self.sui = False
        else:
            self.projectors = _check_projectors(projectors, es, projector_atol)
            self.sui = True

    # -- constructors ---------------------------------------------------------------

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
        r"""Model whose :math:`\chi` is the microcanonical state of ``state0``.

        Args:
            hamiltonian: As in :class:`OQTModel`.
            state0: Initial ket ``(d,)`` or density matrix ``(d, d)`` in the basis of
                ``hamiltonian``.
            alpha_N, Gamma, projectors: As in :class:`OQTModel`.
            degeneracy_atol, normalize: As in :func:`microcanonical_steady_state`.

        Raises:
            ValueError: As :class:`OQTModel` and :func:`microcanonical_steady_state`.
        """
        es = _as_eigensystem(hamiltonian)
        state = _state_to_eigenbasis(es, state0)
        steady = microcanonical_steady_state(
            es.energies, state, degeneracy_atol=degeneracy_atol, normalize=normalize
        )
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
        r"""Model whose :math:`\chi` is canonical with :math:`\mathrm{Tr}(\chi_\beta H)=E_0`.

        Arguments as :meth:`microcanonical`; see :func:`canonical_steady_state`.

        Raises:
            ValueError: As :class:`OQTModel` and :func:`canonical_steady_state`.
        """
        es = _as_eigensystem(hamiltonian)
        state = _state_to_eigenbasis(es, state0)
        steady = canonical_steady_state(
            es.energies, state, degeneracy_atol=degeneracy_atol, normalize=normalize
        )
        return cls(es, steady, alpha_N, Gamma=Gamma, projectors=projectors)

    # -- basic properties -----------------------------------------------------------

    @property
    def dim(self) -> int:
        """Hilbert-space dimension ``d``."""
        return self.eigensystem.dim

    @property
    def energies(self) -> Float[Array, " d"]:
        """Ascending energies, shape ``(d,)``."""
        return self.eigensystem.energies

    @property
    def chi(self) -> Float[Array, " d"]:
        r"""Steady-state weights :math:`\chi_\mu`, shape ``(d,)``."""
        return self.steady.chi

    @property
    def energy_mismatch(self) -> Float[Array, ""]:
        r""":math:`\mathrm{Tr}(\chi H) - E_0` (NaN if :math:`E_0` is unknown)."""
        return self.steady.energy_mismatch

    def hamiltonian_eig(self) -> Complex[Array, "d d"]:
        r""":math:`H` in its eigenbasis, :math:`\mathrm{diag}(E)`, complex, ``(d, d)``."""
        return jnp.diag(self.energies).astype(complex)

    def chi_matrix(self) -> Complex[Array, "d d"]:
        r""":math:`\chi` as a density matrix in the eigenbasis, ``(d, d)``."""
        return jnp.diag(self.chi).astype(complex)

    # -- master equation ------------------------------------------------------------

    @eqx.filter_jit
    def rhs(
        self, t: Float[ArrayLike, ""], rho: Complex[Array, "*batch d d"], args=None
    ) -> Complex[Array, "*batch d d"]:
        r"""Structured right-hand side of eqs. 6/8 (diffrax signature ``(t, y, args)``).

        In the eigenbasis,
        :math:`\dot\rho_{\mu\nu} = -i(E_\mu-E_\nu)\rho_{\mu\nu}
        + \gamma(\chi_\mu\delta_{\mu\nu}\mathrm{Tr}\rho - \rho_{\mu\nu})
        + \Gamma(\sum_k P_k\rho P_k - \rho)_{\mu\nu}`; cost :math:`O(d^2)`
        (:math:`O(Kd^3)` with SUI). Complex-valued: integrate through
        ``thermojax.evolve.solve_ode``, which splits real and imaginary parts.

        Args:
            t: Time (unused; the generator is time independent).
            rho: Density matrices in the eigenbasis, shape ``(*batch, d, d)``.
            args: Unused.

        Returns:
            :math:`\dot\rho`, shape of ``rho``.
        """
        del t, args
        rho = jnp.asarray(rho)
        lead = (1,) * (rho.ndim - 2)
        e = self.energies
        omega = (e[:, None] - e[None, :]).reshape(lead + (self.dim, self.dim))
        tr = jnp.trace(rho, axis1=-2, axis2=-1)[..., None, None]
        chi_m = self.chi_matrix().reshape(lead + (self.dim, self.dim))
        out = -1j * omega * rho + self.alpha_N * (chi_m * tr - rho)
        if self.sui:
            p = self.projectors
            dephased = jnp.einsum("kab,...bc,kcd->...ad", p, rho, p)
            out = out + self.Gamma * (dephased - rho)
        return out

    def jump_ops(self) -> Complex[Array, "K2 d d"]:
        r"""All jump operators in the eigenbasis: the :math:`d^2` OQT operators
        :math:`\sqrt{\gamma\chi_\mu}|\mu\rangle\langle\nu|` followed (with SUI) by
        :math:`\sqrt\Gamma P_k`; shape ``(d*d [+ K], d, d)``."""
        ops = oqt_jump_ops(self.chi, self.alpha_N)
        if self.sui:
            ops = jnp.concatenate([ops, jnp.sqrt(self.Gamma) * self.projectors], axis=0)
        return ops

    def liouvillian(self) -> Complex[Array, "d2 d2"]:
        r"""Dense generic-GKSL Liouvillian (row-major vec), shape ``(d*d, d*d)``; see
        :func:`gksl_liouvillian` (a cross-check for :math:`d\lesssim 32`)."""
        return gksl_liouvillian(self.hamiltonian_eig(), self.jump_ops())

    def evolve(
        self, rho0: Complex[Array, "*batch d d"], times: Float[ArrayLike, " T"]
    ) -> Complex[Array, "T *batch d d"]:
        r"""Closed-form solution of eq. 6 (time-independent :math:`H`, no SUI term).

        .. math:: \rho(t) = c\,\chi + e^{-\gamma t}\,U(t)(\rho_0 - c\,\chi)U(t)^\dagger,
            \quad U(t)=e^{-iHt},\ c=\mathrm{Tr}\rho_0,

        i.e. :math:`\rho_{\mu\nu}(t) = c\chi_\mu\delta_{\mu\nu} + e^{-\gamma t -
        i(E_\mu-E_\nu)t}(\rho_0-c\chi)_{\mu\nu}` (PHYSICS.md §1; seed
        ``001_72cbdd6588fdbaef.txt``, arXiv:2504.16197, eq. 6).

        Args:
            rho0: Initial density matrices in the eigenbasis, shape ``(*batch, d, d)``.
            times: Times, shape ``(T,)`` (1/energy units).

        Returns:
            :math:`\rho(t)`, shape ``(T, *batch, d, d)``.

        Raises:
            ValueError: If the model has an SUI term (use :meth:`evolve_dense` or an ODE
                solve of :meth:`rhs`) or ``rho0``'s last axes are not ``(d, d)``.
        """
        if self.sui:
            raise ValueError(
                "OQTModel.evolve is the closed form without collapse; this model has "
                "`projectors` (SUI). Use `evolve_dense` or integrate `rhs`."
            )
        rho0 = _check_rho_shape(rho0, self.dim, "rho0")
        times = jnp.asarray(times)
        if times.ndim != 1:
            raise ValueError(f"Argument `times` must have shape (T,), got {times.shape}.")
        return self._evolve_closed(rho0, times)

    @eqx.filter_jit
    def _evolve_closed(self, rho0, times):
        d = self.dim
        nb = rho0.ndim - 2
        c = jnp.trace(rho0, axis1=-2, axis2=-1)[..., None, None]
        chi_m = self.chi_matrix().reshape((1,) * nb + (d, d))
        dev = rho0 - c * chi_m
        e = self.energies
        omega = e[:, None] - e[None, :]
        tt = times.reshape((-1,) + (1,) * (nb + 2))
        factor = jnp.exp(-self.alpha_N * tt - 1j * tt * omega.reshape((1,) * (nb + 1) + (d, d)))
        return c[None] * chi_m[None] + factor * dev[None]

    def evolve_dense(
        self, rho0: Complex[Array, "*batch d d"], times: Float[ArrayLike, " T"]
    ) -> Complex[Array, "T *batch d d"]:
        r"""Exact evolution by the matrix exponential of the dense generic-GKSL
        Liouvillian, :math:`\mathrm{vec}\rho(t) = e^{\mathcal L t}\mathrm{vec}\rho_0`.
        Works with SUI; cost :math:`O(T d^6)`, for :math:`d\lesssim 16`.

        Args:
            rho0: Shape ``(*batch, d, d)`` (eigenbasis).
            times: Shape ``(T,)``.

        Returns:
            Shape ``(T, *batch, d, d)``.
        """
        rho0 = _check_rho_shape(rho0, self.dim, "rho0")
        times = jnp.asarray(times)
        if times.ndim != 1:
            raise ValueError(f"Argument `times` must have shape (T,), got {times.shape}.")
        return self._evolve_dense(rho0, times)

    @eqx.filter_jit
    def _evolve_dense(self, rho0, times):
        d = self.dim
        big = self.liouvillian()
        flat = rho0.reshape((-1, d * d))

        def one(t):
            return jnp.einsum("ij,bj->bi", jax.scipy.linalg.expm(big * t), flat)

        out = jax.vmap(one)(times)
        return out.reshape((times.shape[0],) + rho0.shape)

    def stationary_state(
        self,
        rho0: Complex[Array, "d d"] | None = None,
        *,
        solver: lx.AbstractLinearSolver = lx.SVD(),
        null_rtol: float = 1e-10,
    ) -> StationaryState:
        r"""Null vector of the hybrid generator (eq. 8) by a lineax least-squares solve.

        Without ``rho0``: solves :math:`[\mathcal L;\ \mathrm{vec}(1)^T]\,x = [0;\ 1]`
        (trace normalisation appended as an extra row), the minimum-norm least-squares
        solution with the default ``lineax.SVD()``. With a unique null vector this is
        the stationary state; if ``null_dim > 1`` (e.g. :math:`\gamma = 0`) it is one
        stationary state among many — pass ``rho0``.

        With ``rho0``: the spectral projection of ``rho0`` onto :math:`\ker\mathcal L`
        along :math:`\mathrm{ran}\,\mathcal L` (the :math:`t\to\infty` limit of
        :math:`e^{\mathcal Lt}\rho_0`, or its time average when undamped oscillations
        remain), computed as :math:`\rho_0 - \mathcal L x` with
        :math:`\mathcal L^2 x = \mathcal L\rho_0` solved by least squares. For
        :math:`H=0`, :math:`\gamma=0` this is the Born state :math:`\sum_kP_k\rho_0P_k`.
        The squared operator loses accuracy when slow rates are below
        :math:`\sim 10^{-6}` of the fastest.

        Args:
            rho0: Optional initial density matrix (eigenbasis), shape ``(d, d)``.
            solver: A lineax solver able to do least squares (``lx.SVD()`` default,
                ``lx.QR()`` when the null space is known to be one-dimensional).
            null_rtol: Relative singular-value threshold for ``null_dim``.

        Returns:
            A :class:`StationaryState` with the residual :math:`\|\mathcal L\rho_\infty\|_F`.
        """
        if rho0 is not None:
            rho0 = _check_rho_shape(rho0, self.dim, "rho0")
            if rho0.shape != (self.dim, self.dim):
                raise ValueError(
                    f"Argument `rho0` must have shape ({self.dim}, {self.dim}), got {rho0.shape}."
                )
        return self._stationary(rho0, solver, null_rtol)

    @eqx.filter_jit
    def _stationary(self, rho0, solver, null_rtol):
        d = self.dim
        big = self.liouvillian()
        if rho0 is None:
            tr_row = jnp.eye(d, dtype=big.dtype).reshape(1, d * d)
            a = jnp.concatenate([big, tr_row], axis=0)
            b = jnp.zeros(d * d + 1, big.dtype).at[-1].set(1.0)
            x = lx.linear_solve(lx.MatrixLinearOperator(a), b, solver=solver).value
            rho = x.reshape(d, d)
        else:
            v0 = rho0.reshape(d * d)
            x = lx.linear_solve(
                lx.MatrixLinearOperator(big @ big), big @ v0, solver=solver
            ).value
            rho = (v0 - big @ x).reshape(d, d)
        rho = 0.5 * (rho + rho.conj().T)
        residual = jnp.linalg.norm(self.rhs(0.0, rho))
        sv = jnp.linalg.svd(big, compute_uv=False)
        null_dim = jnp.sum(sv <= null_rtol * sv[0])
        return StationaryState(rho=rho, residual=residual, null_dim=null_dim)

    def sse(
        self,
        noise: Literal["reduced", "literal"] = "reduced",
        expectation: Literal["raw", "normalized"] = "normalized",
    ) -> "OQTSSE":
        """The stochastic Schrödinger equation of this model; see :class:`OQTSSE`."""
        return OQTSSE(self, noise=noise, expectation=expectation)


def _state_to_eigenbasis(es: Eigensystem, state) -> Array:
    state = jnp.asarray(state)
    if state.shape == (es.dim,):
        return es.ket_to_eigenbasis(state)
    if state.shape == (es.dim, es.dim):
        return es.to_eigenbasis(state)
    raise ValueError(
        f"Argument `state0` must be a ket of shape ({es.dim},) or a density matrix of shape "
        f"({es.dim}, {es.dim}), got shape {state.shape}."
    )


def _check_rho_shape(rho, d: int, name: str) -> Array:
    rho = jnp.asarray(rho)
    if rho.ndim < 2 or rho.shape[-2:] != (d, d):
        raise ValueError(
            f"Argument `{name}` must have shape (*batch, {d}, {d}), got {rho.shape}."
        )
    return rho.astype(jnp.result_type(rho.dtype, complex))


# ----------------------------------------------------------------------------------
# stochastic Schrödinger equation
# ----------------------------------------------------------------------------------


class OQTSSE(AbstractSDE):
    r"""Itô stochastic Schrödinger equation of OQT (+ SUI), eigenbasis components.

    Seed ``001_72cbdd6588fdbaef.txt`` (arXiv:2504.16197), eqs. 5 and 7; PHYSICS.md §1.
    With :math:`a_\mu = \gamma\chi_\mu`, :math:`n = \langle\psi|\psi\rangle`,
    :math:`p_\mu = |\psi_\mu|^2`, :math:`A = \sum_\nu a_\nu p_\nu`, the paper's
    expectations taken literally (``expectation="raw"``,
    :math:`\langle P_k\rangle = \psi^\dagger P_k\psi`):

    .. math::
        f_\mu = -iE_\mu\psi_\mu + a_\mu n\psi_\mu - \tfrac12\gamma\psi_\mu
            - \tfrac12 A n\psi_\mu
            - \tfrac{\Gamma}{2}\Big[\sum_k (P_k - \langle P_k\rangle)^2\psi\Big]_\mu

        (g\,dW)_\mu = \sqrt{a_\mu}X_\mu - \psi_\mu\sum_\kappa\sqrt{a_\kappa}\bar\psi_\kappa
            X_\kappa + \sqrt\Gamma\Big[\sum_k (P_k - \langle P_k\rangle)\psi\,dW^k\Big]_\mu

    ``expectation="normalized"`` (default) divides every expectation by :math:`n`
    (:math:`\langle L_{\mu\nu}\rangle = \bar\psi_\mu\psi_\nu/n`,
    :math:`\langle P_k\rangle = \psi^\dagger P_k\psi/n`), i.e.
    :math:`f_\mu = -iE_\mu\psi_\mu + (a_\mu - \tfrac12\gamma - \tfrac12 A/n)\psi_\mu
    + \dots` and the noise projection carries :math:`1/n`. The two forms are the same
    SDE on the physical manifold :math:`n = 1` (where the paper's ψ lives); both
    conserve :math:`n` exactly in Itô calculus and both give, for any :math:`n`, the
    one-step Euler–Maruyama mean :math:`E[\psi'\psi'^\dagger] = \rho + dt\,\mathcal
    L(\rho) + O(dt^2)` with the linear generator. Only the normalised form has no
    first-order noise in the norm off the unit sphere,
    :math:`\mathrm{Re}\langle\psi|g\,dW\rangle = 0`; the raw form has
    :math:`\langle\psi|g\,dW\rangle \propto (1-n)`, so the :math:`O(dt)` norm error
    of a discrete step is amplified: measured at :math:`d=4`,
    :math:`\gamma=\Gamma=1`, :math:`dt=0.01`, :math:`t=20`, 2% of 1000 Euler–Maruyama
    paths reached NaN and others norms of :math:`10^{-21}`, while the normalised form
    stayed finite with norms in :math:`[0.28, 3.5]` (the Born-rule collapse also
    fails with ``"raw"``). Use ``"raw"`` for comparisons with the paper's literal
    equation at small ``dt``.

    Noise forms (static field ``noise``), ``dw`` entries are increments with variance
    ``dt``:

    * ``"literal"``: ``dw["oqt"]`` has shape ``(d, d)``, channel :math:`(\mu,\nu)` is the
      paper's :math:`dW^{\mu\nu}`, and :math:`X_\mu = \sum_\nu\psi_\nu dW^{\mu\nu}`.
    * ``"reduced"`` (default): ``dw["oqt"]`` has shape ``(d, 2)``. Given :math:`\psi`, the
      :math:`X_\mu` are independent complex Gaussians with :math:`E|X_\mu|^2 = n\,dt`
      and :math:`E X_\mu^2 = c\,dt`, :math:`c = \sum_\nu\psi_\nu^2` (equivalently
      :math:`\mathrm{Cov}(\mathrm{Re}X,\mathrm{Im}X) = dt\,[[a\cdot a, a\cdot b],
      [a\cdot b, b\cdot b]]`, :math:`a=\mathrm{Re}\psi`, :math:`b=\mathrm{Im}\psi`). They
      are built from two normals per row as
      :math:`X_\mu = e^{i\varphi/2}\big(\sigma_+ z_{\mu1} + i\sigma_- z_{\mu2}\big)`,
      :math:`\varphi=\arg c`, :math:`\sigma_\pm^2 = (n\pm|c|)/2`, which is exact also
      in the rank-one case :math:`|c| = n` (parallel real and imaginary parts,
      :math:`\sigma_-=0`). Same law for the process and for every Euler–Maruyama
      step; :math:`O(d)` instead of :math:`O(d^2)` random numbers.

    With SUI (static ``sui``), ``dw["sui"]`` has shape ``(K,)``. ``dw`` is always a dict.
    Discrete steps make the norm drift by :math:`O(dt)` per step (a random walk);
    report it (``record_norm`` in :func:`thermojax.trajectories.simulate_trajectories`,
    :func:`ket_diagnostics`); renormalising after each step is that module's
    documented ``normalize`` option.

    Args:
        model: An :class:`OQTModel` (energies, :math:`\chi`, rates, projectors are copied).
        noise: ``"reduced"`` or ``"literal"`` (static).
        expectation: ``"normalized"`` or ``"raw"`` (static), see above.

    Raises:
        ValueError: For an unknown ``noise`` or ``expectation``.
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
        """``{"oqt": (d, 2) or (d, d)[, "sui": (K,)]}`` of real ``ShapeDtypeStruct``."""
        d = self.dim
        dtype = self.energies.dtype
        shape = (d, 2) if self.noise == "reduced" else (d, d)
        out = {"oqt": jax.ShapeDtypeStruct(shape, dtype)}
        if self.sui:
            out["sui"] = jax.ShapeDtypeStruct((self.projectors.shape[0],), dtype)
        return out

    def divergence_norm(self) -> float:
        """A ket whose norm passes 10 is flagged as diverged by default: the Itô SSE keeps
        ``<psi|psi> = 1`` and Euler--Maruyama drifts only by O(sqrt(dt)) per unit time,
        so a norm of 10 is a blow-up (e.g. of the ``expectation="raw"`` form), never
        legitimate data. Pass ``max_norm=float("inf")`` to the integrator to disable."""
        return 10.0

    def drift(self, t, y: Complex[Array, " d"], args=None) -> Complex[Array, " d"]:
        """Itô drift :math:`f(t, \\psi)`, shape ``(d,)`` (eigenbasis)."""
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
        """:math:`X_\\mu` from the OQT noise block ``w``."""
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
        """Noise contraction :math:`g(t,\\psi)\\,dW`, shape ``(d,)``; ``dw`` as
        :meth:`noise_shape` (increments of variance ``dt``)."""
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
# ----------------------------------------------------------------------------------


class Diagnostics(eqx.Module):
    r"""Per-state OQT diagnostics (all in the eigenbasis; leading ``*batch`` axes).

    Expectation values (``energy``, ``energy_variance``, ``populations``) are of the
    state normalised by its norm; ``norm`` and ``norm_drift`` show that norm; the
    distances and ``purity`` use the state as given; ``entropy`` uses
    :math:`\rho/\mathrm{Tr}\rho`.

    Attributes:
        norm: :math:`\langle\psi|\psi\rangle` or :math:`\mathrm{Tr}\rho`, ``(*batch,)``.
        norm_drift: ``norm - 1``.
        energy: :math:`E = \mathrm{Tr}(\rho H)/\mathrm{Tr}\rho`.
        energy_variance: :math:`\mathrm{Tr}(\rho H^2)/\mathrm{Tr}\rho - E^2`.
        populations: :math:`\rho_{\mu\mu}/\mathrm{Tr}\rho`, ``(*batch, d)``.
        d_chi: :math:`D_\chi = \mathrm{Tr}[(\rho-\chi)^2]` (paper, after eq. 6).
        trace_distance: :math:`\tfrac12\|\rho-\chi\|_1`.
        entropy: Von Neumann entropy (nats).
        purity: :math:`\mathrm{Tr}\rho^2`.
        energy_mismatch: :math:`\mathrm{Tr}(\chi H) - E`; :math:`dE/dt = \gamma\times` this.
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
    r""":math:`D_\chi = \mathrm{Tr}[(\rho-\chi)^2]` (seed ``001_72cbdd6588fdbaef.txt``,
    arXiv:2504.16197, text after eq. 6: :math:`D_\chi(t) = D_\chi(0)e^{-2\gamma t}`).

    Args:
        model: Supplies :math:`\chi`.
        rho: Density matrices in the eigenbasis, ``(*batch, d, d)``.

    Returns:
        Shape ``(*batch,)``.
    """
    return _d_chi(model, _check_rho_shape(rho, model.dim, "rho"))


@eqx.filter_jit
def _d_chi(model: OQTModel, rho: Array) -> Array:
    diff = rho - model.chi_matrix().reshape((1,) * (rho.ndim - 2) + (model.dim, model.dim))
    return jnp.real(jnp.einsum("...ij,...ji->...", diff, diff))


def diagnostics(model: OQTModel, rho: Complex[Array, "*batch d d"]) -> Diagnostics:
    """All :class:`Diagnostics` of density matrices ``rho`` (eigenbasis), shape
    ``(*batch, d, d)``; results have shape ``(*batch,)`` (``populations``:
    ``(*batch, d)``).

    Raises:
        ValueError: If ``rho``'s last two axes are not ``(d, d)``.
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
    r""":class:`Diagnostics` of kets (eigenbasis), shape ``(*batch, d)``, through
    :math:`|\psi\rangle\langle\psi|` (memory :math:`d^2` per ket). For the ensemble state
    average first: ``diagnostics(model, ket_to_dm(psi).mean(0))``.

    Raises:
        ValueError: If ``psi``'s last axis is not ``d``.
    """
    psi = jnp.asarray(psi)
    if psi.ndim < 1 or psi.shape[-1] != model.dim:
        raise ValueError(
            f"Argument `psi` must have shape (*batch, {model.dim}), got {psi.shape}."
        )
    return diagnostics(model, ket_to_dm(psi))


class InteractionPictureSSE(AbstractSDE):
    r"""The OQT SSE for :math:`\phi(t) = e^{iHt}\psi(t)` (eigenbasis, :math:`\hbar = 1`).

    With :math:`U(t) = \mathrm{diag}(e^{-iE_\mu t})` and the Itô SSE
    :math:`d\psi = f(t,\psi)dt + g(t,\psi)dW` of ``sse`` (seed
    ``001_72cbdd6588fdbaef.txt``, arXiv:2504.16197, eqs. 5 and 7), the exact change of
    variables gives

    .. math:: d\phi = U^\dagger\big[f(t, U\phi) + iHU\phi\big]dt + U^\dagger g(t, U\phi)dW,

    the same process (same populations, :math:`\rho = U\rho_IU^\dagger`) without the
    fast :math:`-iE_\mu` rotation in the drift. Its Euler–Maruyama scheme has no
    :math:`E_\mu^2dt^2` population gain (measured in :mod:`thermojax.experiments.oqt`), so ensemble means
    follow the master equation to :math:`O(\gamma^2dt)` instead of
    :math:`O(E_{\max}^2dt)`. Works with either noise form and with SUI.

    Args:
        sse: An :class:`~thermojax.models.oqt.OQTSSE`.

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
