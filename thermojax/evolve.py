"""Deterministic evolution: diffrax ODE solves and the exact eigen-propagator.

Two paths, one output type:

* :func:`solve_ode` integrates ``dy/dt = f(t, y, args)`` with diffrax (any solver,
  step-size controller and adjoint, passed through as objects). Complex states are
  integrated as stacked real and imaginary parts, so diffrax's adaptive error norm
  sees only real numbers.
* :class:`EigenPropagator` is the closed form for a time-independent Hamiltonian,
  ``psi(t) = W exp(-i E t) W^dagger psi(0)``, with the eigendecomposition computed
  once and applied to any batch of states.

Both return a :class:`Result`. Neither knows any particular model.
"""

from collections.abc import Callable
from typing import Any

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Complex, Float, PyTree

from ._checks import check_hermitian, check_times


class Result(eqx.Module):
    """Output of an evolution.

    Attributes:
        ts: Save times, shape ``(T,)``, in the model's time unit (hbar / energy).
        ys: Saved states or observables: a pytree whose leaves have shape
            ``(*batch, T, ...)``.
        stats: Solver statistics (``num_steps``, ``num_accepted_steps`` ... for
            diffrax; empty for closed forms). Leaves may carry batch axes.
        success: Boolean, shape ``(*batch,)``: whether each solve reached the final
            time (always ``True`` for closed forms).
    """

    ts: Float[Array, " T"]
    ys: PyTree[Array]
    stats: dict[str, Any]
    success: Array


def _to_real(y: Array) -> Array:
    return jnp.stack([y.real, y.imag]) if jnp.iscomplexobj(y) else y


def _from_real(y: Array, is_complex: bool) -> Array:
    return jax.lax.complex(y[0], y[1]) if is_complex else y


def solve_ode(
    vector_field: Callable[[Any, Array, Any], Array],
    y0: Array,
    ts: Float[Array, " T"],
    *,
    args: Any = None,
    solver: dfx.AbstractSolver | None = None,
    stepsize_controller: dfx.AbstractStepSizeController | None = None,
    adjoint: dfx.AbstractAdjoint | None = None,
    t0: float | None = None,
    dt0: float | None = None,
    max_steps: int | None = 1_000_000,
    observable: Callable[[Array], PyTree[Array]] | None = None,
    progress: bool = False,
    throw: bool = True,
) -> Result:
    """Integrate ``dy/dt = vector_field(t, y, args)`` with diffrax and save at ``ts``.

    Args:
        vector_field: Right-hand side with diffrax's signature ``(t, y, args)``.
            ``y`` has the shape and dtype of ``y0`` (complex allowed).
        y0: Initial state, any shape, real or complex. Batch with ``jax.vmap`` over
            this function (see :func:`solve_ode_batched`).
        ts: Strictly increasing save times, shape ``(T,)``.
        args: Passed to ``vector_field`` (typically the model, so that gradients
            flow to its array fields).
        solver: A diffrax solver; default ``diffrax.Tsit5()``.
        stepsize_controller: Default ``diffrax.PIDController(rtol=1e-8, atol=1e-8)``.
        adjoint: Default ``diffrax.RecursiveCheckpointAdjoint()`` (memory-bounded
            reverse mode).
        t0: Initial time; default ``ts[0]``.
        dt0: Initial step; default chosen by the controller.
        max_steps: diffrax ``max_steps``.
        observable: Optional ``y -> pytree`` applied at each save time; then
            ``Result.ys`` holds observables instead of states (saves memory).
        progress: Show diffrax's tqdm progress meter (not inside ``vmap``).
        throw: Raise if the solver fails (default); with ``False`` failures are
            reported in ``Result.success``.

    Returns:
        A :class:`Result` with ``ys`` of shape ``(T, *y0.shape)`` (or the
        observable's pytree with a leading ``T`` axis).

    Raises:
        ValueError: If ``ts`` is not a 1-D strictly increasing array.
    """
    ts = check_times(ts, "ts")
    is_complex = jnp.iscomplexobj(y0)
    solver = dfx.Tsit5() if solver is None else solver
    if stepsize_controller is None:
        stepsize_controller = dfx.PIDController(rtol=1e-8, atol=1e-8)
    adjoint = dfx.RecursiveCheckpointAdjoint() if adjoint is None else adjoint

    def real_field(t, yr, args):
        dy = vector_field(t, _from_real(yr, is_complex), args)
        return _to_real(dy)

    def save_fn(t, yr, args):
        y = _from_real(yr, is_complex)
        return y if observable is None else observable(y)

    sol = dfx.diffeqsolve(
        dfx.ODETerm(real_field),
        solver,
        t0=ts[0] if t0 is None else t0,
        t1=ts[-1],
        dt0=dt0,
        y0=_to_real(y0),
        args=args,
        saveat=dfx.SaveAt(ts=ts, fn=save_fn),
        stepsize_controller=stepsize_controller,
        adjoint=adjoint,
        max_steps=max_steps,
        progress_meter=dfx.TqdmProgressMeter() if progress else dfx.NoProgressMeter(),
        throw=throw,
    )
    stats = {k: v for k, v in sol.stats.items() if k.startswith("num_")}
    return Result(ts=ts, ys=sol.ys, stats=stats, success=sol.result == dfx.RESULTS.successful)


