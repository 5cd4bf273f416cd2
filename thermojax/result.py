"""One result type for every solver, closed form and propagator in thermojax.

Modelled on diffrax's `Solution` (a status enum per element) and dynamiqs'
`Result` (batch axes first, then time, everywhere).
"""

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

__all__ = ["Status", "EnsembleStats", "Result", "status_from_diffrax"]


class Status(eqx.Enumeration):
    """Outcome of one solve (one batch element or one trajectory ensemble).

    Compare with `result.status == Status.successful` (a boolean array of shape
    `(*batch,)`); `Status[item]` gives the message of a scalar item.
    """

    successful = "The solve reached the last save time."
    max_steps_reached = "The maximum number of solver steps was reached: raise `max_steps`."
    step_size_too_small = "The step-size controller reached its minimum step."
    nonfinite = "The state became NaN or infinite."
    diverged = "Trajectories diverged (non-finite, or norm above the divergence threshold)."
    failed = "The solver failed (see the diffrax result)."


def status_from_diffrax(result) -> "Status":
    """Map a scalar `diffrax.RESULTS` item to `Status` (traceable)."""
    import diffrax as dfx

    return Status.where(
        result == dfx.RESULTS.successful,
        Status.successful,
        Status.where(
            result == dfx.RESULTS.max_steps_reached,
            Status.max_steps_reached,
            Status.where(result == dfx.RESULTS.dt_min_reached, Status.step_size_too_small, Status.failed),
        ),
    )


def status_array(ok: Array, bad: "Status" = Status.diverged) -> "Status":
    """An array-valued `Status`: `successful` where `ok` else `bad`."""
    ok = jnp.asarray(ok)
    return jax.tree.map(lambda a, b: jnp.where(ok, a, b), Status.successful, bad)


class EnsembleStats(eqx.Module):
    r"""Ensemble statistics of a batch of stochastic trajectories.

    Shapes use `T = len(tsave)`, `*batch` for batch axes of the initial states or
    models, `*obs` for the shape of one value of an observable. Diverged trajectories
    are excluded from every average.

    Attributes:
        mean: Ensemble mean of each named observable, `{name: (*batch, T, *obs)}`.
        var: Unbiased ensemble variance $\frac{1}{n-1}\sum|x-\bar x|^2$ (real),
            `{name: (*batch, T, *obs)}`; NaN when `n < 2`.
        n: Trajectories averaged (not diverged), `(*batch,)`.
        n_diverged: Diverged trajectories, `(*batch,)`.
        diverged: Per-trajectory divergence flag, `(ntraj, *batch)`.
        norm_drift: $\max_i|\,\|y_i(t)\|-\|y_i(t_0)\|\,|$ over used trajectories,
            `(*batch, T)`, or `None` when not recorded.
        trajectories: Saved states `(ntraj, *batch, T, *state)` or `None`.
        batch_mean: With `n_batches`, the mean of each observable over each batch of
            consecutive trajectories, `{name: (B, *batch, T, *obs)}`; else `None`.
        batch_n: Trajectories averaged per batch, `(B, *batch)`, or `None`.
        ntraj: Trajectories run per batch element.
        n_steps: Steps per trajectory.
        dt: Step size.
        chunk_size: Trajectories per compiled chunk.
    """

    mean: dict[str, Array]
    var: dict[str, Array]
    n: Int[Array, " *batch"]
    n_diverged: Int[Array, " *batch"]
    diverged: Bool[Array, " ntraj *batch"]
    norm_drift: Array | None
    trajectories: Array | None
    batch_mean: dict[str, Array] | None
    batch_n: Array | None
    ntraj: int = eqx.field(static=True)
    n_steps: int = eqx.field(static=True)
    dt: float = eqx.field(static=True)
    chunk_size: int = eqx.field(static=True)

    def stderr(self, name: str) -> Array:
        r"""Standard error $\sqrt{\mathrm{var}/n}$ of observable `name`'s mean.

        Raises:
            KeyError: If `name` is not an observable of this ensemble.
        """
        if name not in self.var:
            raise KeyError(f"no observable named {name!r}; have {sorted(self.var)}")
        var = self.var[name]
        n = jnp.reshape(self.n, self.n.shape + (1,) * (var.ndim - self.n.ndim))
        return jnp.sqrt(var / n)


