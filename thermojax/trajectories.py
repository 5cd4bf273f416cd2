r"""Batches of stochastic trajectories: integration, chunking and ensemble statistics.

This module is paper-agnostic. A model describes an Itô stochastic differential
equation

$$ \mathrm{d}y = f(t, y)\,\mathrm{d}t + g(t, y)\,\mathrm{d}W_t $$

by subclassing [`AbstractSDE`][thermojax.trajectories.AbstractSDE] (drift $f$, the
noise action $g(t, y)\,\mathrm{d}W$ as a matrix-free product, and the shape of the
real Wiener increment $\mathrm{d}W$). The functions here then

- integrate single paths with the Euler–Maruyama scheme, either with a plain
  `jax.lax.scan` (`method="scan"`, the fast path) or with diffrax
  (`method="diffrax"`, `diffrax.Euler` on `MultiTerm(ODETerm, ControlTerm)`);
- run `n_traj` paths in chunks of a jitted, vmapped kernel compiled once, with one
  PRNG key per trajectory, ``jax.random.fold_in(key, i)``, so that results do not
  depend on the chunking;
- accumulate ensemble means and variances of named observables (and optionally the
  ensemble mean of $y y^\dagger$, the density matrix $\rho$ when $y$ is a ket) by a
  sequential Welford update in trajectory order, so the numbers are the same whatever
  the chunk size;
- flag divergent trajectories (non-finite states, or a norm above `max_norm`) and
  exclude them from every average;
- give differentiable ensemble means ([`ensemble_mean`][thermojax.trajectories.ensemble_mean])
  with bounded memory through `jax.checkpoint`.

The Euler–Maruyama step from $t_n = t_0 + n\,\Delta t$ is

$$ y_{n+1} = y_n + f(t_n, y_n)\,\Delta t + g(t_n, y_n)\,\Delta W_n,
   \qquad \Delta W_n = \sqrt{\Delta t}\,\xi_n,\ \xi_n \sim \mathcal N(0, 1), $$

with $\xi_n$ drawn from ``jax.random.fold_in(trajectory_key, n)``: the noise of step
$n$ depends only on the key, the trajectory index and $n$ (not on the saving times,
the chunk size or the method when `brownian="matched"`). The scheme has weak order 1
and strong order 1/2.

Why two integrators: diffrax's generic SDE loop carries per-step bookkeeping that a
fixed-step Euler–Maruyama loop does not need (diffrax issue #517);
``benchmarks/sde_loop.py`` measures both. The diffrax path is kept for its Brownian
paths (`VirtualBrownianTree`), adjoints and as an independent implementation.
"""

import abc
import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any, Literal

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray, PyTree, Shaped
from tqdm.auto import tqdm

__all__ = [
    "AbstractSDE",
    "TrajectoryResult",
    "simulate_trajectories",
    "ensemble_mean",
    "solve_trajectory",
    "estimate_memory",
]

Method = Literal["scan", "diffrax"]
Brownian = Literal["matched", "virtual", "unsafe"]

# Work arrays of the size of one state (y, drift, diffusion, y_new, ...) assumed live per
# trajectory by the memory estimate, per integrator.
_WORK_STATES = {"scan": 6, "diffrax": 12}


# ----------------------------------------------------------------------------------
# The interface a model implements
# ----------------------------------------------------------------------------------


class AbstractSDE(eqx.Module):
    r"""An Itô SDE $\mathrm{d}y = f(t, y)\,\mathrm{d}t + g(t, y)\,\mathrm{d}W$.

    Subclasses are final `eqx.Module`s; constants that a fit may tune are array fields
    (they can carry a leading batch axis, see `in_axes` of
    [`simulate_trajectories`][thermojax.trajectories.simulate_trajectories]), sizes and
    switches are `eqx.field(static=True)`.

    The state `y` is any array (real or complex), e.g. a ket `psi` of shape `(d,)`.
    The noise increment `dw` is a pytree of *real* arrays described by
    [`noise_shape`][thermojax.trajectories.AbstractSDE.noise_shape]; each entry is an
    independent increment $\mathcal N(0, \Delta t)$.

    Example:
        >>> import equinox as eqx, jax, jax.numpy as jnp
        >>> class GBM(AbstractSDE):
        ...     k: jax.Array
        ...     sigma: jax.Array
        ...     def drift(self, t, y, args):
        ...         return -self.k * y
        ...     def diffusion_mv(self, t, y, args, dw):
        ...         return self.sigma * y * dw
        ...     def noise_shape(self):
        ...         return jax.ShapeDtypeStruct((1,), jnp.float64)
        >>> sde = GBM(jnp.array(1.0), jnp.array(0.5))
        >>> sde.drift(0.0, jnp.ones(1), None)
        Array([-1.], dtype=float64)
    """

    @abc.abstractmethod
    def drift(self, t: Float[ArrayLike, ""], y: Shaped[Array, "*state"], args: Any):
        r"""Drift $f(t, y)$.

        Args:
            t: Time, a scalar.
            y: State, shape `state` (no batch axes: batching is done by vmap).
            args: The `args` passed to the integrator, unchanged.

        Returns:
            An array of the shape and dtype of `y`.
        """

    @abc.abstractmethod
    def diffusion_mv(
        self, t: Float[ArrayLike, ""], y: Shaped[Array, "*state"], args: Any, dw: PyTree
    ):
        r"""Noise term $g(t, y)\,\mathrm{d}W$ as a matrix-free product.

        Args:
            t: Time, a scalar.
            y: State, shape `state`.
            args: The `args` passed to the integrator, unchanged.
            dw: Real Wiener increment, a pytree matching `noise_shape()`.

        Returns:
            An array of the shape and dtype of `y`. Must be linear in `dw`.
        """

    @abc.abstractmethod
    def noise_shape(self) -> PyTree[jax.ShapeDtypeStruct]:
        """Shape and (real floating) dtype of `dw`: a pytree of `jax.ShapeDtypeStruct`."""

    def divergence_norm(self) -> float | None:
        """Default `max_norm` of the integrators for this SDE: a path whose norm exceeds
        it is flagged as diverged. `None` (the default): only non-finite states count.
        Models with a conserved norm (stochastic Schrödinger equations) override it."""
        return None


# ----------------------------------------------------------------------------------
# Result
# ----------------------------------------------------------------------------------


