r"""Paper-agnostic spectral helpers: eigenbases, random matrices, entropies, distances.

Everything here works for any model: Hermitian eigen-decompositions with their basis
changes, grouping of (numerically) degenerate levels, Gaussian-orthogonal-ensemble
sampling, and the standard state functionals (von Neumann entropy, purity, trace and
Hilbert–Schmidt distances, partial trace). Units: $\hbar = k_B = 1$; entropies
in nats.

Conventions: kets `psi` have shape `(*batch, d)`, density matrices `rho` shape
`(*batch, d, d)`; leading batch axes broadcast. Eigenvectors are the *columns* of
`Eigensystem.vectors` (`H = V diag(E) V^\dagger`) and energies are ascending.
"""

import math
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Complex, Float, Int, PRNGKeyArray, Shaped

from ._checks import check_hermitian, is_concrete
from .interop import to_array
from .operators import matmul

__all__ = [
    "Eigensystem",
    "eigh",
    "degenerate_levels",
    "goe_matrix",
    "ket_to_dm",
    "expect",
    "von_neumann_entropy",
    "purity",
    "trace_distance",
    "hilbert_schmidt_distance",
    "partial_trace",
    "is_concrete",
    "random_ket",
    "haar_unitary",
]


class Eigensystem(eqx.Module):
    r"""Eigendecomposition $H = V\,\mathrm{diag}(E)\,V^\dagger$ of a Hermitian matrix,
    with the basis changes and the exact propagator it gives.

    $$
    \psi(t) = V\,e^{-iEt}\,V^\dagger\psi(0),\qquad
    \rho(t) = V\,e^{-iEt}\,V^\dagger\rho(0)V\,e^{iEt}\,V^\dagger \quad(\hbar = 1)
    $$

    The decomposition (`jnp.linalg.eigh`, $O(d^3)$) is done once; each save
    time then costs one `(d, d) x (d, B)` product for a batch of `B` kets.
    Differentiable with respect to the matrix entries through `eigh` (non-degenerate
    spectrum assumed).

    Basis changes have unambiguous names: `ket_to_eigenbasis` /
    `ket_from_eigenbasis` for kets $V^\dagger\psi$ / $V\psi$, and
    `op_to_eigenbasis` / `op_from_eigenbasis` for operators and density matrices
    $V^\dagger AV$ / $VAV^\dagger$.

    Attributes:
        energies: Eigenvalues, shape `(d,)`, ascending (energy units).
        vectors: Unitary matrix whose *columns* are the eigenvectors, shape `(d, d)`.

    Construct from a dense matrix with `from_hamiltonian` (or `eigh`), or
    from a decomposition you already have: `Eigensystem(energies, vectors)` checks
    the shapes and, when the values are concrete, that the energies are real and
    ascending and `vectors` is unitary to `1e-8` (`check_unitary=False` skips the
    last one, a $d^3$ product: 70 ms of a 220 ms setup at $d = 1000$; `eigh` skips it
    for LAPACK's own output).

    Raises:
        ValueError: On wrong shapes, NaN, descending energies or a non-unitary `vectors`.

    Example:
        >>> import jax.numpy as jnp
        >>> es = Eigensystem.from_hamiltonian(jnp.array([[0.0, 1.0], [1.0, 0.0]]))
        >>> res = es.evolve(jnp.array([1.0, 0.0]), jnp.array([0.0, jnp.pi / 2]))
        >>> jnp.round(jnp.abs(res.states[-1]) ** 2, 12).tolist()  # full Rabi flip
        [0.0, 1.0]
    """

    energies: Float[Array, " d"]
    vectors: Shaped[Array, "d d"]

    def __init__(self, energies: ArrayLike, vectors: ArrayLike, *, check_unitary: bool = True):
        energies = jnp.asarray(energies)
        vectors = jnp.asarray(vectors)
        if jnp.iscomplexobj(energies):
            raise ValueError(f"Argument `energies` must be real, got dtype {energies.dtype}.")
        if energies.ndim != 1:
            raise ValueError(f"Argument `energies` must have shape (d,), got {energies.shape}.")
        d = energies.shape[0]
        if vectors.shape != (d, d):
            raise ValueError(
                f"Argument `vectors` must have shape (d, d) = {(d, d)} to match `energies`, "
                f"got {vectors.shape}."
            )
        energies = energies.astype(jnp.result_type(energies.dtype, float))
        if is_concrete(energies, vectors):
            e = np.asarray(energies)
            v = np.asarray(vectors)
            if not (np.all(np.isfinite(e)) and np.all(np.isfinite(v))):
                raise ValueError(
                    "Arguments `energies` and `vectors` must be finite: the decomposition holds NaN "
                    "(was the matrix finite?)."
                )
            if np.any(np.diff(e) < 0):
                raise ValueError("Argument `energies` must be sorted in ascending order.")
            err = np.max(np.abs(v.conj().T @ v - np.eye(d))) if d and check_unitary else 0.0
            if err > 1e-8:
                raise ValueError(
                    f"Argument `vectors` must be unitary (columns = orthonormal eigenvectors): "
                    f"max |V^dagger V - 1| = {err:.3e} exceeds 1e-8."
                )
        self.energies = energies
        self.vectors = vectors

    @classmethod
    def from_hamiltonian(
        cls, hamiltonian: ArrayLike, *, name: str = "hamiltonian", rtol: float = 1e-10, check: bool = True
    ) -> "Eigensystem":
        """Diagonalise a dense Hermitian matrix (or `Qobj`); see `eigh`.

        Raises:
            ValueError: If the matrix is not square, not finite (said as such) or, with
                `check`, not Hermitian.
        """
        return eigh(hamiltonian, name=name, rtol=rtol, check=check)

    @property
    def dim(self) -> int:
        """Hilbert-space dimension `d`."""
        return self.energies.shape[0]

    # -- basis changes ------------------------------------------------------------

    def ket_to_eigenbasis(self, psi: Shaped[Array, "*batch d"]) -> Shaped[Array, "*batch d"]:
        r"""Ket components in the eigenbasis, $V^\dagger\psi$, shape `(*batch, d)`."""
        return matmul(jnp.asarray(psi), jnp.conj(self.vectors))

    def ket_from_eigenbasis(self, psi: Shaped[Array, "*batch d"]) -> Shaped[Array, "*batch d"]:
        r"""Ket from eigenbasis components, $V\psi$, shape `(*batch, d)`."""
        return matmul(jnp.asarray(psi), self.vectors.T)

    def op_to_eigenbasis(self, op: Shaped[Array, "*batch d d"]) -> Shaped[Array, "*batch d d"]:
        r"""Operator or density matrix in the eigenbasis, $V^\dagger AV$."""
        v = self.vectors
        return jnp.einsum("ia,...ij,jb->...ab", v.conj(), op, v)

    def op_from_eigenbasis(self, op: Shaped[Array, "*batch d d"]) -> Shaped[Array, "*batch d d"]:
        r"""Operator from the eigenbasis back to the original basis, $VAV^\dagger$."""
        v = self.vectors
        return jnp.einsum("ia,...ab,jb->...ij", v, op, v.conj())

    def matrix(self) -> Shaped[Array, "d d"]:
        r"""The dense matrix $V\,\mathrm{diag}(E)\,V^\dagger$."""
        return self.op_from_eigenbasis(jnp.diag(self.energies).astype(self.vectors.dtype))

    # -- propagation --------------------------------------------------------------

    def propagator(self, t: Float[ArrayLike, ""]) -> Complex[Array, "d d"]:
        r"""$U(t) = V e^{-iEt}V^\dagger$, shape `(d, d)`."""
        return self.op_from_eigenbasis(jnp.diag(jnp.exp(-1j * self.energies * t)))

    def evolve(
        self,
        state0: Shaped[ArrayLike, "*batch d"] | Shaped[ArrayLike, "*batch d d"],
        tsave: Float[ArrayLike, " T"],
        *,
        e_ops=None,
        rows: Array | slice | None = None,
        time_batch: int | None = None,
        save_states: bool = True,
        normalize: bool = False,
        kind: str = "any",
    ):
        r"""Exact evolution of kets or density matrices, saved at `tsave`.

        Args:
            state0: Kets `(*batch, d)` or density matrices `(*batch, d, d)` in the
                original basis (a `Qobj` is accepted).
            tsave: Save times, shape `(T,)` (any order; $\hbar/E$ units).
            e_ops: `None`; operators `(E, d, d)`; or a function of one time's states
                `(*batch, d)` returning `(*batch, E)` (structured observables at
                $O(d)$ cost, e.g. subsystem populations).
            rows: Kets only: an index (array or slice) of the basis components to form;
                `psi(t)[..., rows]` is all that is computed (and what a callable
                `e_ops` receives), at a fraction of the cost.
            time_batch: Save times per matrix product (`lax.map` `batch_size`).
            save_states: Keep the states (`False`: only `expect`).
            normalize: Rescale unnormalised initial states instead of raising.
            kind: `"ket"`, `"dm"` or `"any"`; a `(..., d, d)` state is read as
                density matrices unless `kind="ket"` (a batch of `d` kets).

        Returns:
            A `thermojax.result.Result` with `states` `(*batch, T, d)` (or
            `(*batch, T, d, d)`) and `expect` `(*batch, E, T)`.

        Raises:
            ValueError: On a state of the wrong shape, non-finite, unnormalised (unless
                `normalize`), or a density matrix that is not Hermitian/positive.
            MemoryError: If the saved states would not fit in memory.
        """
        from ._checks import check_memory, check_state, estimate_bytes
        from .result import Result

        state0, is_ket = check_state(state0, self.dim, "state0", kind=kind, normalize=normalize)
        tsave = jnp.asarray(tsave, dtype=self.energies.dtype)
        if tsave.ndim != 1:
            raise ValueError(f"Argument `tsave` must have shape (T,), got {tsave.shape}.")
        batch = state0.shape[:-1] if is_ket else state0.shape[:-2]
        if save_states:
            width = self.dim if rows is None else int(np.arange(self.dim)[rows].size)
            core = (width,) if is_ket else (self.dim, self.dim)
            check_memory(
                estimate_bytes((batch + (tsave.shape[0],) + core, jnp.complex128)),
                f"saving {tsave.shape[0]} states of shape {batch + core}",
            )
        if not is_ket and rows is not None:
            raise ValueError("Argument `rows` applies to kets only.")
        if isinstance(rows, slice):  # hashable for the jit cache
            rows = ("slice", rows.start, rows.stop, rows.step)
        states, expect = _eigen_evolve(self, state0, tsave, e_ops, rows, time_batch, save_states, is_ket)
        return Result.exact(tsave, states, expect, batch=batch, method="Eigen", kets=is_ket)