class Result(eqx.Module):
    r"""The output of every thermojax solver.

    Batch axes come first, then time, everywhere.

    Attributes:
        tsave: Save times, shape `(T,)` (time unit of the model, $\hbar/E$).
        states: Saved states, `(*batch, T, d)` for kets or `(*batch, T, d, d)` for
            density matrices (for a trajectory solver: the ensemble mean of
            $|\psi\rangle\langle\psi|$), or `None` with
            `Options(save_states=False)`.
        expect: Expectation values $\mathrm{Tr}(E_k\rho(t))$ of `e_ops`, shape
            `(*batch, E, T)`, complex; `None` without `e_ops`.
        expect_stderr: For trajectory solvers, the standard error of `expect` over the
            ensemble (real, same shape); `None` otherwise.
        stats: Solver statistics, e.g. `num_steps`, `num_accepted_steps`,
            `num_rejected_steps` (diffrax), `norm_drift` (trajectories); leaves may
            carry batch axes.
        status: A `Status` per batch element, shape `(*batch,)`.
        ensemble: For trajectory solvers, the `EnsembleStats`; else `None`.
        method: Name of the method that produced the result.
        kets: Whether `states` holds kets (else density matrices).
        dims: QuTiP `dims` of the inputs, if they were `Qobj` (for `to_qutip`).
    """

    tsave: Float[Array, " T"]
    states: Array | None
    expect: Array | None
    stats: dict[str, Any]
    status: Status
    expect_stderr: Array | None = None
    ensemble: EnsembleStats | None = None
    method: str = eqx.field(static=True, default="")
    kets: bool = eqx.field(static=True, default=False)
    dims: Any = eqx.field(static=True, default=None)

    @classmethod
    def exact(cls, tsave, states, expect=None, *, batch: tuple, method: str, kets: bool = False) -> "Result":
        """The `Result` of a closed form or exact propagator: no solver statistics, every
        element successful."""
        ok = jax.tree.map(lambda x: jnp.broadcast_to(x, tuple(batch)), Status.successful)
        return cls(tsave=tsave, states=states, expect=expect, stats={}, status=ok, method=method, kets=kets)

    @property
    def success(self) -> Bool[Array, " *batch"]:
        """Boolean `(*batch,)`: whether each element succeeded."""
        return self.status == Status.successful

    @property
    def final_state(self) -> Array:
        """States at the last save time, `(*batch, d)` or `(*batch, d, d)`."""
        if self.states is None:
            raise ValueError("No states were saved (Options(save_states=False)).")
        core = 1 if self.kets else 2
        return self.states[(..., -1) + (slice(None),) * core]

    def to_qutip(self):
        """The saved states as QuTiP `Qobj`: nested lists `[*batch][T]`.

        Raises:
            ValueError: If no states were saved.
            ImportError: If QuTiP is not installed.
        """
        from .interop import to_qutip

        if self.states is None:
            raise ValueError("No states were saved (Options(save_states=False)).")
        return to_qutip(self.states, self.dims, is_ket=self.kets)

    def __str__(self) -> str:
        def shape(x):
            return "None" if x is None else f"{tuple(x.shape)} {x.dtype}"

        ok = np.asarray(self.success)
        lines = [
            f"Result ({self.method or 'solver'})",
            f"  tsave:  {shape(self.tsave)}",
            f"  states: {shape(self.states)}",
            f"  expect: {shape(self.expect)}",
            f"  status: {int(ok.sum())}/{ok.size} successful",
        ]
        if self.ensemble is not None:
            lines.append(
                f"  ensemble: ntraj {self.ensemble.ntraj}, diverged {int(np.sum(self.ensemble.n_diverged))}"
            )
        return "\n".join(lines)
