"""Eager input checks with messages that name the argument, the expectation and the value.

Modelled on dynamiqs' ``_checks.py``: structural problems (shape, dtype, unknown
option) raise ``ValueError``/``TypeError`` before anything is traced.
"""

import jax.numpy as jnp
import numpy as np


def check_times(ts, name: str = "ts"):
    """Return ``ts`` as a 1-D float array, checking it is strictly increasing and finite.

    Raises:
        ValueError: If ``ts`` is not 1-D, is empty, has non-finite entries or is not
            strictly increasing.
    """
    ts = jnp.asarray(ts)
    if ts.ndim != 1 or ts.shape[0] == 0:
        raise ValueError(f"Argument `{name}` must be a non-empty 1-D array, got shape {ts.shape}.")
    if not jnp.issubdtype(ts.dtype, jnp.floating):
        ts = ts.astype(float)
    try:
        host = np.asarray(ts)
    except Exception:  # traced: cannot check values eagerly
        return ts
    if not np.all(np.isfinite(host)):
        raise ValueError(f"Argument `{name}` must be finite, got {host}.")
    if np.any(np.diff(host) <= 0):
        raise ValueError(f"Argument `{name}` must be strictly increasing, got {host}.")
    return ts


def check_hermitian(h, name: str = "hamiltonian", rtol: float = 1e-10):
    """Return ``h`` as an array after checking it is square and Hermitian.

    Raises:
        ValueError: If ``h`` is not a square matrix, or ``||h - h^dagger|| > rtol ||h||``.
    """
    h = jnp.asarray(h)
    if h.ndim != 2 or h.shape[0] != h.shape[1]:
        raise ValueError(f"Argument `{name}` must be a square matrix (d, d), got shape {h.shape}.")
    try:
        host = np.asarray(h)
    except Exception:
        return h
    err = np.linalg.norm(host - host.conj().T)
    scale = max(np.linalg.norm(host), 1e-300)
    if err > rtol * scale:
        raise ValueError(
            f"Argument `{name}` must be Hermitian: ||H - H^dagger|| / ||H|| = {err / scale:.3e} "
            f"exceeds {rtol:.0e}."
        )
    return h


def check_positive(value, name: str, *, allow_zero: bool = False):
    """Check a scalar physical constant is positive (or non-negative).

    Raises:
        ValueError: If the value is negative, zero (unless ``allow_zero``) or not finite.
    """
    v = float(value)
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"Argument `{name}` must be finite and {bound}, got {v!r}.")
    return value