class TrajectoryResult(eqx.Module):
    r"""Ensemble statistics of a batch of trajectories.

    Shapes below use `T = len(ts)`, `*batch` = `(n_batch,)` when a batch of initial
    states or models was run (`in_axes`), else `()`, and `*obs` the shape of one value
    of an observable. Diverged trajectories are excluded from every average.

    Attributes:
        ts: Saving times, shape `(T,)`.
        mean: Ensemble mean of each observable, `{name: (*batch, T, *obs)}`.
        var: Unbiased ensemble variance $\frac{1}{n-1}\sum|x - \bar x|^2$ of each
            observable (real), `{name: (*batch, T, *obs)}`; NaN when `n < 2`.
        n: Number of trajectories averaged (not diverged), shape `(*batch,)`.
        n_diverged: Number of diverged trajectories, shape `(*batch,)`.
        diverged: Per-trajectory divergence flag, shape `(n_traj, *batch)`.
        mean_outer: Ensemble mean of $y y^\dagger$ (the density matrix $\rho$ for a ket
            `psi`), shape `(*batch, T, *state, *state)`, or `None` if not requested.
        trajectories: Saved states, shape `(n_traj, *batch, T, *state)`, or `None`.
            Diverged trajectories are stored as they ended (the scan integrator freezes
            a trajectory at its last finite state; see `diverged`).
        norm_drift: $\max_i \bigl|\,\|y_i(t)\| - \|y_i(t_0)\|\,\bigr|$ over used
            trajectories, shape `(*batch, T)`, or `None` if not requested.
        n_traj: Number of trajectories run per batch element.
        n_steps: Euler–Maruyama steps per trajectory.
        dt: Step size.
        chunk_size: Trajectories per chunk of the compiled kernel.
        method: `"scan"` or `"diffrax"`.
    """

    ts: Float[Array, " T"]
    mean: dict[str, Array]
    var: dict[str, Array]
    n: Int[Array, "*batch"]
    n_diverged: Int[Array, "*batch"]
    diverged: Bool[Array, " n_traj *batch"]
    mean_outer: Array | None
    trajectories: Array | None
    norm_drift: Array | None
    n_traj: int = eqx.field(static=True)
    n_steps: int = eqx.field(static=True)
    dt: float = eqx.field(static=True)
    chunk_size: int = eqx.field(static=True)
    method: str = eqx.field(static=True)

    def stderr(self, name: str) -> Array:
        r"""Standard error of the ensemble mean of observable `name`: $\sqrt{\mathrm{var}/n}$.

        Args:
            name: An observable name (a key of `mean`).

        Returns:
            Array of shape `(*batch, T, *obs)` (real).

        Raises:
            KeyError: If `name` is not an observable of this result.
        """
        if name not in self.var:
            raise KeyError(f"no observable named {name!r}; have {sorted(self.var)}")
        var = self.var[name]
        n = jnp.reshape(self.n, self.n.shape + (1,) * (var.ndim - self.n.ndim))
        return jnp.sqrt(var / n)


# ----------------------------------------------------------------------------------
# Static configuration and checks
# ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Config:
    """Hashable, static description of one integration (a jit static argument)."""

    method: str
    brownian: str
    t0: float
    dt: float
    save_ts: tuple[float, ...]
    save_steps: tuple[int, ...]  # global step index of each save time
    normalize: bool
    max_norm: float | None
    observables: tuple[tuple[str, Callable], ...] = ()
    record_norm: bool = False
    accumulate_outer: bool = False
    store: bool = False

    @property
    def n_steps(self) -> int:
        return self.save_steps[-1]

    @property
    def intervals(self) -> tuple[int, ...]:
        """Steps in each interval between consecutive saves after the first save."""
        s = self.save_steps
        return tuple(b - a for a, b in zip(s[:-1], s[1:]))


def _time_dtype():
    return jnp.result_type(float)


def _check_times(ts, dt, t0) -> tuple[np.ndarray, float, float, tuple[int, ...]]:
    """Eager checks of `ts`, `dt`, `t0`; returns (ts, t0, dt, save_steps)."""
    if isinstance(dt, jax.core.Tracer) or isinstance(ts, jax.core.Tracer):
        raise TypeError("`dt` and `ts` must be concrete (not traced): they fix the step grid.")
    dt = float(dt)
    if not (dt > 0 and math.isfinite(dt)):
        raise ValueError(f"`dt` must be a positive finite step size, got dt={dt}.")
    ts = np.asarray(ts, dtype=np.float64)
    if ts.ndim != 1 or ts.size == 0:
        raise ValueError(f"`ts` must be a non-empty 1-D array of times, got shape {ts.shape}.")
    if not np.all(np.isfinite(ts)):
        raise ValueError("`ts` must be finite.")
    if np.any(np.diff(ts) <= 0):
        raise ValueError(f"`ts` must be strictly increasing, got ts={ts}.")
    t0 = float(ts[0]) if t0 is None else float(t0)
    if ts[0] < t0:
        raise ValueError(f"`ts` must start at or after t0={t0}, got ts[0]={ts[0]}.")
    steps = np.rint((ts - t0) / dt)
    tol = 1e-9 * dt + 16 * np.finfo(np.float64).eps * np.max(np.abs(ts))
    bad = np.abs(steps * dt - (ts - t0)) > tol
    if np.any(bad):
        i = int(np.argmax(bad))
        raise ValueError(
            f"`ts` must lie on the step grid t0 + n*dt (t0={t0}, dt={dt}); ts[{i}]={ts[i]} "
            f"is not a multiple of dt from t0 (nearest grid time {t0 + steps[i] * dt})."
        )
    return ts, t0, dt, tuple(int(s) for s in steps)


def _check_noise_shape(sde) -> PyTree[jax.ShapeDtypeStruct]:
    struct = sde.noise_shape()
    leaves = jax.tree.leaves(struct)
    if not leaves:
        raise ValueError("`sde.noise_shape()` must describe at least one noise array.")
    for leaf in leaves:
        if not isinstance(leaf, jax.ShapeDtypeStruct):
            raise TypeError(
                "`sde.noise_shape()` must return a pytree of jax.ShapeDtypeStruct, "
                f"got a leaf of type {type(leaf).__name__}."
            )
        if not jnp.issubdtype(leaf.dtype, jnp.floating):
            raise TypeError(f"`sde.noise_shape()` dtypes must be real floating, got {leaf.dtype}.")
    return struct


