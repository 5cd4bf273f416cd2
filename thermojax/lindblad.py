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
from .operators import (
    AbstractOperator,
    DiaMatrix,
    as_operator,
    as_operator_stack,
    dia_offsets,
    matmul,
    op_lmul,
    op_rmul,
)

__all__ = [
    "AbstractGenerator",
    "Lindbladian",
    "sparsity",
    "Stencil",
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

    def vector_field(self):
        """`(t, rho) -> L_t(rho)` for Hermitian `rho`, with whatever can be precomputed
        done once (what `thermojax.mesolve` integrates)."""
        return self.rhs_hermitian

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
    \mathcal L(\rho) = -i[H(t),\rho] + \sum_k\big(L_k\rho L_k^\dagger - \tfrac12\{L_k^\dagger L_k,\rho\}\big)
    $$

    Sparse banded operators (ladder operators, number operators, Hamiltonians built
    from them) are applied in the dia layout (`thermojax.operators.DiaMatrix`),
    decided once from the concrete matrices.

    Args:
        H: Hamiltonian: an array `(d, d)`, a `Qobj`, or a time-dependent form (see
            `thermojax.operators.as_operator`).
        jump_ops: Jump operators, a sequence of `(d, d)` arrays/`Qobj` or an array
            `(K, d, d)`; may be empty.
        check: Check Hermiticity of `H`.
        jump_offsets: Nonzero diagonals of each jump operator and of
            $\sum_k L_k^\dagger L_k$, as `(per_op, k_sum)` (entries `None` for dense);
            default: found from the matrices when they are concrete.

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
    jump_offsets: tuple = eqx.field(static=True)
    k_offsets: tuple | None = eqx.field(static=True)

    def __init__(self, H, jump_ops=(), *, check: bool = True, jump_offsets=None):
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
        if jump_offsets is None:
            jump_offsets = sparsity(self.jump_ops, self.k_sum)
        self.jump_offsets, self.k_offsets = jump_offsets

    @property
    def dim(self) -> int:
        return self.H.dim

    @property
    def is_constant(self) -> bool:
        return self.H.is_constant

    def _ops(self):
        """Jump operators, their adjoints and K, in the layout chosen for each."""
        ls, lds = [], []
        for k, off in enumerate(self.jump_offsets):
            op = self.jump_ops[k]
            ls.append(op if off is None else DiaMatrix.from_dense(op, off))
            opd = jnp.conj(op.T)
            lds.append(opd if off is None else DiaMatrix.from_dense(opd, tuple(-o for o in off)))
        k = self.k_sum if self.k_offsets is None else DiaMatrix.from_dense(self.k_sum, self.k_offsets)
        return ls, lds, k

    def _sandwich(self, rho, ls, lds):
        r"""$\sum_k L_k\rho L_k^\dagger$: banded operators one by one, dense ones stacked.

        Many dense operators (OQT has $d^2$) go through batched products in chunks of at
        most `_SANDWICH_CHUNK_ELEMENTS` matrix elements, scanned: the graph stays one
        chunk long whatever their number (an unrolled loop over 256 operators took 12 s
        to trace and compile at d = 16).
        """
        out = jnp.zeros_like(rho)
        dense = [k for k, off in enumerate(self.jump_offsets) if off is None]
        for k, off in enumerate(self.jump_offsets):
            if off is not None or len(dense) < _SANDWICH_MIN_STACK:
                out = out + op_rmul(op_lmul(ls[k], rho), lds[k])
        if len(dense) >= _SANDWICH_MIN_STACK:
            ops = self.jump_ops if len(dense) == len(self.jump_offsets) else self.jump_ops[np.asarray(dense)]
            out = out + _stacked_sandwich(ops, rho)
        return out

    def _stencil(self):
        """The whole generator as a stencil on rho when every operator is banded and H is
        constant (see `Stencil`), else `None`. Built inside each call on purpose: its
        weights are outer products of diagonals, and XLA fuses computing them into the
        stencil pass, which measured 1.8x faster than reading a precomputed `(S, d, d)`
        array (memory-bound) on the Kerr benchmark."""
        if (
            not self.H.is_constant
            or self.H.offsets is None
            or self.k_offsets is None
            or any(o is None for o in self.jump_offsets)
        ):
            return None
        return Stencil.lindblad(self.H.matrix, self.H.offsets, self.jump_ops, self.jump_offsets, self.k_sum,
                                self.k_offsets)

    def rhs(self, t, rho):
        st = self._stencil()
        if st is not None:
            return st.apply(rho)
        ls, lds, k = self._ops()
        heff_rho = -1j * self.H.mv(t, rho) - 0.5 * op_lmul(k, rho)
        rho_heff = 1j * jnp.conj(self.H.mv(t, jnp.conj(rho.T)).T) - 0.5 * op_rmul(rho, k)
        return heff_rho + rho_heff + self._sandwich(rho, ls, lds)

    def rhs_hermitian(self, t, rho):
        st = self._stencil()
        if st is not None:
            return st.apply(rho)
        # A + A^dagger with A = H_eff rho + (1/2) sum_k L_k rho L_k^dagger: one product fewer
        ls, lds, k = self._ops()
        a = -1j * self.H.mv(t, rho) - 0.5 * op_lmul(k, rho) + 0.5 * self._sandwich(rho, ls, lds)
        return a + jnp.conj(a.T)

    def liouvillian(self, t=0.0):
        d = self.dim
        check_memory(estimate_bytes(((2, d * d, d * d), jnp.complex128)), f"dense Liouvillian, d = {d}")
        return liouvillian(self.H(t), self.jump_ops)


#: Above this many jump operators, none is kept banded (see `sparsity`).
_DIA_MAX_OPS = 16
#: Dense jump operators are stacked into batched products from this many on.
_SANDWICH_MIN_STACK = 4
#: Largest chunk of stacked jump operators, in matrix elements (64 MiB of complex128).
_SANDWICH_CHUNK_ELEMENTS = 2**22


def _stacked_sandwich(ops, rho):
    r"""$\sum_k L_k\rho L_k^\dagger$ for a dense stack `ops` `(K, d, d)`, as batched
    products over chunks of operators scanned with `lax.scan` (the last chunk zero-padded)."""
    n, d = ops.shape[0], ops.shape[-1]
    size = max(1, min(n, _SANDWICH_CHUNK_ELEMENTS // (d * d)))
    n_chunks = -(-n // size)
    pad = n_chunks * size - n
    if pad:
        ops = jnp.concatenate([ops, jnp.zeros((pad, d, d), ops.dtype)])
    chunks = ops.reshape(n_chunks, size, d, d)

    def one(acc, lk):
        lr = matmul(lk, rho[None])
        return acc + jnp.sum(matmul(lr, jnp.conj(jnp.swapaxes(lk, -1, -2))), axis=0), None

    if n_chunks == 1:
        return one(jnp.zeros_like(rho), chunks[0])[0]
    return jax.lax.scan(one, jnp.zeros_like(rho), chunks)[0]


class Stencil(eqx.Module):
    r"""A superoperator on `(d, d)` matrices as a sum of shifted, weighted copies:

    $$
    \mathcal L(\rho)_{ij} = \sum_{(a,b)} c^{(a,b)}_{ij}\,\rho_{i+a,\,j+b}
    \qquad(\rho \text{ zero outside } [0, d)^2).
    $$

    A GKSL generator whose Hamiltonian and jump operators are all banded (ladder and
    number operators, Hamiltonians built from them) is exactly such a stencil: $A\rho$
    shifts rows by the diagonals of $A$, $\rho B$ shifts columns, $L\rho L^\dagger$ both,
    each with an outer product of diagonal vectors as weights. The driven Kerr
    oscillator needs 7 shifts, so the right-hand side is one fused pass over $\rho$
    instead of a dozen matrix products (`benchmarks/solvers.py`).

    Attributes:
        coeffs: Weights $c^{(a,b)}$, shape `(S, d, d)`.
        shifts: The `S` shifts `(a, b)` (static).
    """

    coeffs: Array
    shifts: tuple[tuple[int, int], ...] = eqx.field(static=True)

    @classmethod
    def lindblad(cls, h, h_offsets, jump_ops, jump_offsets, k_sum, k_offsets) -> "Stencil":
        r"""The stencil of $-i[H,\rho] + \sum_k(L_k\rho L_k^\dagger - \tfrac12\{K,\rho\})$
        from banded matrices with static diagonal offsets (traceable in the values)."""
        d = h.shape[-1]
        idx = jnp.arange(d)
        terms: dict[tuple[int, int], Array] = {}

        def diag_rows(m, o):  # v[i] = m[i, i + o] (0 out of range)
            return jnp.where((idx + o >= 0) & (idx + o < d), m[idx, jnp.clip(idx + o, 0, d - 1)], 0)

        def diag_cols(m, o):  # w[j] = m[j - o, j] (0 out of range)
            return jnp.where((idx - o >= 0) & (idx - o < d), m[jnp.clip(idx - o, 0, d - 1), idx], 0)

        def add(shift, c):
            terms[shift] = terms[shift] + c if shift in terms else c

        heff = -1j * h - 0.5 * k_sum  # rho H_eff^dagger = i rho H - rho K / 2
        for o in sorted(set(h_offsets) | set(k_offsets)):
            add((o, 0), diag_rows(heff, o)[:, None] * jnp.ones((1, d)))
            add((0, -o), jnp.ones((d, 1)) * diag_cols(jnp.conj(heff.T), o)[None, :])
        for k, offs in enumerate(jump_offsets):
            lk = jump_ops[k]
            for o in offs:
                for q in offs:
                    add((o, q), diag_rows(lk, o)[:, None] * jnp.conj(diag_rows(lk, q))[None, :])
        shifts = tuple(sorted(terms))
        return cls(jnp.stack([terms[s] for s in shifts]).astype(complex), shifts)

    def apply(self, rho: Array) -> Array:
        r"""$\mathcal L(\rho)$ for one `(d, d)` matrix."""
        d = rho.shape[-1]
        p = max(1, max(max(abs(a), abs(b)) for a, b in self.shifts))
        padded = jnp.pad(rho, p)
        out = jnp.zeros_like(rho, dtype=jnp.result_type(rho.dtype, self.coeffs.dtype))
        for s, (a, b) in enumerate(self.shifts):
            out = out + self.coeffs[s] * padded[p + a : p + a + d, p + b : p + b + d]
        return out


def sparsity(jump_ops, k_sum=None) -> tuple:
    r"""`(per-op offsets, k_sum offsets)` for `Lindbladian(jump_offsets=...)`: the nonzero
    diagonals of each jump operator (union over leading batch axes) and of
    $\sum_k L_k^\dagger L_k$, `None` where dense is better or the values are traced.
    More than `_DIA_MAX_OPS` operators are all taken dense: one banded pass per operator
    is unrolled into the graph, while dense ones go through stacked, scanned products
    (259 single-diagonal OQT operators at d = 16: 8.9 s to trace and compile one call
    banded, well under a second stacked)."""
    ops = jnp.asarray(jump_ops)
    if isinstance(ops, jax.core.Tracer) or ops.shape[-3] > _DIA_MAX_OPS:
        return tuple(None for _ in range(ops.shape[-3])), None
    host = np.asarray(ops)
    per = tuple(dia_offsets(host[..., k, :, :]) for k in range(host.shape[-3]))
    if k_sum is None:
        k_sum = np.einsum("...kba,...kbc->...ac", host.conj(), host)
    return per, dia_offsets(k_sum)


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