def solve_ode_batched(vector_field, y0s: Array, ts: Array, *, args: Any = None, **kwargs) -> Result:
    """:func:`solve_ode` vmapped over the leading axis of ``y0s`` (and of ``args`` leaves
    given as batched through ``args_axes``).

    Args:
        y0s: Initial states, shape ``(B, *state)``.
        kwargs: As :func:`solve_ode`; ``args_axes`` (default ``None``: shared ``args``)
            gives ``jax.vmap`` in-axes for ``args`` to batch over parameters too.

    Returns:
        A :class:`Result` whose ``ys`` leaves have shape ``(B, T, ...)``.
    """
    args_axes = kwargs.pop("args_axes", None)
    kwargs.pop("progress", None)

    def one(y0, a):
        return solve_ode(vector_field, y0, ts, args=a, **kwargs)

    return eqx.filter_vmap(one, in_axes=(0, args_axes))(y0s, args)


def complex_matmul(a: Array, b: Array) -> Array:
    """``a @ b`` for complex operands as four real matrix products.

    Same floating-point work as a complex product, but XLA's CPU backend runs real GEMMs
    far faster than complex ones: measured 3.6x for (500, 1000) @ (1000, 500) on the
    2-core CPU (benchmarks/README.md). Real operands fall through to ``a @ b``.
    """
    if not (jnp.iscomplexobj(a) and jnp.iscomplexobj(b)):
        return a @ b
    ar, ai, br, bi = a.real, a.imag, b.real, b.imag
    return jax.lax.complex(ar @ br - ai @ bi, ar @ bi + ai @ br)