@eqx.filter_jit
def _eigen_evolve(es, state0, tsave, e_ops, rows, time_batch, save_states, is_ket):
    """Jitted core of `evolve`; outputs batch-first."""
    if isinstance(rows, tuple):
        rows = slice(*rows[1:])
    callable_e = callable(e_ops)
    e_arr = None if (e_ops is None or callable_e) else jnp.asarray(e_ops)
    if is_ket:
        coeff = es.ket_to_eigenbasis(state0.astype(jnp.result_type(state0.dtype, es.vectors.dtype)))
        basis_t = es.vectors.T if rows is None else es.vectors[rows].T
    else:
        coeff = es.op_to_eigenbasis(state0)
    lead = (1,) * (coeff.ndim - (1 if is_ket else 2))

    def at(t):
        phase = jnp.exp(-1j * es.energies * t)
        if is_ket:
            st = matmul(coeff * phase.reshape(*lead, -1), basis_t)
        else:
            rot = coeff * (phase[:, None] * phase.conj()[None, :]).reshape(lead + (es.dim, es.dim))
            st = es.op_from_eigenbasis(rot)
        if e_ops is None:
            ex = None
        elif callable_e:
            ex = jnp.asarray(e_ops(st))
        elif is_ket:
            ex = jnp.einsum("...i,eij,...j->...e", st.conj(), e_arr, st)
        else:
            ex = jnp.einsum("eij,...ji->...e", e_arr, st)
        return (st if save_states else None), ex

    states, expect = jax.lax.map(at, tsave, batch_size=time_batch)  # time leading
    nb = len(lead)
    if states is not None:
        states = jnp.moveaxis(states, 0, nb)
    if expect is not None:
        expect = jnp.moveaxis(expect, 0, -1)  # (*batch, E, T)
    return states, expect


