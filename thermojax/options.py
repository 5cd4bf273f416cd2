"""Method objects and the one options object of the public solvers.

Solver choices are objects, never strings, and the solvers dispatch on their *type*
(as dynamiqs does):

* `ODE` wraps a diffrax solver, step-size controller and adjoint, passed
  through unchanged;
* `Eigen` is the exact propagator of a time-independent Hamiltonian
  (`thermojax.spectra.Eigensystem.evolve`);
* `Expm` exponentiates the dense Liouvillian (small open systems);
* `EulerMaruyama` and `DiffraxSDE` integrate stochastic trajectories:
  the first with a plain `lax.scan` (the fast path), the second with diffrax's SDE
  machinery (Brownian trees, adjoints).

Everything else that tunes a solve lives in one `Options`.
"""

from typing import Literal

import diffrax as dfx
import equinox as eqx

__all__ = ["AbstractMethod", "ODE", "Eigen", "Expm", "EulerMaruyama", "DiffraxSDE", "Options"]


class AbstractMethod(eqx.Module):
    """Base class of the method objects."""


class ODE(AbstractMethod):
    """Adaptive ODE integration with diffrax.

    Attributes:
        solver: A diffrax solver (default `diffrax.Tsit5()`).
        stepsize_controller: Default `diffrax.PIDController(rtol=1e-8, atol=1e-8)`.
        adjoint: Default `diffrax.RecursiveCheckpointAdjoint()` (memory-bounded
            reverse mode).
        max_steps: diffrax `max_steps`.
        dt0: Initial step (default: chosen by the controller).
        complex_state: Integrate complex states as complex arrays (default; faster), or
            as stacked real and imaginary parts (`False`).
        fused: For real states, run diffrax's explicit Runge–Kutta solvers with their
            stages written out (same tableau, controller and interpolation; the step's
            bookkeeping is 4-15x cheaper on small states on CPU, measured in
            `benchmarks/rk_step.py`). Complex states always use the diffrax step (fusing
            slowed the Kerr `mesolve` 1.7x). `False` always runs the diffrax step.
        dense: Save by diffrax's dense interpolation (default: one solve, the steps
            independent of the save times). `False` integrates from one save time to the
            next (one `diffrax.diffeqsolve` with `SaveAt(t1=True)` per interval), so no
            step carries the stages that interpolation needs: for large states that is up
            to 2x less memory traffic per step (a 2 MB chain state at a fixed step,
            `benchmarks/solid.py`). Each interval then starts afresh: a fixed step is
            unchanged when the save times lie on its grid; an adaptive controller picks a
            new first step at every save time (more steps when saves are many), and
            `Options(progress=True)` shows no bar.

    Example:
        >>> import diffrax
        >>> m = ODE(diffrax.Dopri8(), diffrax.PIDController(rtol=1e-10, atol=1e-12))
        >>> type(m.solver).__name__
        'Dopri8'
    """

    solver: dfx.AbstractSolver = dfx.Tsit5()
    stepsize_controller: dfx.AbstractStepSizeController = dfx.PIDController(rtol=1e-8, atol=1e-8)
    adjoint: dfx.AbstractAdjoint = dfx.RecursiveCheckpointAdjoint()
    max_steps: int = eqx.field(static=True, default=1_000_000)
    dt0: float | None = eqx.field(static=True, default=None)
    complex_state: bool = eqx.field(static=True, default=True)
    fused: bool = eqx.field(static=True, default=True)
    dense: bool = eqx.field(static=True, default=True)


class Eigen(AbstractMethod):
    r"""Exact propagation $\psi(t) = V e^{-iEt} V^\dagger\psi(0)$ of a time-independent
    Hamiltonian from one eigendecomposition (`jnp.linalg.eigh`, $O(d^3)$).

    Attributes:
        time_batch: Save times handled per matrix product (larger is faster, at
            `time_batch` times the memory of one time's states).
    """

    time_batch: int | None = eqx.field(static=True, default=None)


