r"""Hamiltonians as the solvers see them: constant, callable, or a sum with time-dependent
coefficients.

A user's `H` is converted once by `as_operator`:

* a dense array `(*batch, d, d)` or a QuTiP `Qobj` → `ConstantOperator`;
* a callable `H(t) -> (d, d)` → `CallableOperator`;
* a pair `(H0, [(V_1, f_1), (V_2, f_2), ...])` with scalar coefficients `f_k(t)`
  → `SumOperator`, $H(t) = H_0 + \sum_k f_k(t) V_k$, applied as
  $H_0x + \sum_k f_k(t)V_kx$ without forming $H(t)$.

Each has `__call__(t)` (the dense matrix) and `mv(t, x)` (the product with a ket
`(d,)` or a matrix `(d, n)`), both traceable. Batch axes of a constant `H` (or of
`H0`) lead; `vmap_axes` tells `eqx.filter_vmap` which leaves carry them.
"""

import abc
from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from ._checks import check_finite, check_hermitian
from .interop import is_qobj, to_array

__all__ = [
    "AbstractOperator",
    "ConstantOperator",
    "CallableOperator",
    "SumOperator",
    "as_operator",
    "matmul",
    "DiaMatrix",
    "dia_offsets",
    "op_lmul",
    "op_rmul",
]


def matmul(a: Array, b: Array) -> Array:
    """`a @ b` with complex products done as real matrix products.

    XLA's CPU backend runs real GEMMs far faster than complex ones (3.6x for a
    (500, 1000) @ (1000, 500) product, `benchmarks/README.md`); a real operand
    times a complex one costs two real products instead of a complex one.
    """
    ca, cb = jnp.iscomplexobj(a), jnp.iscomplexobj(b)
    if ca and cb:
        ar, ai, br, bi = a.real, a.imag, b.real, b.imag
        return jax.lax.complex(ar @ br - ai @ bi, ar @ bi + ai @ br)
    if ca:
        return jax.lax.complex(a.real @ b, a.imag @ b)
    if cb:
        return jax.lax.complex(a @ b.real, a @ b.imag)
    return a @ b


class AbstractOperator(eqx.Module):
    """A (possibly time-dependent) `(d, d)` operator."""

    @abc.abstractmethod
    def __call__(self, t) -> Array:
        """The dense matrix at time `t`, shape `(*batch, d, d)`."""

    @abc.abstractmethod
    def mv(self, t, x: Array) -> Array:
        """`H(t) @ x` for `x` of shape `(d,)` or `(d, n)` (unbatched operator)."""

    @property
    @abc.abstractmethod
    def dim(self) -> int:
        """Dimension `d`."""

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """Leading batch axes (`()` if none)."""
        return ()

    @property
    def is_constant(self) -> bool:
        """Whether the operator is time independent."""
        return False

    def vmap_axes(self):
        """`in_axes` for `eqx.filter_vmap` over a flattened leading batch axis."""
        return None

    def flatten_batch(self) -> "AbstractOperator":
        """The same operator with its batch axes flattened into one (or none)."""
        return self