class EigenPropagator(eqx.Module):
    r"""Exact propagator of a time-independent Hamiltonian.

    .. math:: \psi(t) = W\, e^{-i E t}\, W^\dagger \psi(0), \qquad H = W\,\mathrm{diag}(E)\,W^\dagger

    The eigendecomposition (``jnp.linalg.eigh``, O(d^3)) is done once at
    construction; each application costs one ``(d, d) x (d, B)`` product per save time.
    It is differentiable with respect to the Hamiltonian's entries through ``eigh``
    (non-degenerate spectrum assumed, as for any random coupling).

    Attributes:
        energies: Eigenvalues ``E``, ascending, shape ``(d,)``.
        basis: Eigenvectors as columns ``W``, shape ``(d, d)``.
    """

    energies: Float[Array, " d"]
    basis: Complex[Array, "d d"]

    @classmethod
    def from_hamiltonian(cls, hamiltonian: Complex[Array, "d d"], *, check: bool = True):
        """Diagonalise ``hamiltonian`` (shape ``(d, d)``, Hermitian).

        Raises:
            ValueError: If ``hamiltonian`` is not square or (with ``check``) not
                Hermitian to 1e-10 relative.
        """
        if check:
            hamiltonian = check_hermitian(hamiltonian, "hamiltonian")
        energies, basis = jnp.linalg.eigh(hamiltonian)
        return cls(energies=energies, basis=basis)

    @property
    def dim(self) -> int:
        return self.energies.shape[0]

    def to_eigenbasis(self, psi: Complex[Array, "*batch d"]) -> Complex[Array, "*batch d"]:
        """Coefficients ``W^dagger psi`` for a batch of kets."""
        return complex_matmul(psi, jnp.conj(self.basis))

    def evolve(
        self,
        psi0: Complex[Array, "*batch d"],
        ts: Float[Array, " T"],
        observable: Callable[[Array], PyTree[Array]] | None = None,
        rows: Array | slice | None = None,
        time_batch: int | None = None,
    ) -> Result:
        """Evolve kets and save states (or observables) at ``ts``.

        Args:
            psi0: Initial kets, shape ``(*batch, d)``.
            ts: Save times, shape ``(T,)`` (any order; usually increasing).
            observable: Optional ``psi -> pytree`` applied to the batch of kets
                ``(*batch, d)`` at each time; saves memory for large batches. It must
                keep the batch axes in front (leaves of shape ``(*batch, ...)``).
            rows: Optional index (array or slice) of the basis components to compute,
                e.g. one subsystem's block: ``psi(t)[..., rows]`` is all that is formed
                (and what ``observable`` receives), at a fraction of the cost.
            time_batch: Save times handled per matrix product (``lax.map``'s
                ``batch_size``): larger products run faster, at ``time_batch`` times the
                memory of one time's states. Default: one time at a time.

        Returns:
            :class:`Result` with ``ys`` leaves of shape ``(*batch, T, ...)``.
        """
        if psi0.shape[-1] != self.dim:
            raise ValueError(f"psi0 must have last axis {self.dim}, got shape {psi0.shape}")
        ts = jnp.asarray(ts, dtype=self.energies.dtype)
        coeff = self.to_eigenbasis(psi0.astype(self.basis.dtype))
        basis_t = self.basis.T if rows is None else self.basis[rows].T

        lead = (1,) * (coeff.ndim - 1)

        def at(t):
            psi_t = complex_matmul(coeff * jnp.exp(-1j * self.energies * t).reshape(*lead, -1), basis_t)
            return psi_t if observable is None else observable(psi_t)

        ys = jax.lax.map(at, ts, batch_size=time_batch)  # leading axis T
        nb = psi0.ndim - 1
        ys = jax.tree.map(lambda y: jnp.moveaxis(y, 0, nb), ys)
        return Result(ts=ts, ys=ys, stats={}, success=jnp.ones(psi0.shape[:-1], bool))


def estimate_bytes(*shapes_dtypes: tuple[tuple[int, ...], Any]) -> int:
    """Bytes needed by arrays of the given ``(shape, dtype)`` pairs."""
    return int(sum(np.prod(s, dtype=np.int64) * np.dtype(dt).itemsize for s, dt in shapes_dtypes))


def available_memory() -> int:
    """Physical memory of the default device in bytes (host RAM on CPU)."""
    dev = jax.devices()[0]
    try:
        stats = dev.memory_stats()
        if stats and "bytes_limit" in stats:
            return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    except Exception:  # CPU devices may not implement memory_stats
        pass
    try:
        import os

        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def check_memory(needed: int, what: str, budget: int | None = None) -> None:
    """Raise ``MemoryError`` with a clear message if ``needed`` bytes exceed the budget.

    Args:
        needed: Estimated bytes.
        what: Description of the allocation (shown in the error).
        budget: Bytes allowed; default: currently available device memory.
    """
    budget = available_memory() if budget is None else budget
    if needed > budget:
        raise MemoryError(
            f"{what} needs about {needed / 2**30:.2f} GiB but only {budget / 2**30:.2f} GiB "
            "is available; reduce the size or batch/chunk the request."
        )