def eigh(
    matrix: ArrayLike, *, name: str = "hamiltonian", rtol: float = 1e-10, check: bool = True
) -> Eigensystem:
    r"""Eigendecomposition of a dense Hermitian matrix (or `Qobj`), energies ascending.

    Args:
        matrix: Hermitian matrix, shape `(d, d)`, real or complex.
        name: Argument name used in error messages.
        rtol: Relative Hermiticity tolerance.
        check: Check finiteness and Hermiticity (eagerly when concrete, else with
            `eqx.error_if`).

    Returns:
        An `Eigensystem`.

    Raises:
        ValueError: If `matrix` is not square, contains NaN/inf (said as such) or is not
            Hermitian (the message names `name`).

    Example:
        >>> import jax.numpy as jnp
        >>> es = eigh(jnp.array([[1.0, 0.5], [0.5, -1.0]]))
        >>> bool(es.energies[0] < es.energies[1])
        True
    """
    h = to_array(matrix, name)
    if h.ndim == 2:
        from ._checks import check_memory, estimate_bytes

        check_memory(estimate_bytes(((4, *h.shape), jnp.result_type(h.dtype, float))),
                     f"the eigendecomposition of a {h.shape[0]} x {h.shape[1]} matrix", key=name)
    if check:
        h = check_hermitian(h, name, rtol=rtol)
    elif h.ndim != 2 or h.shape[0] != h.shape[1]:
        raise ValueError(f"Argument `{name}` must be a square matrix (d, d), got shape {h.shape}.")
    # symmetrise: the decomposition is then exactly of a Hermitian matrix
    h = 0.5 * (h + h.conj().T)
    energies, vectors = jnp.linalg.eigh(h)
    return Eigensystem(energies, vectors, check_unitary=False)