class DiaMatrix(eqx.Module):
    r"""A sparse matrix stored by its nonzero diagonals (the "dia" layout).

    `diags[k, i] = A[i, i + offsets[k]]` (zero where `i + offsets[k]` is out of range).
    A product with a `(d, n)` matrix costs `len(offsets) * d * n` multiply-adds instead
    of `d * d * n`: ladder operators, number operators and the Hamiltonians built from
    them (a Kerr oscillator has 5 diagonals) are far cheaper this way. dynamiqs uses
    the same layout; `benchmarks/solvers.py` measures the difference.

    Build it with `DiaMatrix.from_dense(matrix, offsets)`; `dia_offsets(matrix)` decides
    (eagerly) whether a matrix is sparse enough.
    """

    diags: Array
    offsets: tuple[int, ...] = eqx.field(static=True)

    @classmethod
    def from_dense(cls, matrix: Array, offsets: tuple[int, ...]) -> "DiaMatrix":
        """Gather the diagonals `offsets` of `matrix` (traceable; shape `(d, d)`)."""
        matrix = jnp.asarray(matrix)
        d = matrix.shape[-1]
        rows = []
        for o in offsets:
            v = jnp.diagonal(matrix, offset=o)
            pad = (0, abs(o)) if o >= 0 else (abs(o), 0)
            rows.append(jnp.pad(v, pad))
        diags = jnp.stack(rows) if rows else jnp.zeros((0, d), matrix.dtype)
        return cls(diags, tuple(int(o) for o in offsets))

    @property
    def dim(self) -> int:
        return self.diags.shape[-1]

    def lmul(self, x: Array) -> Array:
        """`A @ x` for `x` of shape `(d,)` or `(d, n)`."""
        d = self.dim
        out = jnp.zeros(x.shape, jnp.result_type(x.dtype, self.diags.dtype))
        col = (slice(None),) + (None,) * (x.ndim - 1)
        for k, o in enumerate(self.offsets):
            v = self.diags[k][col]
            if o >= 0:
                shifted = jnp.concatenate([x[o:], jnp.zeros((o,) + x.shape[1:], x.dtype)]) if o else x
            else:
                shifted = jnp.concatenate([jnp.zeros((-o,) + x.shape[1:], x.dtype), x[: d + o]])
            out = out + v * shifted
        return out

    def rmul(self, x: Array) -> Array:
        """`x @ A` for `x` of shape `(..., d)`."""
        d = self.dim
        out = jnp.zeros(x.shape, jnp.result_type(x.dtype, self.diags.dtype))
        for k, o in enumerate(self.offsets):
            z = x * self.diags[k].reshape((1,) * (x.ndim - 1) + (d,))  # explicit rank: no implicit promotion
            lead = z.shape[:-1]
            if o >= 0:
                shifted = jnp.concatenate([jnp.zeros(lead + (o,), z.dtype), z[..., : d - o]], axis=-1) if o else z
            else:
                shifted = jnp.concatenate([z[..., -o:], jnp.zeros(lead + (-o,), z.dtype)], axis=-1)
            out = out + shifted
        return out


#: Use the dia layout when a matrix has at most this fraction of its diagonals nonzero.
DIA_MAX_FRACTION = 0.34


def dia_offsets(matrix, max_fraction: float = DIA_MAX_FRACTION) -> tuple[int, ...] | None:
    """The nonzero diagonals of a concrete matrix (union over leading batch axes), or
    `None` when it is traced, small (`d < 8`) or too dense for the dia layout to pay
    (more than `max_fraction * d` diagonals: a dia product costs `n_diags * d * n`, a
    dense one `d * d * n`).

    Example:
        >>> import numpy as np
        >>> a = np.diag(np.sqrt(np.arange(1.0, 10.0)), 1)  # annihilation operator, d = 10
        >>> dia_offsets(a), dia_offsets(a + a.T)
        ((1,), (-1, 1))
    """
    if isinstance(matrix, jax.core.Tracer):
        return None
    m = np.asarray(matrix)
    d = m.shape[-1]
    if d < 8:
        return None
    nz = np.abs(m.reshape((-1, d, d))).max(axis=0) > 0
    rows, cols = np.nonzero(nz)
    offsets = tuple(int(o) for o in np.unique(cols - rows))
    if len(offsets) > max(1, int(max_fraction * d)):
        return None
    return offsets


def op_lmul(a, x):
    """`a @ x` for a dense array or a `DiaMatrix` `a`."""
    return a.lmul(x) if isinstance(a, DiaMatrix) else matmul(a, x)


def op_rmul(x, a):
    """`x @ a` for a dense array or a `DiaMatrix` `a`."""
    return a.rmul(x) if isinstance(a, DiaMatrix) else matmul(x, a)


