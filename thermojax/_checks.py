"""Argument checks, one home for all of them, with messages that name the argument.

Two kinds of check, as in dynamiqs' `_checks.py`:

* **Structure** (shape, dtype, unknown option, a size that cannot fit in memory) is
  checked eagerly and raises `ValueError`/`TypeError`/`MemoryError` before
  anything is traced or allocated.
* **Values** (finite, Hermitian, normalised, ordered) are checked eagerly when the
  value is concrete, and through `eqx.error_if` when it is traced under `jit`.
  Every such function *returns* the checked array and the caller must use the
  returned value: that keeps the runtime check in the compiled graph.

Every message has the form "Argument `name` must ..., got ...".
"""

import math
import os
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "is_concrete",
    "check_times",
    "check_hermitian",
    "check_finite",
    "check_positive",
    "check_int",
    "check_shape",
    "check_state",
    "check_tolerance",
    "estimate_bytes",
    "available_memory",
    "check_memory",
    "format_bytes",
]

#: Default absolute tolerance on a state's norm (ket) or trace (density matrix).
STATE_ATOL = 1e-8


def is_concrete(*xs) -> bool:
    """Whether every leaf of the arguments is a concrete value (not traced under `jit`)."""
    return not any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(xs))


def check_times(x, name: str = "tsave"):
    """Return `x` as a 1-D float array after checking it is finite and strictly increasing.

    Args:
        x: Times, shape `(T,)`.
        name: Argument name used in messages.

    Returns:
        The times as a float array (checked by `eqx.error_if` when traced).

    Raises:
        ValueError: If `x` is not 1-D, is empty, is not finite or not strictly
            increasing (at run time under `jit`).

    Example:
        >>> check_times([0.0, 0.5, 1.0]).shape
        (3,)
    """
    x = jnp.asarray(x)
    if x.ndim != 1 or x.shape[0] == 0:
        raise ValueError(f"Argument `{name}` must be a non-empty 1-D array of times, got shape {x.shape}.")
    if jnp.iscomplexobj(x):
        raise TypeError(f"Argument `{name}` must be real, got dtype {x.dtype}.")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    bad_finite = ~jnp.all(jnp.isfinite(x))
    bad_order = jnp.any(jnp.diff(x) <= 0)
    if is_concrete(bad_finite, bad_order):
        if bool(bad_finite):
            raise ValueError(f"Argument `{name}` must be finite, got {np.asarray(x)}.")
        if bool(bad_order):
            raise ValueError(f"Argument `{name}` must be strictly increasing, got {np.asarray(x)}.")
        return x
    x = eqx.error_if(x, bad_finite, f"Argument `{name}` must be finite.")
    return eqx.error_if(x, bad_order, f"Argument `{name}` must be strictly increasing.")


def check_shape(x, name: str, *shapes: str):
    """Check the trailing shape of `x` against patterns such as `"(d, d)"`.

    Each pattern is a tuple of ints or `None` (any size) for the trailing axes;
    leading axes beyond the pattern are batch axes.

    Raises:
        ValueError: If no pattern matches, naming the argument and its shape.
    """
    shape = tuple(np.shape(x))
    for pattern in shapes:
        n = len(pattern)
        if len(shape) >= n and all(p is None or p == s for p, s in zip(pattern, shape[len(shape) - n :])):
            return x
    want = " or ".join(str(tuple("d" if p is None else p for p in pat)) for pat in shapes)
    raise ValueError(f"Argument `{name}` must have shape (..., {want[1:]}, got shape {shape}.")


def check_finite(x, name: str):
    """Return `x` after checking every entry is finite (eagerly, or with `eqx.error_if`).

    Raises:
        ValueError: If an entry is NaN or infinite; the message says which.
    """
    x = jnp.asarray(x)
    bad = ~jnp.all(jnp.isfinite(x))
    if is_concrete(bad):
        if bool(bad):
            what = "NaN" if bool(jnp.any(jnp.isnan(x))) else "an infinite value"
            raise ValueError(f"Argument `{name}` must be finite, but it contains {what}.")
        return x
    return eqx.error_if(x, bad, f"Argument `{name}` must be finite (it contains NaN or inf).")


