"""Interoperability with QuTiP (optional) and other array types.

thermojax works on plain JAX arrays. Wherever an operator or a state is expected, a
QuTiP `Qobj` is accepted too and converted with `to_array` (a ket `Qobj` or a
`(d, 1)` column becomes shape `(d,)`). `to_qutip` converts back; QuTiP is
imported only then, so it stays an optional dependency (`pip install qutip`).
"""

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

__all__ = ["is_qobj", "to_array", "to_qutip", "qutip_dims"]


def is_qobj(x) -> bool:
    """Whether `x` is a QuTiP `Qobj` (checked without importing QuTiP)."""
    return type(x).__name__ == "Qobj" and type(x).__module__.startswith("qutip")


def qutip_dims(x):
    """The `dims` of a `Qobj` (or of the first `Qobj` in a sequence), else `None`."""
    if is_qobj(x):
        return x.dims
    if isinstance(x, (list, tuple)) and x and is_qobj(x[0]):
        return x[0].dims
    return None


def _one(x, name: str):
    if is_qobj(x):
        arr = np.asarray(x.full())
        if x.isket:
            arr = arr[:, 0]
        elif x.isbra:
            arr = arr[0].conj()
        return jnp.asarray(arr)
    if hasattr(x, "to_jax") and callable(x.to_jax):  # dynamiqs QArray
        return jnp.asarray(x.to_jax())
    try:
        return jnp.asarray(x)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"Argument `{name}` must be an array, a QuTiP Qobj or a sequence of them, got "
            f"{type(x).__name__}: {err}"
        ) from None


def to_array(x, name: str = "x", *, kind: str = "operator"):
    """Convert an array, a `Qobj` or a sequence of them to a JAX array.

    Args:
        x: A JAX/NumPy array, a QuTiP `Qobj`, a dynamiqs `QArray`, or a (nested)
            sequence of those (stacked along a new leading axis).
        name: Argument name used in messages.
        kind: `"operator"` or `"state"` (documentation only; kets become `(d,)`).

    Returns:
        A JAX array.

    Raises:
        TypeError: If `x` cannot be converted.

    Example:
        >>> to_array([[1, 0], [0, -1]]).shape
        (2, 2)
    """
    del kind
    if isinstance(x, (list, tuple)):
        if len(x) == 0:
            return jnp.zeros((0,))
        parts = [to_array(v, name) for v in x]
        shapes = {p.shape for p in parts}
        if len(shapes) != 1:
            raise ValueError(f"Argument `{name}`: the entries have different shapes {sorted(shapes)}.")
        return jnp.stack(parts)
    return _one(x, name)


def to_qutip(x, dims: Sequence | None = None, *, is_ket: bool | None = None):
    """Convert an array of kets `(..., d)` or operators `(..., d, d)` to `Qobj`.

    Args:
        x: A ket `(d,)`, an operator `(d, d)`, or a batch of either; batches become
            nested lists of `Qobj`.
        dims: QuTiP `dims` (e.g. those of the `Qobj` the inputs came from).
        is_ket: Whether the last axis holds kets; default: operators if the last two
            axes are square.

    Returns:
        A `Qobj` or nested lists of them.

    Raises:
        ImportError: If QuTiP is not installed.
    """
    try:
        import qutip
    except ImportError as err:  # pragma: no cover - qutip is in the test extra
        raise ImportError("to_qutip needs QuTiP: pip install qutip") from err
    a = np.asarray(x)

    space = list(dims[0]) if dims is not None and np.prod(dims[0]) == a.shape[-1] else None

    def conv(m):
        if m.ndim == 1:
            return qutip.Qobj(m[:, None], dims=None if space is None else [space, [1] * len(space)])
        return qutip.Qobj(m, dims=None if space is None else [space, space])

    if is_ket is None:
        is_ket = a.ndim == 1 or a.shape[-1] != a.shape[-2]
    core = 1 if is_ket else 2

    def rec(m):
        return conv(m) if m.ndim == core else [rec(s) for s in m]

    return rec(a)