class ConstantOperator(AbstractOperator):
    """A time-independent matrix, shape `(*batch, d, d)`.

    Attributes:
        matrix: The matrix.
        offsets: Its nonzero diagonals when sparse enough for the dia layout
            (`dia_offsets`), used by `mv`; `None`: dense products.
    """

    matrix: Array
    offsets: tuple[int, ...] | None = eqx.field(static=True, default=None)

    def __call__(self, t) -> Array:
        return self.matrix

    def mv(self, t, x):
        if self.offsets is not None:
            return DiaMatrix.from_dense(self.matrix, self.offsets).lmul(x)
        return matmul(self.matrix, x)

    @property
    def dim(self) -> int:
        return self.matrix.shape[-1]

    @property
    def batch_shape(self):
        return self.matrix.shape[:-2]

    @property
    def is_constant(self) -> bool:
        return True

    def vmap_axes(self):
        return ConstantOperator(0, self.offsets) if self.batch_shape else None

    def flatten_batch(self):
        if not self.batch_shape:
            return self
        return ConstantOperator(self.matrix.reshape((-1,) + self.matrix.shape[-2:]), self.offsets)


class CallableOperator(AbstractOperator):
    """`H(t)` given as a function returning a `(d, d)` array (no batch axes; batch
    by `jax.vmap` over the solver)."""

    fn: Callable = eqx.field(static=True)
    d: int = eqx.field(static=True)

    def __call__(self, t):
        return self.fn(t)

    def mv(self, t, x):
        return matmul(jnp.asarray(self.fn(t)), x)

    @property
    def dim(self) -> int:
        return self.d


class SumOperator(AbstractOperator):
    r"""$H(t) = H_0 + \sum_k f_k(t) V_k$ with scalar coefficient functions `f_k`.

    Attributes:
        h0: `(*batch, d, d)`.
        ops: The `V_k`, `(K, d, d)`.
        coeffs: The `f_k`, a tuple of callables `t -> scalar` (static).
    """

    h0: Array
    ops: Array
    coeffs: tuple[Callable, ...] = eqx.field(static=True)

    def coefficients(self, t) -> Array:
        """`(f_1(t), ..., f_K(t))`, shape `(K,)`."""
        return jnp.stack([jnp.asarray(f(t)) for f in self.coeffs])

    def __call__(self, t):
        c = self.coefficients(t).astype(jnp.result_type(self.ops.dtype, self.h0.dtype))
        return self.h0 + jnp.einsum("k,kij->ij", c, self.ops)

    def mv(self, t, x):
        out = matmul(self.h0, x)
        c = self.coefficients(t)
        for k in range(self.ops.shape[0]):
            out = out + c[k] * matmul(self.ops[k], x)
        return out

    @property
    def dim(self) -> int:
        return self.h0.shape[-1]

    @property
    def batch_shape(self):
        return self.h0.shape[:-2]

    def vmap_axes(self):
        return SumOperator(0, None, self.coeffs) if self.batch_shape else None

    def flatten_batch(self):
        if not self.batch_shape:
            return self
        return SumOperator(self.h0.reshape((-1,) + self.h0.shape[-2:]), self.ops, self.coeffs)


def _square(x, name):
    x = to_array(x, name)
    if x.ndim < 2 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"Argument `{name}` must be a square matrix (..., d, d), got shape {x.shape}.")
    return x


def _is_sum_form(H) -> bool:
    """`(H0, [(V, f), ...])`: a pair whose second entry is a list of pairs with a callable."""
    if not (isinstance(H, (tuple, list)) and len(H) == 2 and isinstance(H[1], (list, tuple))):
        return False
    return all(isinstance(t, (tuple, list)) and len(t) == 2 and callable(t[1]) for t in H[1])