def degenerate_levels(
    energies: Float[Array, " d"], atol: float | Float[Array, ""]
) -> Int[Array, " d"]:
    r"""Label (numerically) degenerate levels of an ascending spectrum.

    Consecutive energies closer than `atol` belong to the same level (single-linkage
    chaining: a ladder of spacings all below `atol` is one level, whatever its total
    width). Labels count levels from `0` upwards.

    Args:
        energies: Ascending energies, shape `(d,)`.
        atol: Absolute tolerance in energy units.

    Returns:
        Integer level labels, shape `(d,)`, non-decreasing, starting at `0`.

    Example:
        >>> import jax.numpy as jnp
        >>> degenerate_levels(jnp.array([0.0, 1.0, 1.0 + 1e-14, 2.0]), 1e-9).tolist()
        [0, 1, 1, 2]
    """
    energies = jnp.asarray(energies)
    steps = (jnp.diff(energies) > atol).astype(jnp.int32)
    return jnp.concatenate([jnp.zeros((1,), jnp.int32), jnp.cumsum(steps)])


def random_ket(key: PRNGKeyArray, d: int, batch: tuple[int, ...] = ()) -> Complex[Array, "*batch d"]:
    """Haar-random normalised kets: complex Gaussian entries, normalised.

    Args:
        key: PRNG key; the same key gives the same kets.
        d: Dimension.
        batch: Leading batch shape.

    Returns:
        Kets of shape `(*batch, d)`, unit norm along the last axis.

    Example:
        >>> import jax
        >>> psi = random_ket(jax.random.key(0), 4)
        >>> round(float(jnp.linalg.norm(psi)), 12)
        1.0
    """
    kr, ki = jax.random.split(key)
    z = jax.random.normal(kr, (*batch, d)) + 1j * jax.random.normal(ki, (*batch, d))
    return z / jnp.linalg.norm(z, axis=-1, keepdims=True)