def _check_state(sde, y0, args, t0, in_axes) -> int | None:
    """Checks that `sde.drift`/`diffusion_mv` accept `y0`; returns the batch size or None."""
    noise = _check_noise_shape(sde)
    y0_axis = None if in_axes is None else in_axes[1]
    if y0_axis not in (None, 0):
        raise ValueError(f"`in_axes[1]` (the y0 batch axis) must be 0 or None, got {y0_axis}.")

    def probe(sde_, y0_):
        dw = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), noise)
        return sde_.drift(t0, y0_, args), sde_.diffusion_mv(t0, y0_, args, dw)

    if in_axes is not None:
        probe = eqx.filter_vmap(probe, in_axes=(in_axes[0], y0_axis))
    try:
        drift, diffusion = eqx.filter_eval_shape(probe, sde, y0)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"`y0` of shape {y0.shape} and dtype {y0.dtype} (in_axes={in_axes}) does not fit "
            f"the sde: evaluating sde.drift/sde.diffusion_mv on it failed with: {err}"
        ) from err
    batch = None
    if in_axes is not None:
        batch = drift.shape[0]
        expected = (batch,) + (y0.shape if y0_axis is None else y0.shape[1:])
    else:
        expected = y0.shape
    for name, out in (("drift", drift), ("diffusion_mv", diffusion)):
        if out.shape != expected:
            raise ValueError(
                f"`y0` has shape {y0.shape} but sde.{name} returns shape {out.shape} "
                f"(expected {expected}): the state shape does not match the sde."
            )
        if out.dtype != y0.dtype:
            raise TypeError(
                f"sde.{name} returns dtype {out.dtype} for a state `y0` of dtype {y0.dtype}; "
                "they must agree (cast y0, or the model's constants)."
            )
    return batch


# ----------------------------------------------------------------------------------
# Single-path integrators
# ----------------------------------------------------------------------------------


def _sample_noise(key, struct, scale):
    """Wiener increments ``scale * N(0, 1)`` of the shapes and dtypes in ``struct``.

    The standard normals are drawn in (at most) single precision and cast: a relative
    error of 1e-7 in a Gaussian increment is far below the O(dt) bias of Euler--Maruyama,
    and drawing float64 normals doubles the cost of the random-number generator, which
    dominates a step of an O(d) SDE (measured: 3.0e5 vs 6.3e5 trajectory-steps/s of
    random numbers alone at d = 64, batch 256, 2-core CPU).
    """
    leaves, treedef = jax.tree.flatten(struct)
    keys = [key] if len(leaves) == 1 else list(jax.random.split(key, len(leaves)))
    out = []
    for k, s in zip(keys, leaves):
        draw = jnp.float32 if jnp.finfo(s.dtype).bits > 32 else s.dtype
        out.append(jax.random.normal(k, s.shape, draw).astype(s.dtype) * jnp.asarray(scale, s.dtype))
    return jax.tree.unflatten(treedef, out)


def _sq_norm(y):
    return jnp.sum(jnp.real(y * jnp.conj(y)))


def _normalize(y):
    return y / jnp.sqrt(_sq_norm(y)).astype(y.dtype)


def _solve_scan(cfg: _Config, sde, y0, key, args):
    """Euler–Maruyama by nested `lax.scan`; returns (ys (T, *state), ok)."""
    struct = sde.noise_shape()
    tdt = _time_dtype()
    t0 = jnp.asarray(cfg.t0, tdt)
    dt = jnp.asarray(cfg.dt, tdt)
    sqrt_dt = jnp.sqrt(dt)

    def step(carry, n):
        y, ok = carry
        t = t0 + dt * n.astype(tdt)
        dw = _sample_noise(jax.random.fold_in(key, n), struct, sqrt_dt)
        y_new = y + sde.drift(t, y, args) * dt.astype(y.dtype) + sde.diffusion_mv(t, y, args, dw)
        if cfg.normalize:
            y_new = _normalize(y_new)
        ok_new = ok & jnp.all(jnp.isfinite(y_new))
        if cfg.max_norm is not None:
            ok_new = ok_new & (_sq_norm(y_new) <= cfg.max_norm**2)
        # A diverged trajectory is frozen at its last good state (and flagged): this keeps
        # NaNs out of the carry, so gradients of averages over the others stay finite.
        y = jnp.where(ok_new, y_new, y)
        return (y, ok_new), None

    intervals = cfg.intervals
    uniform = len(set(intervals)) <= 1
    m_max = max(intervals, default=0)

    def interval(carry, xs):
        offset, k = xs

        def inner(c, s):
            c_new, _ = step(c, offset + s)
            if not uniform:
                c_new = jax.tree.map(lambda a, b: jnp.where(s < k, a, b), c_new, c)
            return c_new, None

        carry, _ = jax.lax.scan(inner, carry, jnp.arange(m_max))
        return carry, carry[0]

    # Checkpointing the interval: under reverse-mode AD only the states at the saving
    # times are stored; the steps inside an interval are recomputed.
    interval = jax.checkpoint(interval, prevent_cse=False)
    ok0 = jnp.array(True)
    carry = (y0, ok0)
    first = cfg.save_steps[0]
    if first > 0:
        carry, _ = jax.lax.scan(
            jax.checkpoint(lambda c, n: step(c, n), prevent_cse=False),
            carry,
            jnp.arange(first),
        )
    ys0 = carry[0][None]
    if intervals:
        offsets = jnp.asarray(cfg.save_steps[:-1])
        carry, ys = jax.lax.scan(interval, carry, (offsets, jnp.asarray(intervals)))
        ys = jnp.concatenate([ys0, ys])
    else:
        ys = ys0
    return ys, carry[1]


class _MatchedBrownianPath(diffrax.AbstractBrownianPath):
    """Brownian increments on the fixed grid `t0 + n*dt` that equal the scan path's.

    The increment over the step starting at grid time `t_n` is
    `sqrt(t1 - t0) * normal(fold_in(key, n))`; valid only for steps on that grid (as
    `diffrax.UnsafeBrownianPath`, it ignores correlations between other intervals).
    """

    shape: PyTree[jax.ShapeDtypeStruct] = eqx.field(static=True)
    key: PRNGKeyArray
    grid_t0: float = eqx.field(static=True)
    grid_dt: float = eqx.field(static=True)
    levy_area: type = eqx.field(static=True, default=diffrax.BrownianIncrement)

    @property
    def t0(self):
        return -jnp.inf

    @property
    def t1(self):
        return jnp.inf

    def evaluate(self, t0, t1=None, left=True, use_levy=False):
        del left
        if t1 is None or use_levy:
            raise NotImplementedError("only increments over grid steps are available")
        t0 = jax.lax.stop_gradient(t0)
        t1 = jax.lax.stop_gradient(t1)
        n = jnp.rint((t0 - self.grid_t0) / self.grid_dt).astype(jnp.int32)
        return _sample_noise(jax.random.fold_in(self.key, n), self.shape, jnp.sqrt(t1 - t0))


class _ProjectedSolver(diffrax.AbstractWrappedSolver):
    """Wraps a solver and projects each step's result back to unit norm."""

    solver: diffrax.AbstractSolver

    @property
    def term_structure(self):
        return self.solver.term_structure

    @property
    def interpolation_cls(self):  # pyright: ignore
        return self.solver.interpolation_cls

    @property
    def term_compatible_contr_kwargs(self):
        return self.solver.term_compatible_contr_kwargs

    def order(self, terms):
        return self.solver.order(terms)

    def strong_order(self, terms):
        return self.solver.strong_order(terms)

    def init(self, terms, t0, t1, y0, args):
        return self.solver.init(terms, t0, t1, y0, args)

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        y1, err, dense_info, solver_state, result = self.solver.step(
            terms, t0, t1, y0, args, solver_state, made_jump
        )
        y1 = _normalize(y1)
        dense_info = dict(dense_info, y1=y1)
        return y1, err, dense_info, solver_state, result

    def func(self, terms, t0, y0, args):
        return self.solver.func(terms, t0, y0, args)


