r"""The Lindblad (GKSL) layer: generators, their right-hand sides, Liouvillians, stationary
states, spectral gaps and the checks that a generator is physical.

$$
\dot\rho = \mathcal L(\rho) = -i[H,\rho] + \sum_k\big(L_k\rho L_k^\dagger
- \tfrac12\{L_k^\dagger L_k,\rho\}\big)\qquad(\hbar = 1)
$$

`Lindbladian` evaluates this at $O(Kd^3)$ per call; for a Hermitian
$\rho$ (what `thermojax.mesolve` integrates) as $A + A^\dagger$ with
$A = H_{\rm eff}\rho + \tfrac12\sum_k (L_k\rho)L_k^\dagger$,
$H_{\rm eff} = -iH - \tfrac12\sum_k L_k^\dagger L_k$ (one product saved by
Hermiticity). Any other linear generator (OQT's structured form, Bloch–Redfield, ...)
subclasses `AbstractGenerator` and gets the dense Liouvillian, the stationary
state, the gap and the checks for free, and plugs into `thermojax.mesolve`.

Vectorisation is row-major everywhere: $\mathrm{vec}(A\rho B) = (A\otimes B^T)
\mathrm{vec}\rho$ with `vec(rho) = rho.reshape(d * d)`.
"""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jaxtyping import Array, Complex, Float, Int

from ._checks import check_memory, estimate_bytes
from .operators import AbstractOperator, as_operator, as_operator_stack, matmul

__all__ = [
    "AbstractGenerator",
    "Lindbladian",
    "lindblad_rhs",
    "liouvillian",
    "StationaryState",
    "stationary_state",
    "spectral_gap",
    "trace_preservation_error",
    "hermiticity_preservation_error",
]


class AbstractGenerator(eqx.Module):
    r"""A linear generator $\dot\rho = \mathcal L_t(\rho)$ on `(d, d)` matrices.

    Subclasses implement `rhs` for one matrix and `dim`; everything else
    (dense Liouvillian, stationary state, gap, checks, `thermojax.mesolve`) works
    from those.
    """

    @abc.abstractmethod
    def rhs(self, t, rho: Complex[Array, "d d"]) -> Complex[Array, "d d"]:
        r"""$\mathcal L_t(\rho)$ for one density matrix `(d, d)`."""

    @property
    @abc.abstractmethod
    def dim(self) -> int:
        """Hilbert-space dimension `d`."""

    @property
    def is_constant(self) -> bool:
        """Whether the generator is time independent."""
        return True

    def rhs_hermitian(self, t, rho: Complex[Array, "d d"]) -> Complex[Array, "d d"]:
        r"""$\mathcal L_t(\rho)$ for a *Hermitian* `rho` (a generator that preserves
        Hermiticity may use it to save work; `thermojax.mesolve` calls this)."""
        return self.rhs(t, rho)

    def liouvillian(self, t=0.0) -> Complex[Array, "d2 d2"]:
        r"""Dense superoperator (row-major vec), shape `(d*d, d*d)`: column $(a,b)$ is
        $\mathrm{vec}\,\mathcal L(|a\rangle\langle b|)$. Memory $d^4$.

        Raises:
            MemoryError: If the $d^4$ matrix would not fit.
        """
        d = self.dim
        check_memory(estimate_bytes(((2, d * d, d * d), jnp.complex128)), f"dense Liouvillian, d = {d}")
        basis = jnp.eye(d * d, dtype=complex).reshape(d * d, d, d)
        cols = jax.vmap(lambda e: self.rhs(t, e).reshape(d * d))(basis)
        return cols.T