class Expm(AbstractMethod):
    r"""Exact evolution $\mathrm{vec}\,\rho(t) = e^{\mathcal L t}\mathrm{vec}\,\rho_0$ by
    the matrix exponential of the dense Liouvillian ($d^2\times d^2$): for small
    time-independent open systems ($d \lesssim 30$)."""


class EulerMaruyama(AbstractMethod):
    r"""Fixed-step Euler–Maruyama for stochastic trajectories, by a plain `lax.scan`.

    $y_{n+1} = y_n + f(t_n, y_n)\,\Delta t + g(t_n, y_n)\,\Delta W_n$ with
    $\Delta W_n = \sqrt{\Delta t}\,\xi_n$; weak order 1, strong order 1/2.

    Attributes:
        dt: Step size (> 0); every save time must lie on the grid `t0 + n dt`.
    """

    dt: float = eqx.field(static=True)


class DiffraxSDE(AbstractMethod):
    """Fixed-step SDE integration through diffrax (`MultiTerm(ODETerm, ControlTerm)`).

    Slower than `EulerMaruyama` on CPU (diffrax#517; `benchmarks/sde_loop.py`)
    but offers diffrax's Brownian paths and adjoints, and is an independent
    implementation.

    Attributes:
        dt: Step size.
        solver: A diffrax SDE solver (default `diffrax.Euler()`, i.e. Euler–Maruyama).
        brownian: `"matched"` (the same increments as `EulerMaruyama`),
            `"virtual"` (`diffrax.VirtualBrownianTree`) or `"unsafe"`
            (`diffrax.UnsafeBrownianPath`).
    """

    dt: float = eqx.field(static=True)
    solver: dfx.AbstractSolver = dfx.Euler()
    brownian: Literal["matched", "virtual", "unsafe"] = eqx.field(static=True, default="matched")


class Options(eqx.Module):
    """Options shared by every solver (all static: a change recompiles).

    Attributes:
        save_states: Save the states at `tsave` (`False` keeps only `expect`).
        progress: Show progress bars (diffrax's meter for ODEs; a bar over chunks of
            trajectories).
        t0: Initial time (default `tsave[0]`).
        throw: Raise when a solve fails instead of reporting it in `Result.status`.
        normalize: Rescale the initial state to unit norm/trace instead of raising on
            an unnormalised one; for trajectories, also project each step back to unit
            norm (default for `thermojax.ssesolve`).
        chunk_size: Trajectories per compiled chunk (default: from `memory_budget`,
            else all).
        memory_budget: Device bytes a chunk of trajectories may use.
        max_norm: Norm above which a trajectory counts as diverged (default: the
            equation's own threshold).
        record_norm: Record the norm of every trajectory (observable `"norm"` and
            `stats["norm_drift"]`).
        store_trajectories: Keep every trajectory's states (memory: `ntraj` times
            the states).
        precision: `"double"` (complex128) or `"single"` (complex64) for
            trajectories: single is 1.4-1.6x faster on CPU, with ~1e-7 relative
            rounding per step.
    """

    save_states: bool = eqx.field(static=True, default=True)
    progress: bool = eqx.field(static=True, default=False)
    t0: float | None = eqx.field(static=True, default=None)
    throw: bool = eqx.field(static=True, default=False)
    normalize: bool | None = eqx.field(static=True, default=None)
    chunk_size: int | None = eqx.field(static=True, default=None)
    memory_budget: int | None = eqx.field(static=True, default=None)
    max_norm: float | None = eqx.field(static=True, default=None)
    record_norm: bool = eqx.field(static=True, default=False)
    store_trajectories: bool = eqx.field(static=True, default=False)
    precision: Literal["double", "single"] = eqx.field(static=True, default="double")

    def __check_init__(self):
        if self.precision not in ("double", "single"):
            raise ValueError(f'Options `precision` must be "double" or "single", got {self.precision!r}.')
        if self.chunk_size is not None and (isinstance(self.chunk_size, bool) or int(self.chunk_size) < 1):
            raise ValueError(f"Options `chunk_size` must be an integer >= 1 or None, got {self.chunk_size!r}.")
        if self.max_norm is not None and not self.max_norm > 0:
            raise ValueError(f"Options `max_norm` must be > 0 or None, got {self.max_norm!r}.")