def _solve_diffrax(cfg: _Config, sde, y0, key, args):
    """Euler–Maruyama with diffrax; returns (ys (T, *state), ok)."""
    if cfg.n_steps == 0:
        return y0[None], jnp.array(True)
    struct = sde.noise_shape()
    is_complex = jnp.iscomplexobj(y0)

    # diffrax warns on complex states: integrate (Re y, Im y) stacked on a leading axis.
    def to_real(y):
        return jnp.stack([y.real, y.imag]) if is_complex else y

    def to_state(x):
        return jax.lax.complex(x[0], x[1]) if is_complex else x

    def drift(t, x, a):
        return to_real(sde.drift(t, to_state(x), a))

    def diffusion(t, x, a):
        y = to_state(x)
        return lx.FunctionLinearOperator(lambda dw: to_real(sde.diffusion_mv(t, y, a, dw)), struct)

    tdt = _time_dtype()
    grid = jnp.asarray(cfg.t0, tdt) + jnp.asarray(cfg.dt, tdt) * jnp.arange(
        cfg.n_steps + 1, dtype=tdt
    )
    if cfg.brownian == "matched":
        path = _MatchedBrownianPath(struct, key, cfg.t0, cfg.dt)
    elif cfg.brownian == "virtual":
        path = diffrax.VirtualBrownianTree(
            grid[0],
            grid[-1],
            tol=cfg.dt / 8,
            shape=struct,
            key=key,
            levy_area=diffrax.BrownianIncrement,
        )
    else:
        path = diffrax.UnsafeBrownianPath(struct, key, levy_area=diffrax.BrownianIncrement)
    terms = diffrax.MultiTerm(diffrax.ODETerm(drift), diffrax.ControlTerm(diffusion, path))
    solver = diffrax.Euler()
    if cfg.normalize:
        solver = _ProjectedSolver(solver)
    sol = diffrax.diffeqsolve(
        terms,
        solver,
        t0=grid[0],
        t1=grid[-1],
        dt0=None,
        y0=to_real(y0),
        args=args,
        saveat=diffrax.SaveAt(ts=grid[jnp.asarray(cfg.save_steps)]),
        stepsize_controller=diffrax.StepTo(ts=grid),
        # UnsafeBrownianPath cannot be reverse-differentiated: forward mode only.
        adjoint=diffrax.ForwardMode()
        if cfg.brownian == "unsafe"
        else diffrax.RecursiveCheckpointAdjoint(),
        max_steps=cfg.n_steps,
        throw=False,
    )
    ys = jax.vmap(to_state)(sol.ys)
    ok = sol.result == diffrax.RESULTS.successful
    if cfg.max_norm is not None:
        ok = ok & jnp.all(jax.vmap(_sq_norm)(ys) <= cfg.max_norm**2)
    return ys, ok


def _solve_one(cfg: _Config, sde, y0, key, args):
    if cfg.method == "scan":
        ys, ok = _solve_scan(cfg, sde, y0, key, args)
    else:
        ys, ok = _solve_diffrax(cfg, sde, y0, key, args)
    ok = ok & jnp.all(jnp.isfinite(ys))
    return ys, ~ok


def _make_config(ts, dt, t0, *, method, brownian, normalize, max_norm, **kw) -> _Config:
    if method not in ("scan", "diffrax"):
        raise ValueError(f'`method` must be "scan" or "diffrax", got {method!r}.')
    if brownian not in ("matched", "virtual", "unsafe"):
        raise ValueError(f'`brownian` must be "matched", "virtual" or "unsafe", got {brownian!r}.')
    if max_norm is not None and not max_norm > 0:
        raise ValueError(f"`max_norm` must be positive or None, got {max_norm}.")
    ts, t0, dt, steps = _check_times(ts, dt, t0)
    return _Config(
        method=method,
        brownian=brownian,
        t0=t0,
        dt=dt,
        save_ts=tuple(float(t) for t in ts),
        save_steps=steps,
        normalize=bool(normalize),
        max_norm=None if max_norm is None else float(max_norm),
        **kw,
    )


def solve_trajectory(
    sde: AbstractSDE,
    y0: Shaped[ArrayLike, "*state"],
    ts: Float[ArrayLike, " T"],
    key: PRNGKeyArray,
    *,
    dt: float,
    method: Method = "scan",
    args: Any = None,
    t0: float | None = None,
    normalize: bool = False,
    brownian: Brownian = "matched",
    max_norm: float | None = None,
) -> tuple[Shaped[Array, " T *state"], Bool[Array, ""]]:
    r"""One Euler–Maruyama path of `sde`, saved at `ts`.

    $y_{n+1} = y_n + f(t_n, y_n)\Delta t + g(t_n, y_n)\sqrt{\Delta t}\,\xi_n$ with
    $\xi_n$ from ``jax.random.fold_in(key, n)``. Pure and jittable (`ts`, `dt` must be
    concrete); vmap it over keys for a batch.

    Args:
        sde: The model (unbatched).
        y0: Initial state at `t0`, shape `state`.
        ts: Saving times, shape `(T,)`, strictly increasing, on the grid `t0 + n*dt`.
        key: PRNG key of this trajectory.
        dt: Step size (> 0).
        method: `"scan"` (nested `lax.scan`) or `"diffrax"` (`diffrax.Euler` on
            `MultiTerm(ODETerm, ControlTerm)`, `StepTo` the grid, `SaveAt(ts=ts)`).
        args: Passed to `sde.drift` and `sde.diffusion_mv`.
        t0: Initial time; default `ts[0]`.
        normalize: Project `y` back to unit norm after every step (off by default;
            changes the scheme, use only for norm-preserving equations).
        brownian: diffrax only. `"matched"`: increments equal to the scan path's (same
            paths as `method="scan"` up to rounding); `"virtual"`:
            `diffrax.VirtualBrownianTree` (tol `dt/8`); `"unsafe"`:
            `diffrax.UnsafeBrownianPath`. The last two give paths equal in law only.
        max_norm: Flag the path as diverged if $\|y\|$ exceeds this (scan: checked each
            step; diffrax: at the saving times). Non-finite states are always flagged.

    Returns:
        `(ys, diverged)`: states at `ts`, shape `(T, *state)`, and a scalar bool. With
        `method="scan"` a diverged path is frozen at its last good state.

    Raises:
        ValueError: Bad `dt`, `ts`, `method`, or a `y0` that does not fit `sde`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> class Decay(AbstractSDE):
        ...     def drift(self, t, y, args): return -y
        ...     def diffusion_mv(self, t, y, args, dw): return 0.0 * dw
        ...     def noise_shape(self): return jax.ShapeDtypeStruct((1,), jnp.float64)
        >>> key = jax.random.key(0)
        >>> ys, diverged = solve_trajectory(Decay(), jnp.ones(1), [0.0, 0.5], key, dt=0.25)
        >>> ys[:, 0]
        Array([1.    , 0.5625], dtype=float64)
    """
    y0 = jnp.asarray(y0)
    cfg = _make_config(
        ts,
        dt,
        t0,
        method=method,
        brownian=brownian,
        normalize=normalize,
        max_norm=sde.divergence_norm() if max_norm is None else max_norm,
    )
    _check_state(sde, y0, args, cfg.t0, None)
    return _solve_one(cfg, sde, y0, key, args)