def haar_unitary(key: PRNGKeyArray, d: int) -> Complex[Array, "d d"]:
    """Haar-random unitary of dimension `d` (QR of a complex Ginibre matrix with the
    phases of `R`'s diagonal divided out)."""
    k1, k2 = jax.random.split(key)
    z = (jax.random.normal(k1, (d, d)) + 1j * jax.random.normal(k2, (d, d))) / jnp.sqrt(2.0)
    q, r = jnp.linalg.qr(z)
    ph = jnp.diagonal(r) / jnp.abs(jnp.diagonal(r))
    return q * ph.reshape(1, d)


def goe_matrix(
    key: PRNGKeyArray, d: int, *, radius: float = 2.0, dtype=jnp.float64
) -> Float[Array, "d d"]:
    r"""Sample a matrix from the Gaussian orthogonal ensemble (GOE).

    Off-diagonal entries have variance $v = R^2/(4d)$ and diagonal entries
    $2v$, so the eigenvalue density tends to Wigner's semicircle of radius `R`
    on $[-R, R]$ as `d` grows.

    Args:
        key: JAX PRNG key (same key, same matrix).
        d: Dimension.
        radius: Semicircle radius $R$ (energy units).
        dtype: Real floating dtype.

    Returns:
        Real symmetric matrix, shape `(d, d)`.

    Raises:
        ValueError: If `d < 1` or `radius <= 0`.
    """
    if int(d) != d or d < 1:
        raise ValueError(f"Argument `d` must be a positive integer, got {d!r}.")
    if not radius > 0:
        raise ValueError(f"Argument `radius` must be > 0, got {radius!r}.")
    from ._checks import check_memory, estimate_bytes

    check_memory(estimate_bytes(((3, d, d), dtype)), f"a GOE matrix of dimension {d}", key="d")
    a = jax.random.normal(key, (d, d), dtype=dtype)
    scale = radius / math.sqrt(4.0 * d)
    return (a + a.T) * (scale / math.sqrt(2.0))


def ket_to_dm(psi: Shaped[Array, "*batch d"]) -> Shaped[Array, "*batch d d"]:
    r"""Projector $|\psi\rangle\langle\psi|$, batched over leading axes (no
    normalisation)."""
    psi = jnp.asarray(psi)
    return psi[..., :, None] * psi.conj()[..., None, :]


def expect(op: Shaped[Array, "d d"], rho: Shaped[Array, "*batch d d"]) -> Array:
    r"""Expectation value $\mathrm{Tr}(A\rho)$, batched over `rho`'s leading axes.

    Returns the complex trace as is (take `.real` for Hermitian `op` and `rho`).
    """
    return jnp.einsum("ij,...ji->...", op, rho)


def _herm_eigvalsh(x: Array) -> Array:
    return jnp.linalg.eigvalsh(0.5 * (x + jnp.conj(jnp.swapaxes(x, -1, -2))))


def von_neumann_entropy(rho: Shaped[Array, "*batch d d"]) -> Float[Array, " *batch"]:
    r"""Von Neumann entropy $S = -\mathrm{Tr}\,\rho\ln\rho$ in nats.

    Eigenvalues below zero from rounding are clipped to zero; $0\ln 0 = 0$.
    `rho` is used as given (not renormalised).

    Args:
        rho: Density matrices, shape `(*batch, d, d)`.

    Returns:
        Entropies, shape `(*batch,)`.

    Example:
        >>> import jax.numpy as jnp
        >>> round(float(von_neumann_entropy(jnp.eye(4) / 4)), 6)  # ln 4
        1.386294
    """
    p = jnp.clip(_herm_eigvalsh(rho), 0.0, None)
    safe = jnp.where(p > 0, p, 1.0)
    return -jnp.sum(jnp.where(p > 0, p * jnp.log(safe), 0.0), axis=-1)