def check_hermitian(x, name: str = "H", rtol: float = 1e-10, atol: float = 1e-12):
    """Return `x` after checking it is a finite Hermitian matrix (batched over leading axes).

    The test is `max|x - x^dagger| <= atol + rtol * max|x|` per matrix.

    Args:
        x: Matrices, shape `(..., d, d)`.
        name: Argument name used in messages.
        rtol, atol: Tolerances.

    Raises:
        ValueError: If `x` is not square, contains NaN/inf (said as such) or is not
            Hermitian (eagerly when concrete, at run time under `jit`).

    Example:
        >>> import jax.numpy as jnp
        >>> check_hermitian(jnp.array([[0.0, 1.0], [1.0, 0.0]]), "H").shape
        (2, 2)
    """
    x = jnp.asarray(x)
    if x.ndim < 2 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"Argument `{name}` must be a square matrix (..., d, d), got shape {x.shape}.")
    x = check_finite(x, name)
    dev = jnp.max(jnp.abs(x - jnp.conj(jnp.swapaxes(x, -1, -2))), initial=0.0)
    scale = jnp.max(jnp.abs(x), initial=0.0)
    bad = dev > atol + rtol * scale
    if is_concrete(bad, dev):
        if bool(bad):
            raise ValueError(
                f"Argument `{name}` must be Hermitian: max|{name} - {name}^dagger| = {float(dev):.3e} "
                f"exceeds {atol:.0e} + {rtol:.0e} max|{name}|."
            )
        return x
    return eqx.error_if(x, bad, f"Argument `{name}` must be Hermitian.")


def check_positive(value, name: str, *, allow_zero: bool = False):
    """Check a scalar physical constant is finite and positive (or non-negative).

    Works on concrete values eagerly and on traced ones with `eqx.error_if`.

    Raises:
        ValueError: If the value is negative, zero (unless `allow_zero`), complex or
            not finite.
    """
    x = jnp.asarray(value)
    if x.shape != ():
        raise ValueError(f"Argument `{name}` must be a scalar, got shape {x.shape}.")
    if jnp.iscomplexobj(x):
        raise ValueError(f"Argument `{name}` must be real, got {value!r}.")
    bound = ">= 0" if allow_zero else "> 0"
    bad = ~jnp.isfinite(x) | (x < 0) | ((x == 0) & (not allow_zero))
    if is_concrete(bad):
        if bool(bad):
            raise ValueError(f"Argument `{name}` must be finite and {bound}, got {value!r}.")
        return value
    return eqx.error_if(x, bad, f"Argument `{name}` must be finite and {bound}.")