# ----------------------------------------------------------------------------------
# Chunked ensemble
# ----------------------------------------------------------------------------------


def _per_element(cfg: _Config, sde, y0, key, args):
    """Integrate one (trajectory, batch element); observables, norms and the flag."""
    ys, diverged = _solve_one(cfg, sde, y0, key, args)
    ts = jnp.asarray(cfg.save_ts, _time_dtype())
    obs = {
        name: jax.vmap(lambda t, y, fn=fn: jnp.asarray(fn(t, y)))(ts, ys)
        for name, fn in cfg.observables
    }
    extra = {}
    if cfg.record_norm:
        norms = jnp.sqrt(jax.vmap(_sq_norm)(ys))
        obs["norm"] = norms
        extra["norm_drift"] = jnp.abs(norms - jnp.sqrt(_sq_norm(y0)))
    if cfg.accumulate_outer or cfg.store:
        extra["ys"] = ys
    return obs, extra, diverged


def _welford(acc, x, valid):
    """Adds one trajectory `x` (if `valid`) to the running (n, mean, m2) of one element."""
    n, mean, m2 = acc
    n1 = n + valid.astype(n.dtype)
    x = jnp.where(valid, x.astype(mean.dtype), mean)
    delta = x - mean
    mean1 = mean + delta / jnp.maximum(n1, 1).astype(mean.dtype)
    m2 = m2 + jnp.real(jnp.conj(delta) * (x - mean1))
    return mean1, m2


def _accumulate_one(acc, obs, extra, valid):
    """Sequential update of all accumulators of one batch element by one trajectory."""
    means, m2s = {}, {}
    for name, x in obs.items():
        means[name], m2s[name] = _welford((acc["n"], acc["mean"][name], acc["m2"][name]), x, valid)
    new = {"n": acc["n"] + valid.astype(acc["n"].dtype), "mean": means, "m2": m2s}
    if "outer" in acc:
        ys = extra["ys"]
        flat = jnp.reshape(ys, (ys.shape[0], -1))
        outer = flat[:, :, None] * jnp.conj(flat)[:, None, :]
        outer = jnp.reshape(outer, acc["outer"].shape)
        new["outer"] = acc["outer"] + jnp.where(valid, outer, 0).astype(acc["outer"].dtype)
    if "norm_drift" in acc:
        nd = jnp.where(valid, extra["norm_drift"], 0).astype(acc["norm_drift"].dtype)
        new["norm_drift"] = jnp.maximum(acc["norm_drift"], nd)
    return new


@eqx.filter_jit
def _run_chunk(cfg: _Config, in_axes, sde, y0, key, args, idx, n_traj, acc):
    """The compiled kernel: `len(idx)` trajectories, then a sequential accumulation."""

    def per_traj(i):
        k = jax.random.fold_in(key, i)
        if in_axes is None:
            return _per_element(cfg, sde, y0, k, args)
        return eqx.filter_vmap(lambda s, y: _per_element(cfg, s, y, k, args), in_axes=in_axes)(
            sde, y0
        )

    obs, extra, diverged = jax.vmap(per_traj)(idx)
    in_range = idx < n_traj
    if in_axes is not None:
        in_range = in_range[:, None]
    valid = in_range & ~diverged

    update = _accumulate_one if in_axes is None else jax.vmap(_accumulate_one)

    # Trajectory-ordered sequential accumulation: bitwise independent of the chunking.
    def body(a, xs):
        # The barrier keeps XLA from fusing the update with the integrator's output
        # (e.g. when a one-trajectory loop is inlined): same rounding for every chunk size.
        a, (o, e, v) = jax.lax.optimization_barrier((a, xs))
        return update(a, o, e, v), None

    acc_extra = {k: v for k, v in extra.items() if k != "ys" or "outer" in acc}
    acc, _ = jax.lax.scan(body, acc, (obs, acc_extra, valid))
    ys = extra.get("ys") if cfg.store else None
    return acc, diverged, ys


def _real_dtype(dtype) -> np.dtype:
    """Real accumulation dtype: float64 when x64 is enabled."""
    wide = jax.dtypes.canonicalize_dtype(jnp.float64)
    if jnp.issubdtype(dtype, jnp.inexact):
        return np.dtype(jnp.promote_types(jnp.finfo(dtype).dtype, wide))
    return np.dtype(wide)


def _acc_dtype(dtype) -> np.dtype:
    """Accumulation dtype of a mean: complex stays complex, widened to 64 bits."""
    return np.dtype(jnp.promote_types(dtype, _real_dtype(dtype)))


def _shape_info(cfg: _Config, in_axes, sde, y0, args):
    """Shapes of one (trajectory) kernel output, from `eval_shape`."""
    key = jax.random.key(0)

    def one(s, y):
        return _per_element(cfg, s, y, key, args)

    if in_axes is not None:
        one = eqx.filter_vmap(one, in_axes=in_axes)
    return eqx.filter_eval_shape(one, sde, y0)


def _nbytes(x) -> int:
    return sum(
        int(np.prod(leaf.shape)) * jnp.dtype(leaf.dtype).itemsize for leaf in jax.tree.leaves(x)
    )


def _state_shape(y0, in_axes) -> tuple[int, ...]:
    return y0.shape[1:] if in_axes is not None and in_axes[1] == 0 else y0.shape