def as_operator(
    H, name: str = "H", *, t0: float = 0.0, check: bool = True, rtol: float = 1e-10
) -> AbstractOperator:
    r"""Convert a user's Hamiltonian to an `AbstractOperator`.

    Args:
        H: One of: a dense Hermitian array `(*batch, d, d)`; a QuTiP `Qobj`; a
            callable `H(t) -> (d, d)`; a pair `(H0, [(V_1, f_1), ...])` with arrays
            or `Qobj` `H0`, `V_k` and scalar functions `f_k(t)`; or an
            `AbstractOperator` (returned as is).
        name: Argument name used in messages.
        t0: Time at which a time-dependent `H` is evaluated for the checks.
        check: Check Hermiticity (of `H(t0)` when time dependent).
        rtol: Relative Hermiticity tolerance.

    Returns:
        The operator.

    Raises:
        ValueError: On a non-square or non-Hermitian `H`, NaN entries (said as such),
            mismatched shapes in the sum form, or a malformed pair.
        TypeError: On a `(V, f)` term whose `f` is not callable.

    Example:
        >>> import jax.numpy as jnp
        >>> sx = jnp.array([[0.0, 1.0], [1.0, 0.0]])
        >>> H = as_operator((jnp.zeros((2, 2)), [(sx, lambda t: jnp.cos(t))]))
        >>> H(0.0).tolist()
        [[0.0, 1.0], [1.0, 0.0]]
    """
    if isinstance(H, AbstractOperator):
        return H
    if callable(H) and not is_qobj(H) and not hasattr(H, "shape"):
        probe = jax.eval_shape(H, jnp.asarray(t0, float))
        if len(probe.shape) != 2 or probe.shape[0] != probe.shape[1]:
            raise ValueError(f"Argument `{name}` as a callable must return a (d, d) array, got {probe.shape}.")
        op = CallableOperator(H, probe.shape[0])
        if check:
            check_hermitian(jnp.asarray(H(jnp.asarray(t0, float))), f"{name}(t0)", rtol=rtol)
        return op
    if _is_sum_form(H):
        h0 = _square(H[0], f"{name}[0]")
        terms = H[1]
        if not terms:
            return as_operator(h0, name, check=check, rtol=rtol)
        ops, coeffs = [], []
        for i, term in enumerate(terms):
            if not (isinstance(term, (tuple, list)) and len(term) == 2):
                raise ValueError(f"Argument `{name}[1][{i}]` must be a pair (V, f), got {term!r}.")
            v, f = term
            if not callable(f):
                raise TypeError(f"Argument `{name}[1][{i}]`: the coefficient f must be callable f(t), got {f!r}.")
            v = _square(v, f"{name}[1][{i}]")
            if v.shape != h0.shape[-2:]:
                raise ValueError(
                    f"Argument `{name}[1][{i}]`: V has shape {v.shape}, expected {h0.shape[-2:]} as H0."
                )
            ops.append(v)
            coeffs.append(f)
        dtype = jnp.result_type(h0.dtype, *[o.dtype for o in ops])
        op = SumOperator(h0.astype(dtype), jnp.stack(ops).astype(dtype), tuple(coeffs))
        if check:
            h_t0 = op(jnp.asarray(t0, float)) if not op.batch_shape else op.h0
            check_hermitian(h_t0, f"{name}(t0)", rtol=rtol)
        return op
    h = _square(H, name)
    if jnp.issubdtype(h.dtype, jnp.integer) or h.dtype == jnp.bool_:
        h = h.astype(float)
    if check:
        h = check_hermitian(h, name, rtol=rtol)
    return ConstantOperator(h, dia_offsets(h))


def as_operator_stack(ops, name: str, dim: int | None = None) -> Array:
    """Convert a sequence of operators (arrays or `Qobj`) or a `(K, d, d)` array to one
    array `(*batch, K, d, d)`; an empty sequence gives `(0, d, d)`.

    Raises:
        ValueError: On non-square operators or a dimension other than `dim`.
    """
    if ops is None or (isinstance(ops, Sequence) and not isinstance(ops, str) and len(ops) == 0):
        if dim is None:
            raise ValueError(f"Argument `{name}` is empty and no dimension is known.")
        return jnp.zeros((0, dim, dim), complex)
    arr = to_array(ops, name)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim < 3 or arr.shape[-1] != arr.shape[-2]:
        raise ValueError(f"Argument `{name}` must hold (d, d) operators, shape (..., K, d, d), got {arr.shape}.")
    if dim is not None and arr.shape[-1] != dim:
        raise ValueError(f"Argument `{name}` holds operators of dimension {arr.shape[-1]}, expected {dim}.")
    return check_finite(arr, name)