def check_int(value, name: str, low: int | None = None, high: int | None = None) -> int:
    """Return `value` as an `int` after checking it is an integer in `[low, high]`.

    Raises:
        ValueError: If it is not an integer (bools are refused) or out of range.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"Argument `{name}` must be an integer, got {value!r}.")
    if (low is not None and value < low) or (high is not None and value > high):
        rng = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"Argument `{name}` must be an integer {rng}, got {value!r}.")
    return int(value)


def check_tolerance(value: float, name: str) -> float:
    """A tolerance: a finite float > 0."""
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"Argument `{name}` must be a finite tolerance > 0, got {value!r}.")
    return v


def check_state(
    x,
    dim: int | None,
    name: str,
    *,
    kind: str = "any",
    normalize: bool = False,
    atol: float = STATE_ATOL,
    batch: bool = True,
):
    r"""Check a ket `(..., d)` or density matrix `(..., d, d)` and return it as complex.

    Checks: shape (`d` = `dim` when given), finite entries, norm
    $\langle\psi|\psi\rangle = 1$ or $\mathrm{Tr}\rho = 1$ within `atol`
    (or rescaling with `normalize=True`), and for density matrices Hermiticity and
    positivity (smallest eigenvalue $\ge -$ `atol`; eagerly only). A QuTiP
    `Qobj` or a `(d, 1)` column ket is converted first.

    Args:
        x: The state.
        dim: Expected dimension `d` (`None`: any).
        name: Argument name used in messages (as the signature names it).
        kind: `"ket"`, `"dm"` or `"any"`.
        normalize: Rescale to unit norm/trace instead of raising.
        atol: Tolerance of the norm, Hermiticity and positivity checks.
        batch: Whether leading batch axes are allowed.

    Returns:
        `(state, is_ket)`.

    Raises:
        ValueError: With the argument named, for a wrong shape, NaN/inf, a zero state,
            wrong norm/trace (unless `normalize`), a non-Hermitian or non-positive
            density matrix.

    Example:
        >>> import jax.numpy as jnp
        >>> psi, is_ket = check_state(jnp.array([3.0, 4.0]), 2, "psi0", normalize=True)
        >>> psi.tolist(), is_ket
        ([(0.6+0j), (0.8+0j)], True)
    """
    from .interop import to_array  # local: interop imports nothing heavy

    x = to_array(x, name, kind="state")
    if x.ndim >= 2 and x.shape[-1] == 1 and (dim is None or x.shape[-2] == dim) and kind != "dm":
        x = x[..., 0]  # (d, 1) column ket
    d = x.shape[-1] if dim is None else dim
    is_dm = x.ndim >= 2 and x.shape[-2:] == (d, d) and kind != "ket"
    is_ket = (not is_dm) and x.ndim >= 1 and x.shape[-1] == d and kind != "dm"
    core = 2 if is_dm else 1
    if not (is_dm or is_ket) or (not batch and x.ndim != core):
        want = {"ket": f"a ket ({d},)", "dm": f"a density matrix ({d}, {d})"}.get(
            kind, f"a ket ({d},) or a density matrix ({d}, {d})"
        )
        lead = "(*batch, ...) " if batch else ""
        raise ValueError(f"Argument `{name}` must be {want} {lead}, got shape {x.shape}.".replace(" ,", ","))
    x = x.astype(jnp.result_type(x.dtype, jnp.complex64))
    x = check_finite(x, name)
    if is_ket:
        norm = jnp.sum(jnp.abs(x) ** 2, axis=-1)
    else:
        norm = jnp.real(jnp.trace(x, axis1=-2, axis2=-1))
    what = "<psi|psi>" if is_ket else "Tr rho"
    if is_concrete(x, norm):
        host = np.asarray(x)
        nrm = np.asarray(norm)
        if np.any(nrm <= 0):
            hint = " (an array (..., d, d) is read as density matrices)" if is_dm and kind == "any" else ""
            raise ValueError(f"Argument `{name}` must be a nonzero state, got {what} = {float(nrm.min())!r}{hint}.")
        if is_dm:
            herm = np.max(np.abs(host - np.conj(np.swapaxes(host, -1, -2))))
            if herm > atol * max(1.0, float(nrm.max())):
                raise ValueError(
                    f"Argument `{name}` must be a Hermitian density matrix: max|rho - rho^dagger| = "
                    f"{herm:.3e} exceeds {atol:.0e}."
                )
            if d <= 2048:
                lam = np.linalg.eigvalsh(0.5 * (host + np.conj(np.swapaxes(host, -1, -2))))
                if lam.min() < -atol * max(1.0, float(nrm.max())):
                    raise ValueError(
                        f"Argument `{name}` must be positive semidefinite: smallest eigenvalue "
                        f"{lam.min():.3e}."
                    )
        if not normalize and np.any(np.abs(nrm - 1.0) > atol):
            worst = float(nrm.ravel()[np.argmax(np.abs(nrm - 1.0).ravel())])
            raise ValueError(
                f"Argument `{name}` must be normalised ({what} = 1 within {atol:.0e}), got "
                f"{what} = {worst!r}; pass `normalize=True` to rescale it."
            )
    elif not normalize:
        x = eqx.error_if(x, jnp.any(jnp.abs(norm - 1.0) > atol), f"Argument `{name}` must be normalised.")
    if normalize:
        scale = jnp.sqrt(norm)[..., None] if is_ket else norm[..., None, None]
        x = x / scale.astype(x.dtype)
    return x, is_ket


# ----------------------------------------------------------------------------------
# memory
# ----------------------------------------------------------------------------------


def estimate_bytes(*shapes_dtypes: tuple[tuple[int, ...], Any]) -> int:
    """Bytes needed by arrays of the given `(shape, dtype)` pairs (no allocation).

    Example:
        >>> estimate_bytes(((1000, 1000), "complex128"))
        16000000
    """
    return int(sum(math.prod(int(n) for n in s) * np.dtype(dt).itemsize for s, dt in shapes_dtypes))


def available_memory() -> int:
    """Bytes available on the default device: free device memory on a GPU, free host
    memory (`MemAvailable`) on a CPU."""
    dev = jax.devices()[0]
    if dev.platform != "cpu":
        try:
            stats = dev.memory_stats()
            if stats and "bytes_limit" in stats:
                return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
        except Exception:  # pragma: no cover - backend without memory stats
            pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        return 8 * 2**30


def format_bytes(n: float) -> str:
    """`1.5 GiB`-style size."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{int(n)} B"


def check_memory(needed: int, what: str, budget: int | None = None, *, key: str | None = None) -> None:
    """Refuse, before allocating, a request of `needed` bytes that exceeds the budget.

    Args:
        needed: Estimated bytes.
        what: What would be allocated (shown in the message).
        budget: Bytes allowed; default `available_memory`.
        key: The config key or argument that sets the size (named in the message).

    Raises:
        MemoryError: `"<what> needs about X GiB but Y GiB is available"`.

    Example:
        >>> check_memory(10, "a tiny array", budget=100)
    """
    budget = available_memory() if budget is None else int(budget)
    if needed > budget:
        where = f" (set by `{key}`)" if key else ""
        raise MemoryError(
            f"{what}{where} needs about {format_bytes(needed)} but only {format_bytes(budget)} is "
            "available; reduce the size or batch/chunk the request."
        )