def _memory(cfg: _Config, in_axes, sde, y0, args, n_batch, *, for_grad: bool = False):
    obs, extra, _ = _shape_info(cfg, in_axes, sde, y0, args)
    n_batch = 1 if n_batch is None else n_batch
    state = _nbytes(jax.ShapeDtypeStruct(_state_shape(y0, in_axes), y0.dtype))
    noise = _nbytes(sde.noise_shape())
    n_save = len(cfg.save_ts)
    per_state = (n_save + _WORK_STATES[cfg.method]) * state + 3 * noise
    if for_grad:
        per_state += (n_save + max(cfg.intervals, default=cfg.n_steps)) * state * 2
    per_traj = n_batch * per_state + _nbytes(obs) + (_nbytes(extra) if cfg.store else 0)
    # Accumulators (mean, m2 and the mean outer product) are in and out of the kernel.
    wide = 16
    n_obs = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(obs))
    fixed = 2 * wide * 2 * n_obs
    if cfg.accumulate_outer:
        fixed += 2 * wide * n_batch * n_save * (state // y0.dtype.itemsize) ** 2
    return fixed, per_traj


def _chunk_from_budget(fixed, per_traj, memory_budget) -> int:
    chunk = (int(memory_budget) - fixed) // per_traj
    if chunk < 1:
        raise ValueError(
            f"memory_budget={int(memory_budget)} bytes cannot hold one trajectory: need at "
            f"least {fixed + per_traj} bytes ({fixed} for the accumulators + {per_traj} per "
            "trajectory). Raise memory_budget, save fewer times or observables."
        )
    return chunk


def estimate_memory(
    sde: AbstractSDE,
    y0: Shaped[ArrayLike, "*batch_state"],
    ts: Float[ArrayLike, " T"],
    *,
    dt: float,
    method: Method = "scan",
    args: Any = None,
    t0: float | None = None,
    observables: Mapping[str, Callable] | None = None,
    accumulate_outer: bool = False,
    store_trajectories: bool = False,
    record_norm: bool = False,
    in_axes: tuple[Any, int | None] | None = None,
    for_grad: bool = False,
) -> tuple[int, int]:
    r"""Estimated device memory of a chunk: `(fixed_bytes, bytes_per_trajectory)`.

    A chunk of `c` trajectories needs about `fixed + c * per_trajectory` bytes, with

    per_trajectory = n_batch · [(T + w)·|y| + 3·|dW|] + T·|observables| (+ T·|y| stored)

    where `|·|` are byte sizes, `w` the work states of the integrator (6 scan, 12
    diffrax) and, for gradients, `2(T + m)·|y|` more (checkpoints at the saves and the
    recomputed steps of one interval of `m` steps). `fixed` counts the float64
    accumulators. It is an estimate (the model's own temporaries are not seen).

    Args:
        sde, y0, ts, dt, method, args, t0, observables, accumulate_outer,
        store_trajectories, record_norm, in_axes: As for
            [`simulate_trajectories`][thermojax.trajectories.simulate_trajectories].
        for_grad: Add the reverse-mode residuals of
            [`ensemble_mean`][thermojax.trajectories.ensemble_mean].

    Returns:
        `(fixed_bytes, bytes_per_trajectory)`, two ints.

    Raises:
        ValueError: As for `simulate_trajectories`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> class Decay(AbstractSDE):
        ...     def drift(self, t, y, args): return -y
        ...     def diffusion_mv(self, t, y, args, dw): return 0.0 * dw
        ...     def noise_shape(self): return jax.ShapeDtypeStruct((1,), jnp.float64)
        >>> fixed, per = estimate_memory(Decay(), jnp.ones(1), [0.0, 1.0], dt=0.1)
        >>> per > 0
        True
    """
    y0 = jnp.asarray(y0)
    cfg = _make_config(
        ts,
        dt,
        t0,
        method=method,
        brownian="matched",
        normalize=False,
        max_norm=None,
        observables=_observable_items(observables, record_norm),
        record_norm=record_norm,
        accumulate_outer=accumulate_outer,
        store=store_trajectories,
    )
    n_batch = _check_state(sde, y0, args, cfg.t0, in_axes)
    return _memory(cfg, in_axes, sde, y0, args, n_batch, for_grad=for_grad)


def _observable_items(observables, record_norm):
    if observables is None:
        observables = {}
    if not isinstance(observables, Mapping):
        raise TypeError(
            f"`observables` must be a mapping {{name: fn(t, y)}}, got {type(observables).__name__}."
        )
    for name, fn in observables.items():
        if not isinstance(name, str) or not callable(fn):
            raise TypeError(f"`observables` must map str names to callables; got {name!r}.")
    if record_norm and "norm" in observables:
        raise ValueError('"norm" is reserved for record_norm=True; rename that observable.')
    return tuple(observables.items())


def _check_counts(n_traj, chunk_size):
    if not isinstance(n_traj, (int, np.integer)) or isinstance(n_traj, bool) or n_traj < 1:
        raise ValueError(f"`n_traj` must be an integer >= 1, got {n_traj!r}.")
    if chunk_size is not None and (not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1):
        raise ValueError(f"`chunk_size` must be an integer >= 1 or None, got {chunk_size!r}.")


def simulate_trajectories(
    sde: AbstractSDE,
    y0: Shaped[ArrayLike, "*batch_state"],
    ts: Float[ArrayLike, " T"],
    key: PRNGKeyArray,
    *,
    n_traj: int,
    dt: float,
    method: Method = "scan",
    args: Any = None,
    t0: float | None = None,
    observables: Mapping[str, Callable[[Array, Array], ArrayLike]] | None = None,
    accumulate_outer: bool = False,
    store_trajectories: bool = False,
    record_norm: bool = False,
    normalize: bool = False,
    max_norm: float | None = None,
    in_axes: tuple[Any, int | None] | None = None,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    brownian: Brownian = "matched",
    progress: bool = True,
) -> TrajectoryResult:
    r"""Run `n_traj` Euler–Maruyama trajectories of `sde` and return ensemble statistics.

    For each observable $O$ (a function `fn(t, y)`) and saving time $t_j$:

    $$ \bar O(t_j) = \frac{1}{n}\sum_{i\ \text{not diverged}} O(t_j, y_i(t_j)),\qquad
       s^2 = \frac{1}{n-1}\sum_i |O_i - \bar O|^2, $$

    and optionally $\overline{y y^\dagger}(t_j)$ (`accumulate_outer`). Trajectory $i$
    uses the key ``jax.random.fold_in(key, i)`` (for every batch element: common random
    numbers across a batch), so the same key gives the same numbers for every
    `chunk_size` — bitwise when the model's per-trajectory arithmetic does not depend
    on the vmap width (elementwise operations and reductions; XLA may choose different
    matrix-product kernels for different chunk widths, which changes the last bits).

    Trajectories run in chunks of `chunk_size` through one compiled, vmapped kernel
    (the last chunk is padded and masked); the statistics are accumulated on device in
    trajectory order (Welford), in float64 when `jax_enable_x64` is on. A trajectory is
    *diverged* if its state becomes non-finite or its norm exceeds `max_norm`; diverged
    trajectories are counted, flagged and left out of every average (the whole
    trajectory, at every time).

    Args:
        sde: The model. With `in_axes`, array fields may carry a batch axis.
        y0: Initial state at `t0`, shape `state`, or `(n_batch, *state)` when
            `in_axes[1] == 0`.
        ts: Saving times, shape `(T,)`, strictly increasing, each `t0 + n*dt` for an
            integer `n` (checked to ~1e-9·dt). Cost is `(T-1)·max_interval` steps, so
            unevenly spaced `ts` waste work on the shorter intervals.
        key: PRNG key.
        n_traj: Number of trajectories (per batch element), >= 1.
        dt: Step size, > 0.
        method: `"scan"` (default; nested `lax.scan`, the fast path) or `"diffrax"`
            (`diffrax.Euler`, `MultiTerm(ODETerm, ControlTerm)` with a lineax
            `FunctionLinearOperator` around `diffusion_mv`, `StepTo` the grid,
            `SaveAt(ts=ts)`; complex states are integrated as (Re, Im)).
        args: Passed unchanged to `sde.drift` and `sde.diffusion_mv`.
        t0: Initial time; default `ts[0]`.
        observables: `{name: fn(t, y)}`; `fn` gets a scalar time and one state of
            shape `state` and returns a scalar or an array (real or complex).
        accumulate_outer: Also accumulate the mean of $y y^\dagger$ (→ `mean_outer`).
        store_trajectories: Also return all saved states (→ `trajectories`).
        record_norm: Add the observable `"norm"` ($\|y\|$) and the diagnostic
            `norm_drift` ($\max_i |\,\|y_i(t)\| - \|y_i(t_0)\|\,|$).
        normalize: Project `y` back to unit norm after every step. Off by default: it
            changes the scheme and hides the O(dt) norm drift that `record_norm` reports.
        max_norm: Norm above which a trajectory counts as diverged (scan: checked each
            step; diffrax: at `ts`). `None`: `sde.divergence_norm()` (for most SDEs also
            `None`: only non-finite states count); `float("inf")` switches it off.
        in_axes: `None`, or `(sde_axes, y0_axis)` to run a batch: `sde_axes` as for
            `eqx.filter_vmap` (e.g. `0`, or a pytree prefix of `sde` with `0`/`None`),
            `y0_axis` in `{0, None}`. The batch axis comes first in the statistics.
        chunk_size: Trajectories per chunk. Default: from `memory_budget`, else all.
        memory_budget: Device bytes a chunk may use; the chunk size is computed with
            [`estimate_memory`][thermojax.trajectories.estimate_memory]. Ignored if
            `chunk_size` is given.
        brownian: diffrax only; `"matched"` (same increments as the scan path),
            `"virtual"` (`diffrax.VirtualBrownianTree`) or `"unsafe"`
            (`diffrax.UnsafeBrownianPath`).
        progress: Show a tqdm bar over chunks.

    Returns:
        A [`TrajectoryResult`][thermojax.trajectories.TrajectoryResult].

    Raises:
        ValueError: `dt <= 0`, `n_traj < 1`, `ts` not increasing or off the step grid,
            `y0` of a shape the sde does not accept, unknown `method`/`brownian`, or a
            `memory_budget` that cannot hold one trajectory.
        TypeError: Non-real noise dtypes, drift dtype different from `y0`'s, bad
            `observables`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> class OU(AbstractSDE):
        ...     k: jax.Array
        ...     def drift(self, t, y, args): return -self.k * y
        ...     def diffusion_mv(self, t, y, args, dw): return dw
        ...     def noise_shape(self): return jax.ShapeDtypeStruct((1,), jnp.float64)
        >>> res = simulate_trajectories(
        ...     OU(jnp.array(1.0)), jnp.ones(1), jnp.array([0.0, 0.5, 1.0]), jax.random.key(0),
        ...     n_traj=100, dt=0.05, observables={"y": lambda t, y: y[0]}, progress=False)
        >>> res.mean["y"].shape, res.stderr("y").shape, int(res.n)
        ((3,), (3,), 100)
    """
    _check_counts(n_traj, chunk_size)
    y0 = jnp.asarray(y0)
    cfg = _make_config(
        ts,
        dt,
        t0,
        method=method,
        brownian=brownian,
        normalize=normalize,
        max_norm=sde.divergence_norm() if max_norm is None else max_norm,
        observables=_observable_items(observables, record_norm),
        record_norm=record_norm,
        accumulate_outer=accumulate_outer,
        store=store_trajectories,
    )
    if in_axes is not None and (not isinstance(in_axes, tuple) or len(in_axes) != 2):
        raise ValueError(f"`in_axes` must be None or a pair (sde_axes, y0_axis), got {in_axes}.")
    n_batch = _check_state(sde, y0, args, cfg.t0, in_axes)
    if chunk_size is None:
        if memory_budget is not None:
            fixed, per = _memory(cfg, in_axes, sde, y0, args, n_batch)
            chunk_size = _chunk_from_budget(fixed, per, memory_budget)
        else:
            chunk_size = n_traj
    chunk_size = int(min(chunk_size, n_traj))
    n_chunks = -(-n_traj // chunk_size)

    obs_shapes, extra_shapes, _ = _shape_info(cfg, in_axes, sde, y0, args)
    batch = () if n_batch is None else (n_batch,)
    # Accumulators start on the host (no eager device ops, hence no small compiles).
    int_dtype = np.dtype(jax.dtypes.canonicalize_dtype(jnp.int64))
    acc = {
        "n": np.zeros(batch, int_dtype),
        "mean": {k: np.zeros(s.shape, _acc_dtype(s.dtype)) for k, s in obs_shapes.items()},
        "m2": {k: np.zeros(s.shape, _real_dtype(s.dtype)) for k, s in obs_shapes.items()},
    }
    if accumulate_outer:
        n_save, state = len(cfg.save_ts), _state_shape(y0, in_axes)
        acc["outer"] = np.zeros(batch + (n_save,) + state + state, _acc_dtype(y0.dtype))
    if record_norm:
        acc["norm_drift"] = np.zeros(batch + (len(cfg.save_ts),), _real_dtype(y0.dtype))

    diverged = np.zeros((n_chunks * chunk_size,) + batch, dtype=bool)
    stored = None
    if store_trajectories:
        ys_shape = extra_shapes["ys"]
        stored = np.zeros((n_chunks * chunk_size,) + ys_shape.shape, dtype=ys_shape.dtype)
    n_traj_arr = np.asarray(n_traj, int_dtype)
    bar = tqdm(range(n_chunks), desc="trajectories", unit="chunk", disable=not progress)
    for c in bar:
        sl = slice(c * chunk_size, (c + 1) * chunk_size)
        idx = np.arange(sl.start, sl.stop, dtype=int_dtype)
        acc, div, ys = _run_chunk(cfg, in_axes, sde, y0, key, args, idx, n_traj_arr, acc)
        diverged[sl] = np.asarray(div)  # also waits for the chunk: bounded memory
        if stored is not None:
            stored[sl] = np.asarray(ys)
        if progress:
            bar.set_postfix(diverged=int(diverged[: min(sl.stop, n_traj)].sum()))

    acc = jax.tree.map(np.asarray, acc)
    n = acc["n"]
    diverged = diverged[:n_traj]

    def per_obs(x):
        return np.reshape(n, n.shape + (1,) * (x.ndim - n.ndim))

    with np.errstate(divide="ignore", invalid="ignore"):
        mean = {k: np.where(per_obs(v) > 0, v, np.nan) for k, v in acc["mean"].items()}
        var = {
            k: np.where(per_obs(v) > 1, v / (per_obs(v) - 1), np.nan) for k, v in acc["m2"].items()
        }
        mean_outer = None
        if accumulate_outer:
            o = acc["outer"]
            mean_outer = np.where(per_obs(o) > 0, o / per_obs(o), np.nan)
    norm_drift = acc.get("norm_drift")
    to_jax = lambda x: None if x is None else jnp.asarray(x)  # noqa: E731
    return TrajectoryResult(
        ts=jnp.asarray(cfg.save_ts, _time_dtype()),
        mean={k: to_jax(v) for k, v in mean.items()},
        var={k: to_jax(v) for k, v in var.items()},
        n=to_jax(n),
        n_diverged=to_jax(diverged.sum(axis=0)),
        diverged=to_jax(diverged),
        mean_outer=to_jax(mean_outer),
        trajectories=None if stored is None else to_jax(stored[:n_traj]),
        norm_drift=to_jax(norm_drift),
        n_traj=int(n_traj),
        n_steps=cfg.n_steps,
        dt=cfg.dt,
        chunk_size=chunk_size,
        method=method,
    )


# ----------------------------------------------------------------------------------
# Differentiable ensemble mean
# ----------------------------------------------------------------------------------


def ensemble_mean(
    sde: AbstractSDE,
    y0: Shaped[ArrayLike, "*state"],
    ts: Float[ArrayLike, " T"],
    key: PRNGKeyArray,
    observable: Callable[[Array, Array], ArrayLike],
    *,
    n_traj: int,
    dt: float,
    method: Method = "scan",
    args: Any = None,
    t0: float | None = None,
    normalize: bool = False,
    max_norm: float | None = None,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    brownian: Brownian = "matched",
) -> Shaped[Array, " T *obs"]:
    r"""Differentiable ensemble mean $\frac1n\sum_i O(t_j, y_i(t_j))$ over `n_traj` paths.

    A pure JAX function of `sde` (and `y0`, `args`): use it inside `jax.grad`/`jax.jit`
    (wrap in `jax.jit` for speed). The gradient is the pathwise derivative at fixed
    noise — e.g. for $\mathrm{d}y = -k y\,\mathrm{d}t + \sigma y\,\mathrm{d}W$,
    $\partial_k \mathbb E[y(t)] = -t\,y_0 e^{-kt}$ up to sampling error. Trajectories
    use the keys of [`simulate_trajectories`][thermojax.trajectories.simulate_trajectories]
    and run as a `lax.map` over chunks; each chunk is `jax.checkpoint`-ed and each path
    stores only its states at `ts` (steps in between are recomputed), so reverse-mode
    memory is about one chunk's `(T + steps per interval)` states per trajectory.

    Diverged trajectories (see `simulate_trajectories`) are left out of the mean. With
    `method="scan"` they are frozen at their last finite state, so gradients stay
    finite; with `"diffrax"` a NaN in any trajectory makes the gradient NaN.

    Args:
        sde: The model (unbatched; vmap `ensemble_mean` itself for a batch).
        y0: Initial state, shape `state`.
        ts: Saving times, shape `(T,)` (concrete).
        key: PRNG key.
        observable: `fn(t, y)` → scalar or array `obs`.
        n_traj, dt, method, args, t0, normalize, max_norm, brownian: As for
            `simulate_trajectories`.
        chunk_size: Trajectories per chunk (default: from `memory_budget`, else all).
        memory_budget: Device bytes per chunk, including reverse-mode residuals.

    Returns:
        The mean, shape `(T, *obs)`; NaN if every trajectory diverged.

    Raises:
        ValueError: As for `simulate_trajectories`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> class GBM(AbstractSDE):
        ...     k: jax.Array
        ...     def drift(self, t, y, args): return -self.k * y
        ...     def diffusion_mv(self, t, y, args, dw): return 0.2 * y * dw
        ...     def noise_shape(self): return jax.ShapeDtypeStruct((1,), jnp.float64)
        >>> def f(k):
        ...     m = ensemble_mean(GBM(k), jnp.ones(1), [0.0, 1.0], jax.random.key(0),
        ...                       lambda t, y: y[0], n_traj=64, dt=0.1)
        ...     return m[-1]
        >>> g = jax.grad(f)(jnp.array(1.0))
        >>> bool(abs(g + jnp.exp(-1.0)) < 0.1)
        True
    """
    _check_counts(n_traj, chunk_size)
    y0 = jnp.asarray(y0)
    cfg = _make_config(
        ts,
        dt,
        t0,
        method=method,
        brownian=brownian,
        normalize=normalize,
        max_norm=sde.divergence_norm() if max_norm is None else max_norm,
        observables=_observable_items({"o": observable}, False),
    )
    _check_state(sde, y0, args, cfg.t0, None)
    if chunk_size is None:
        if memory_budget is not None:
            fixed, per = _memory(cfg, None, sde, y0, args, None, for_grad=True)
            chunk_size = _chunk_from_budget(fixed, per, memory_budget)
        else:
            chunk_size = n_traj
    chunk_size = int(min(chunk_size, n_traj))
    n_chunks = -(-n_traj // chunk_size)
    idx = jnp.arange(n_chunks * chunk_size).reshape(n_chunks, chunk_size)

    def chunk_fn(idx_c):
        def per_traj(i):
            obs, _, div = _per_element(cfg, sde, y0, jax.random.fold_in(key, i), args)
            return obs["o"], div

        vals, div = jax.vmap(per_traj)(idx_c)
        valid = (idx_c < n_traj) & ~div
        mask = jnp.reshape(valid, valid.shape + (1,) * (vals.ndim - 1))
        return jnp.sum(jnp.where(mask, vals, 0), axis=0), jnp.sum(valid)

    sums, counts = jax.lax.map(jax.checkpoint(chunk_fn, prevent_cse=False), idx)
    total = jnp.sum(counts)
    mean = jnp.sum(sums, axis=0) / total.astype(sums.real.dtype)
    return jnp.where(total > 0, mean, jnp.nan)