class Lindbladian(AbstractGenerator):
    r"""GKSL generator of a Hamiltonian and jump operators (rates absorbed in the operators).

    $$
    \mathcal L(\rho) = -i[H(t),\rho] + \sum_k\big(L_k\rho L_k^\dagger
    - \tfrac12\{L_k^\dagger L_k,\rho\}\big)
    $$

    Args:
        H: Hamiltonian: an array `(d, d)`, a `Qobj`, or a time-dependent form (see
            `thermojax.operators.as_operator`).
        jump_ops: Jump operators, a sequence of `(d, d)` arrays/`Qobj` or an array
            `(K, d, d)`; may be empty.
        check: Check Hermiticity of `H`.

    Raises:
        ValueError: On shapes that do not match, a non-Hermitian `H` or NaN entries.

    Example:
        >>> import jax.numpy as jnp
        >>> sm = jnp.array([[0.0, 1.0], [0.0, 0.0]])  # |0><1|: decay 1 -> 0
        >>> gen = Lindbladian(jnp.zeros((2, 2)), [sm])
        >>> jnp.real(gen.rhs(0.0, jnp.diag(jnp.array([0.0, 1.0])))).tolist()
        [[1.0, 0.0], [0.0, -1.0]]
    """

    H: AbstractOperator
    jump_ops: Complex[Array, "K d d"]
    k_sum: Complex[Array, "d d"]

    def __init__(self, H, jump_ops=(), *, check: bool = True):
        self.H = as_operator(H, "H", check=check)
        d = self.H.dim
        ops = as_operator_stack(jump_ops, "jump_ops", d)
        if ops.ndim != 3:
            raise ValueError(
                f"Argument `jump_ops` must have shape (K, {d}, {d}) for one generator, got {ops.shape}; "
                "batch generators through mesolve."
            )
        if self.H.batch_shape:
            raise ValueError("Lindbladian takes one Hamiltonian; batch through mesolve.")
        self.jump_ops = ops.astype(jnp.result_type(ops.dtype, complex))
        self.k_sum = jnp.einsum("kba,kbc->ac", self.jump_ops.conj(), self.jump_ops)

    @property
    def dim(self) -> int:
        return self.H.dim

    @property
    def is_constant(self) -> bool:
        return self.H.is_constant

    def _sandwich(self, rho):
        lr = matmul(self.jump_ops, rho)  # (K, d, d)
        return jnp.sum(matmul(lr, jnp.conj(jnp.swapaxes(self.jump_ops, -1, -2))), axis=0)

    def rhs(self, t, rho):
        heff_rho = -1j * self.H.mv(t, rho) - 0.5 * matmul(self.k_sum, rho)
        rho_heff = 1j * jnp.conj(self.H.mv(t, jnp.conj(rho.T)).T) - 0.5 * matmul(rho, self.k_sum)
        out = heff_rho + rho_heff
        return out + self._sandwich(rho) if self.jump_ops.shape[0] else out

    def rhs_hermitian(self, t, rho):
        # A + A^dagger with A = H_eff rho + (1/2) sum_k L_k rho L_k^dagger: one product fewer
        a = -1j * self.H.mv(t, rho) - 0.5 * matmul(self.k_sum, rho)
        if self.jump_ops.shape[0]:
            a = a + 0.5 * self._sandwich(rho)
        return a + jnp.conj(a.T)

    def liouvillian(self, t=0.0):
        d = self.dim
        check_memory(estimate_bytes(((2, d * d, d * d), jnp.complex128)), f"dense Liouvillian, d = {d}")
        return liouvillian(self.H(t), self.jump_ops)


def lindblad_rhs(
    rho: Complex[Array, "*batch d d"], H: Array, jump_ops: Complex[Array, "K d d"]
) -> Complex[Array, "*batch d d"]:
    r"""GKSL right-hand side for dense arrays, batched over `rho`'s leading axes.

    Args:
        rho: Density matrices `(*batch, d, d)`.
        H: Hamiltonian `(d, d)`.
        jump_ops: `(K, d, d)`.

    Returns:
        $\dot\rho$, shape of `rho`.
    """
    gen = Lindbladian(H, jump_ops, check=False)
    rho = jnp.asarray(rho)
    flat = rho.reshape((-1,) + rho.shape[-2:])
    return jax.vmap(lambda r: gen.rhs(0.0, r))(flat).reshape(rho.shape)


def liouvillian(H: Array, jump_ops: Complex[Array, "K d d"]) -> Complex[Array, "d2 d2"]:
    r"""Dense GKSL Liouvillian (row-major vec), shape `(d*d, d*d)`.

    $$
    \mathcal L = -i(H\otimes 1 - 1\otimes H^T) + \sum_k L_k\otimes\bar L_k
    - \tfrac12 (K\otimes 1 + 1\otimes K^T),\quad K=\sum_k L_k^\dagger L_k.
    $$

    Memory $d^4$ complex numbers: for $d \lesssim 50$.
    """
    H = jnp.asarray(H)
    jump_ops = jnp.asarray(jump_ops)
    d = H.shape[-1]
    eye = jnp.eye(d, dtype=complex)
    k = jnp.einsum("kba,kbc->ac", jump_ops.conj(), jump_ops)
    sand = jnp.einsum("kac,kbd->abcd", jump_ops, jump_ops.conj()).reshape(d * d, d * d)
    h = H.astype(complex)
    return -1j * (jnp.kron(h, eye) - jnp.kron(eye, h.T)) + sand - 0.5 * (jnp.kron(k, eye) + jnp.kron(eye, k.T))


def _dense(generator_or_matrix) -> Array:
    if isinstance(generator_or_matrix, AbstractGenerator):
        return generator_or_matrix.liouvillian()
    m = jnp.asarray(generator_or_matrix)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or int(round(np.sqrt(m.shape[0]))) ** 2 != m.shape[0]:
        raise ValueError(
            f"Argument `generator` must be an AbstractGenerator or a (d*d, d*d) Liouvillian, got shape {m.shape}."
        )
    return m


class StationaryState(eqx.Module):
    r"""A null vector of a generator.

    Attributes:
        rho: Stationary density matrix `(d, d)`, trace 1 (or `Tr rho0`).
        residual: $\|\mathcal L(\rho_\infty)\|_F$.
        null_dim: Singular values of $\mathcal L$ below `null_rtol * max` (1: a
            unique stationary state).
    """

    rho: Complex[Array, "d d"]
    residual: Float[Array, ""]
    null_dim: Int[Array, ""]


