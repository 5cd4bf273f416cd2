r"""Thermal states and their thermodynamics, for any spectrum.

Units: $\hbar = k_B = 1$; `beta` is an inverse energy, temperatures are
energies. States passed as `state` are in the eigenbasis of the spectrum (kets
`(d,)` or density matrices `(d, d)`).

* energy moments of a state, the microcanonical window and state;
* the Gibbs (canonical) weights and state, and the root find for $\beta$ at a
  given mean energy (optimistix bisection, differentiable by implicit function);
* log partition function, heat capacity, Bose–Einstein occupation.

**Degenerate levels.** Eigenvalues closer than `degeneracy_atol` are one level
(single-linkage chaining, `thermojax.spectra.degenerate_levels`). The default
tolerance is $10^{-9}$ times the spectrum's spread $E_{\max}-E_{\min}$, so
adding a constant to $H$ changes nothing (a tolerance scaled with
$\max|E|$ would grow with the constant and merge distinct levels).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import optimistix as optx
from jaxtyping import Array, ArrayLike, Bool, Float, Shaped

from ._checks import check_positive, is_concrete
from .spectra import degenerate_levels

__all__ = [
    "default_degeneracy_atol",
    "energy_moments",
    "microcanonical_window",
    "microcanonical_weights",
    "gibbs_weights",
    "gibbs_state",
    "log_partition_function",
    "solve_beta",
    "heat_capacity",
    "bose_einstein",
]

#: Relative degeneracy tolerance (times the spectrum's spread).
DEGENERACY_RTOL = 1e-9


def default_degeneracy_atol(energies: Float[Array, " d"]) -> Float[Array, ""]:
    r"""Default level-grouping tolerance, $10^{-9}(E_{\max}-E_{\min})$.

    Invariant under $H \to H + c$. A fully degenerate spectrum gets 0 (every
    eigenvalue is then one level anyway).

    Example:
        >>> import jax.numpy as jnp
        >>> e = jnp.array([0.0, 1.0, 2.0])
        >>> bool(default_degeneracy_atol(e) == default_degeneracy_atol(e + 1e6))
        True
    """
    energies = jnp.asarray(energies)
    return DEGENERACY_RTOL * (jnp.max(energies) - jnp.min(energies))


def _atol(energies, degeneracy_atol):
    if degeneracy_atol is not None:
        return jnp.asarray(degeneracy_atol, energies.dtype)
    return default_degeneracy_atol(energies)


def _populations(state: Array) -> Float[Array, " d"]:
    if state.ndim == 1:
        return jnp.abs(state) ** 2
    return jnp.real(jnp.diagonal(state))


@eqx.filter_jit
def energy_moments(
    energies: Float[Array, " d"], state: Shaped[Array, " d"] | Shaped[Array, "d d"]
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    r"""Energy mean and variance of a state given in the eigenbasis.

    $$
    E_0 = \sum_\mu p_\mu E_\mu,\qquad V_0 = \sum_\mu p_\mu (E_\mu - E_0)^2,
    $$

    with $p_\mu = |\psi_\mu|^2$ (ket) or $\rho_{\mu\mu}$ (density matrix),
    normalised by their sum. The centred form of $V_0$ avoids the cancellation of
    $\langle H^2\rangle - \langle H\rangle^2$.

    Args:
        energies: Energies, shape `(d,)`.
        state: Ket `(d,)` or density matrix `(d, d)` in the eigenbasis.

    Returns:
        `(E0, V0)`, each of shape `()`.

    Example:
        >>> import jax.numpy as jnp
        >>> e0, v0 = energy_moments(jnp.array([0.0, 2.0]), jnp.array([1.0, 1.0]) / jnp.sqrt(2.0))
        >>> float(e0), float(v0)
        (1.0, 1.0)
    """
    energies = jnp.asarray(energies)
    p = _populations(jnp.asarray(state))
    p = p / jnp.sum(p)
    e0 = jnp.sum(p * energies)
    v0 = jnp.sum(p * (energies - e0) ** 2)
    return e0, v0


@eqx.filter_jit
def microcanonical_window(
    energies: Float[Array, " d"],
    energy: Float[ArrayLike, ""],
    variance: Float[ArrayLike, ""],
    *,
    degeneracy_atol: float | None = None,
) -> Bool[Array, " d"]:
    r"""Microcanonical window $W = \{\mu : |E_\mu - E_0| \le \sqrt{V_0}\}$.

    Degenerate levels enter or leave together, judged by the level's mean energy; the
    radius is $\sqrt{V_0}$ + `degeneracy_atol` (so an eigenstate,
    $V_0\approx0$, selects its own level). If rounding leaves the window empty,
    the level(s) nearest $E_0$ are used. (OQT uses this window for its steady
    state, A. Mukherjee, arXiv:2504.16197, text between eqs. 4 and 5.)

    Args:
        energies: Ascending energies, shape `(d,)`.
        energy: $E_0$, shape `()`.
        variance: $V_0 \ge 0$, shape `()` (negative rounding is clipped).
        degeneracy_atol: Absolute tolerance; default `default_degeneracy_atol`.

    Returns:
        Boolean mask, shape `(d,)`, never empty.

    Example:
        >>> import jax.numpy as jnp
        >>> e = jnp.array([0.0, 1.0, 1.0, 2.0, 3.0])
        >>> microcanonical_window(e, 1.5, 0.25).tolist()
        [False, True, True, True, False]
    """
    energies = jnp.asarray(energies)
    d = energies.shape[0]
    atol = _atol(energies, degeneracy_atol)
    labels = degenerate_levels(energies, atol)
    sums = jax.ops.segment_sum(energies, labels, num_segments=d)
    counts = jax.ops.segment_sum(jnp.ones_like(energies), labels, num_segments=d)
    level_energy = (sums / jnp.where(counts > 0, counts, 1.0))[labels]
    dist = jnp.abs(level_energy - energy)
    radius = jnp.sqrt(jnp.clip(variance, 0.0, None))
    inside = dist <= radius + atol
    nearest = dist <= jnp.min(dist) + atol
    return jnp.where(jnp.any(inside), inside, nearest)


def microcanonical_weights(window: Bool[Array, " d"], dtype=float) -> Float[Array, " d"]:
    r"""Uniform weights $1/|W|$ on a window, shape `(d,)`."""
    w = jnp.asarray(window).astype(dtype)
    return w / jnp.sum(w)


def gibbs_weights(energies: Float[Array, " d"], beta: Float[ArrayLike, ""]) -> Float[Array, " d"]:
    r"""Canonical weights $e^{-\beta E_\mu}/Z$ (an overflow-safe softmax).

    Example:
        >>> import jax.numpy as jnp
        >>> gibbs_weights(jnp.array([0.0, 0.0]), 3.0).tolist()
        [0.5, 0.5]
    """
    return jax.nn.softmax(-jnp.asarray(beta) * jnp.asarray(energies))


def log_partition_function(energies: Float[Array, " d"], beta: Float[ArrayLike, ""]) -> Float[Array, ""]:
    r"""$\ln Z = \ln\sum_\mu e^{-\beta E_\mu}$ (log-sum-exp, overflow safe)."""
    return jax.scipy.special.logsumexp(-jnp.asarray(beta) * jnp.asarray(energies))


def gibbs_state(hamiltonian, beta: Float[ArrayLike, ""]) -> Array:
    r"""Gibbs state $\sigma_\beta = e^{-\beta H}/\mathrm{Tr}\,e^{-\beta H}$.

    Args:
        hamiltonian: A Hermitian matrix `(d, d)` (or `Qobj`), or an
            `thermojax.spectra.Eigensystem`.
        beta: Inverse temperature (1/energy), a scalar; may be negative.

    Returns:
        The density matrix `(d, d)` in the basis of `hamiltonian`.

    Example:
        >>> import jax.numpy as jnp
        >>> sigma = gibbs_state(jnp.diag(jnp.array([0.0, 1.0])), 0.0)
        >>> jnp.real(jnp.diagonal(sigma)).tolist()
        [0.5, 0.5]
    """
    from .spectra import Eigensystem, eigh

    es = hamiltonian if isinstance(hamiltonian, Eigensystem) else eigh(hamiltonian, name="hamiltonian")
    w = gibbs_weights(es.energies, beta)
    return es.op_from_eigenbasis(jnp.diag(w).astype(jnp.result_type(es.vectors.dtype, complex)))


@eqx.filter_jit
def _solve_beta(energies, e0, tol, *, rtol: float, atol: float, max_steps: int):
    if energies.shape[0] == 1:
        return jnp.ones_like(energies), jnp.zeros((), energies.dtype)
    emin, emax = jnp.min(energies), jnp.max(energies)
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
    order = jnp.argsort(energies)
    labels = jnp.zeros_like(order).at[order].set(degenerate_levels(energies[order], tol))
    ground = (labels == 0).astype(energies.dtype)
    top = (labels == jnp.max(labels)).astype(energies.dtype)
    weights = jnp.where(
        interior,
        jax.nn.softmax(-sol.value * eps),
        jnp.where(at_bottom, ground / jnp.sum(ground), top / jnp.sum(top)),
    )
    beta = jnp.where(
        interior,
        sol.value / safe_spread,
        jnp.where(at_bottom & at_top, 0.0, jnp.where(at_bottom, jnp.inf, -jnp.inf)),
    )
    return weights, beta


def solve_beta(
    energies: Float[Array, " d"],
    energy: Float[ArrayLike, ""],
    *,
    degeneracy_atol: float | None = None,
    rtol: float = 1e-12,
    atol: float = 1e-13,
    max_steps: int = 512,
) -> tuple[Float[Array, ""], Float[Array, " d"]]:
    r"""Inverse temperature with $\mathrm{Tr}(\sigma_\beta H) = E$, and the Gibbs weights.

    The scalar root $x = \beta(E_{\max}-E_{\min})$ of the monotone
    $x\mapsto(\langle E\rangle_x - E)/(E_{\max}-E_{\min})$ is found with
    `optimistix.Bisection` (interval expanded as needed); gradients flow by implicit
    differentiation. At the spectrum's ends (within `degeneracy_atol`) the limit is
    returned: the uniform state on the ground level ($\beta=+\infty$) or the top
    level ($\beta=-\infty$); a fully degenerate spectrum gives $\beta = 0$.

    Args:
        energies: Energies, shape `(d,)` (any order).
        energy: Target mean energy $E$.
        degeneracy_atol: Tolerance for the ends and the level grouping.
        rtol: Relative bisection tolerance on $x$.
        atol: Absolute bisection tolerance on $x$.
        max_steps: Maximum bisection steps.

    Returns:
        `(beta, weights)`: $\beta$ (1/energy) and the weights `(d,)`.

    Raises:
        ValueError: If $E$ lies outside $[E_{\min}, E_{\max}]$ (eagerly when
            concrete, via `eqx.error_if` under `jit`).

    Example:
        >>> import jax.numpy as jnp
        >>> beta, w = solve_beta(jnp.array([0.0, 1.0]), 0.25)
        >>> round(float(beta), 6)  # 1/(e^beta + 1) = 0.25
        1.098612
    """
    energies = jnp.asarray(energies)
    e0 = jnp.asarray(energy, energies.dtype)
    if e0.shape != ():
        raise ValueError(f"Argument `energy` must be a scalar, got shape {e0.shape}.")
    tol = _atol(energies, degeneracy_atol)
    emin, emax = jnp.min(energies), jnp.max(energies)
    out_of_range = (e0 < emin - tol) | (e0 > emax + tol)
    if is_concrete(out_of_range):
        if bool(out_of_range):
            raise ValueError(
                f"Argument `energy` = {float(e0)!r} lies outside the range [{float(emin)!r}, "
                f"{float(emax)!r}] reachable by Gibbs states."
            )
    else:
        e0 = eqx.error_if(e0, out_of_range, "Argument `energy` lies outside [E_min, E_max].")
    weights, beta = _solve_beta(energies, e0, tol, rtol=rtol, atol=atol, max_steps=max_steps)
    return beta, weights


def heat_capacity(energies: Float[Array, " d"], beta: Float[ArrayLike, ""]) -> Float[Array, ""]:
    r"""Canonical heat capacity $C = \beta^2(\langle E^2\rangle_\beta - \langle E\rangle_\beta^2)$
    (units of $k_B$).

    Example:
        >>> import jax.numpy as jnp
        >>> # two levels 0, 1 at beta = 1: C = e/(1+e)^2
        >>> round(float(heat_capacity(jnp.array([0.0, 1.0]), 1.0)), 6)
        0.196612
    """
    energies = jnp.asarray(energies)
    w = gibbs_weights(energies, beta)
    mean = jnp.sum(w * energies)
    return jnp.asarray(beta) ** 2 * jnp.sum(w * (energies - mean) ** 2)


def bose_einstein(omega: Float[ArrayLike, "..."], beta: Float[ArrayLike, ""]) -> Float[Array, "..."]:
    r"""Bose–Einstein (Planck) occupation $\bar n = 1/(e^{\beta\omega} - 1)$.

    Args:
        omega: Mode frequencies (energies), any shape, > 0.
        beta: Inverse temperature, > 0.

    Raises:
        ValueError: If `beta <= 0` (concrete values).

    Example:
        >>> round(float(bose_einstein(1.0, 1.0)), 6)
        0.581977
    """
    beta = check_positive(beta, "beta")
    return 1.0 / jnp.expm1(jnp.asarray(beta) * jnp.asarray(omega))