def purity(rho: Shaped[Array, "*batch d d"]) -> Float[Array, " *batch"]:
    r"""Purity $\mathrm{Tr}\,\rho^2$ (real part), shape `(*batch,)`."""
    return jnp.real(jnp.einsum("...ij,...ji->...", rho, rho))


def trace_distance(
    rho: Shaped[Array, "*batch d d"], sigma: Shaped[Array, "*batch d d"]
) -> Float[Array, " *batch"]:
    r"""Trace distance $\tfrac12\|\rho-\sigma\|_1 = \tfrac12\sum_i|\lambda_i(\rho-\sigma)|$.

    Args:
        rho: Hermitian matrices, shape `(*batch, d, d)`.
        sigma: Hermitian matrices, broadcastable against `rho`.

    Returns:
        Distances, shape `(*batch,)`.
    """
    return 0.5 * jnp.sum(jnp.abs(_herm_eigvalsh(jnp.asarray(rho) - sigma)), axis=-1)


def hilbert_schmidt_distance(
    rho: Shaped[Array, "*batch d d"], sigma: Shaped[Array, "*batch d d"]
) -> Float[Array, " *batch"]:
    r"""Hilbert–Schmidt (Frobenius) distance $\sqrt{\mathrm{Tr}[(\rho-\sigma)^\dagger
    (\rho-\sigma)]}$, shape `(*batch,)`. Its square for Hermitian arguments is the OQT
    paper's $D_\chi$ when `sigma` is the steady state."""
    diff = jnp.asarray(rho) - sigma
    return jnp.sqrt(jnp.sum(jnp.abs(diff) ** 2, axis=(-2, -1)))


def partial_trace(
    rho: Shaped[Array, "*batch D D"], dims: Sequence[int], keep: Sequence[int]
) -> Shaped[Array, "*batch Dk Dk"]:
    r"""Partial trace of a density matrix on a tensor product of subsystems.

    Args:
        rho: Density matrices, shape `(*batch, D, D)` with `D = prod(dims)`; the
            subsystems are ordered as in `dims` (`kron` convention).
        dims: Subsystem dimensions, e.g. `(dA, dB)`.
        keep: Indices of the subsystems to keep (in increasing order in the output).

    Returns:
        Reduced density matrices, shape `(*batch, Dk, Dk)` with `Dk` the product of
        the kept dimensions.

    Raises:
        ValueError: If `rho`'s last two axes do not match `prod(dims)` or `keep`
            is out of range.

    Example:
        >>> import jax.numpy as jnp
        >>> rho = jnp.kron(jnp.diag(jnp.array([0.25, 0.75])), jnp.eye(3) / 3)
        >>> partial_trace(rho, (2, 3), keep=(0,)).real.diagonal().tolist()
        [0.25, 0.75]
    """
    rho = jnp.asarray(rho)
    dims = tuple(int(x) for x in dims)
    keep = tuple(sorted(int(k) for k in keep))
    total = math.prod(dims)
    if rho.ndim < 2 or rho.shape[-2:] != (total, total):
        raise ValueError(
            f"Argument `rho` must have shape (*batch, {total}, {total}) for dims={dims}, "
            f"got {rho.shape}."
        )
    n = len(dims)
    if any(k < 0 or k >= n for k in keep) or len(set(keep)) != len(keep):
        raise ValueError(f"Argument `keep` must be distinct indices in [0, {n}), got {keep}.")
    batch = rho.shape[:-2]
    nb = len(batch)
    x = rho.reshape(batch + dims + dims)
    letters = "abcdefghijklmnopqrstuvwxyz"
    bl = "".join(chr(ord("A") + i) for i in range(nb))
    row = list(letters[:n])
    col = list(letters[n : 2 * n])
    for i in range(n):
        if i not in keep:
            col[i] = row[i]
    out = bl + "".join(row[i] for i in keep) + "".join(col[i] for i in keep)
    y = jnp.einsum(f"{bl}{''.join(row)}{''.join(col)}->{out}", x)
    dk = math.prod(dims[i] for i in keep)
    return y.reshape(batch + (dk, dk))