def stationary_state(
    generator,
    rho0: Complex[Array, "d d"] | None = None,
    *,
    solver: lx.AbstractLinearSolver = lx.SVD(),
    null_rtol: float = 1e-10,
) -> StationaryState:
    r"""Stationary state of a generator by a lineax least-squares solve on the dense Liouvillian.

    Without `rho0`: the minimum-norm solution of $[\mathcal L;\ \mathrm{vec}(1)^T]x
    = [0;\ 1]$ (trace normalisation appended as a row). With a unique null vector this is
    the stationary state; if `null_dim > 1` it is one of many — pass `rho0`.

    With `rho0`: the spectral projection of `rho0` onto $\ker\mathcal L$ along
    $\mathrm{ran}\,\mathcal L$ (the $t\to\infty$ limit, or time average), as
    $\rho_0 - \mathcal Lx$ with $\mathcal L^2x = \mathcal L\rho_0$.

    Args:
        generator: An `AbstractGenerator` or a dense `(d*d, d*d)` Liouvillian.
        rho0: Optional initial density matrix `(d, d)`.
        solver: A lineax least-squares solver (`lx.SVD()`; `lx.QR()` when the null
            space is known to be one-dimensional).
        null_rtol: Relative singular-value threshold for `null_dim`.

    Returns:
        A `StationaryState`.

    Example:
        >>> import jax.numpy as jnp
        >>> sm = jnp.array([[0.0, 1.0], [0.0, 0.0]])
        >>> st = stationary_state(Lindbladian(jnp.zeros((2, 2)), [sm]))
        >>> jnp.round(jnp.real(jnp.diagonal(st.rho)), 10).tolist(), int(st.null_dim)
        ([1.0, 0.0], 1)
    """
    big = _dense(generator)
    return _stationary(big, rho0, solver, null_rtol)


@eqx.filter_jit
def _stationary(big, rho0, solver, null_rtol):
    d = int(round(np.sqrt(big.shape[0])))
    if rho0 is None:
        tr_row = jnp.eye(d, dtype=big.dtype).reshape(1, d * d)
        a = jnp.concatenate([big, tr_row], axis=0)
        b = jnp.zeros(d * d + 1, big.dtype).at[-1].set(1.0)
        x = lx.linear_solve(lx.MatrixLinearOperator(a), b, solver=solver).value
        rho = x.reshape(d, d)
    else:
        v0 = jnp.asarray(rho0, big.dtype).reshape(d * d)
        x = lx.linear_solve(lx.MatrixLinearOperator(big @ big), big @ v0, solver=solver).value
        rho = (v0 - big @ x).reshape(d, d)
    rho = 0.5 * (rho + rho.conj().T)
    residual = jnp.linalg.norm(big @ rho.reshape(d * d))
    sv = jnp.linalg.svd(big, compute_uv=False)
    null_dim = jnp.sum(sv <= null_rtol * sv[0])
    return StationaryState(rho=rho, residual=residual, null_dim=null_dim)


def spectral_gap(generator, *, zero_atol: float = 1e-10) -> Float[Array, ""]:
    r"""Spectral gap $\Delta = -\max\{\mathrm{Re}\,\lambda : \lambda \ne 0\}$ of a
    generator (dense eigenvalues; the relaxation rate of the slowest mode).

    Eigenvalues with $|\lambda| \le$ `zero_atol` $\max|\lambda|$ count as the
    stationary ones.

    Example:
        >>> import jax.numpy as jnp
        >>> sm = jnp.array([[0.0, 1.0], [0.0, 0.0]])
        >>> round(float(spectral_gap(Lindbladian(jnp.zeros((2, 2)), [sm]))), 10)  # coherences decay at 1/2
        0.5
    """
    lam = jnp.linalg.eigvals(_dense(generator))
    scale = jnp.max(jnp.abs(lam))
    nonzero = jnp.abs(lam) > zero_atol * scale
    return -jnp.max(jnp.where(nonzero, jnp.real(lam), -jnp.inf))


def trace_preservation_error(generator) -> Float[Array, ""]:
    r"""$\max_{a,b}|\mathrm{Tr}\,\mathcal L(|a\rangle\langle b|)|$, i.e.
    $\|\mathrm{vec}(1)^T\mathcal L\|_\infty$ (0 for a trace-preserving generator)."""
    big = _dense(generator)
    d = int(round(np.sqrt(big.shape[0])))
    return jnp.max(jnp.abs(jnp.eye(d, dtype=big.dtype).reshape(d * d) @ big))


def hermiticity_preservation_error(generator) -> Float[Array, ""]:
    r"""$\max_{a,b}\|\mathcal L(X^\dagger) - \mathcal L(X)^\dagger\|_\infty$ over the
    matrix units $X = |a\rangle\langle b|$ (0 for a Hermiticity-preserving generator)."""
    big = _dense(generator)
    d = int(round(np.sqrt(big.shape[0])))
    cols = big.T.reshape(d, d, d, d)  # cols[a, b] = L(|a><b|)
    adj = jnp.conj(jnp.swapaxes(cols, -1, -2))  # L(|a><b|)^dagger
    return jnp.max(jnp.abs(jnp.swapaxes(cols, 0, 1) - adj))
