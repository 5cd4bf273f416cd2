r"""Single-path integrators of an `thermojax.trajectories.AbstractSDE`.

Two integrators behind one interface, chosen by the method object:

* `thermojax.options.EulerMaruyama` — nested `jax.lax.scan`, the fast path;
* `thermojax.options.DiffraxSDE` — `diffrax.diffeqsolve` on
  `MultiTerm(ODETerm, ControlTerm)` with a lineax `FunctionLinearOperator` around
  `diffusion_mv`, `StepTo` the grid and `SaveAt(ts=tsave)`.

The noise of step $n$ of a trajectory is drawn from
`jax.random.fold_in(trajectory_key, n)`: it depends only on the key, the trajectory
index and $n$, not on the save times, the chunk size or (with
`brownian="matched"`) the integrator. Why two: diffrax's generic SDE loop carries
per-step bookkeeping that a fixed-step loop does not need (diffrax#517;
`benchmarks/sde_loop.py` measures both).
"""

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, PRNGKeyArray, PyTree, Shaped

from ..options import DiffraxSDE, EulerMaruyama
from .sde import AbstractSDE

__all__ = ["solve_trajectory"]


@dataclasses.dataclass(frozen=True)
class _Config:
    """Hashable, static description of one integration (a jit static argument)."""

    method: str  # "scan" or "diffrax"
    brownian: str
    solver: Any
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


def _check_grid(tsave, dt, t0) -> tuple[np.ndarray, float, float, tuple[int, ...]]:
    """Eager checks of `tsave`, `dt`, `t0`; returns (tsave, t0, dt, save_steps)."""
    if isinstance(dt, jax.core.Tracer) or isinstance(tsave, jax.core.Tracer):
        raise TypeError("`dt` and `tsave` must be concrete (not traced): they fix the step grid.")
    dt = float(dt)
    if not (dt > 0 and math.isfinite(dt)):
        raise ValueError(f"Argument `dt` of the method must be a positive finite step size, got dt={dt}.")
    ts = np.asarray(tsave, dtype=np.float64)
    if ts.ndim != 1 or ts.size == 0:
        raise ValueError(f"Argument `tsave` must be a non-empty 1-D array of times, got shape {ts.shape}.")
    if not np.all(np.isfinite(ts)):
        raise ValueError("Argument `tsave` must be finite.")
    if np.any(np.diff(ts) <= 0):
        raise ValueError(f"Argument `tsave` must be strictly increasing, got {ts}.")
    t0 = float(ts[0]) if t0 is None else float(t0)
    if ts[0] < t0:
        raise ValueError(f"Argument `tsave` must start at or after t0={t0}, got tsave[0]={ts[0]}.")
    steps = np.rint((ts - t0) / dt)
    tol = 1e-9 * dt + 16 * np.finfo(np.float64).eps * np.max(np.abs(ts))
    bad = np.abs(steps * dt - (ts - t0)) > tol
    if np.any(bad):
        i = int(np.argmax(bad))
        raise ValueError(
            f"Argument `tsave` must lie on the step grid t0 + n*dt (t0={t0}, dt={dt}); tsave[{i}]={ts[i]} "
            f"is not a multiple of dt from t0 (nearest grid time {t0 + steps[i] * dt})."
        )
    return ts, t0, dt, tuple(int(s) for s in steps)


def make_config(tsave, method, *, t0, normalize, max_norm, **kw) -> _Config:
    """Validate the method object and the grid; build the static `_Config`."""
    if isinstance(method, EulerMaruyama):
        name, brownian, solver = "scan", "matched", None
    elif isinstance(method, DiffraxSDE):
        name, brownian, solver = "diffrax", method.brownian, method.solver
        if brownian not in ("matched", "virtual", "unsafe"):
            raise ValueError(f'DiffraxSDE `brownian` must be "matched", "virtual" or "unsafe", got {brownian!r}.')
    else:
        raise TypeError(
            "Argument `method` must be EulerMaruyama(dt) or DiffraxSDE(dt, ...), "
            f"got {type(method).__name__}."
        )
    if max_norm is not None and not max_norm > 0:
        raise ValueError(f"`max_norm` must be positive or None, got {max_norm}.")
    ts, t0, dt, steps = _check_grid(tsave, method.dt, t0)
    return _Config(
        method=name,
        brownian=brownian,
        solver=solver,
        t0=t0,
        dt=dt,
        save_ts=tuple(float(t) for t in ts),
        save_steps=steps,
        normalize=bool(normalize),
        max_norm=None if max_norm is None else float(max_norm),
        **kw,
    )


def check_noise_shape(sde) -> PyTree[jax.ShapeDtypeStruct]:
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


def _sample_noise(key, struct, scale):
    """Wiener increments `scale * N(0, 1)` of the shapes and dtypes in `struct`.

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


def _step_noise(key, n, struct, scale):
    """The increments of grid step `n`: `_sample_noise(fold_in(key, n))`. Both paths (scan
    and diffrax) draw through it, so a trajectory's numbers depend only on its key and the
    step index, whatever the path, the chunking or the block size of the draws."""
    return _sample_noise(jax.random.fold_in(key, n), struct, scale)


#: Largest number of noise elements of one trajectory drawn in one batched call.
_NOISE_BLOCK_ELEMENTS = 64


def _noise_block(m_max: int, struct) -> int:
    """Steps per batched noise draw: the largest divisor of the steps per save interval
    whose noise has at most `_NOISE_BLOCK_ELEMENTS` elements per trajectory (1 when the
    noise of one step is that large)."""
    size = sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(struct))
    cap = max(1, _NOISE_BLOCK_ELEMENTS // max(size, 1))
    return max((b for b in range(1, min(m_max, cap) + 1) if m_max % b == 0), default=1)


def _sq_norm(y):
    return jnp.sum(jnp.real(y * jnp.conj(y)))


def _normalize(y):
    return y / jnp.sqrt(_sq_norm(y)).astype(y.dtype)


def _solve_scan(cfg: _Config, sde, y0, key, args):
    r"""Euler–Maruyama by nested `lax.scan`; returns `(ys (T, *state), ok, defect)`, with
    `defect` the largest $|\,\|y_{n+1}\| - 1|$ of a step before the projection back to
    unit norm (`normalize`; 0 otherwise): the scheme's norm error that projecting hides."""
    struct = sde.noise_shape()
    tdt = _time_dtype()
    t0 = jnp.asarray(cfg.t0, tdt)
    dt = jnp.asarray(cfg.dt, tdt)
    sqrt_dt = jnp.sqrt(dt)

    def noise(n):
        return _step_noise(key, n, struct, sqrt_dt)

    def step(carry, n, dw=None):
        y, ok, defect = carry
        t = t0 + dt * n.astype(tdt)
        dw = noise(n) if dw is None else dw
        y_new = y + sde.drift(t, y, args) * dt.astype(y.dtype) + sde.diffusion_mv(t, y, args, dw)
        # one reduction serves both checks: the squared norm is finite exactly when every
        # element is (barring overflow of the sum, which the max_norm check flags anyway)
        sq = _sq_norm(y_new)
        if cfg.normalize:
            norm = jnp.sqrt(sq)
            defect = jnp.where(ok, jnp.maximum(defect, jnp.abs(norm - 1.0)), defect)
            y_new = y_new / norm.astype(y_new.dtype)
            sq = jnp.where(jnp.isfinite(norm) & (norm > 0), 1.0, jnp.nan)  # the projected norm
        ok_new = ok & jnp.isfinite(sq)
        if cfg.max_norm is not None:
            ok_new = ok_new & (sq <= cfg.max_norm**2)
        # A diverged trajectory is frozen at its last good state (and flagged): this keeps
        # NaNs out of the carry, so gradients of averages over the others stay finite.
        y = jnp.where(ok_new, y_new, y)
        return (y, ok_new, defect), None

    intervals = cfg.intervals
    uniform = len(set(intervals)) <= 1
    m_max = max(intervals, default=0)

    block = _noise_block(m_max, struct)

    def interval(carry, xs):
        offset, k = xs

        def inner(c, s, dw):
            c_new, _ = step(c, offset + s, dw)
            if not uniform:
                c_new = jax.tree.map(lambda a, b: jnp.where(s < k, a, b), c_new, c)
            return c_new, None

        def blk(c, b):
            # the noise of `block` steps in one batched draw: the same numbers as one
            # draw per step (fold_in(key, n) per step, vmapped over n), far fewer and
            # larger random-number kernels (benchmarks/solvers.py, SSE section)
            steps = b * block + jnp.arange(block)
            dws = jax.vmap(noise)(offset + steps)
            c, _ = jax.lax.scan(lambda cc, x: inner(cc, x[0], x[1]), c, (steps, dws))
            return c, None

        carry, _ = jax.lax.scan(blk, carry, jnp.arange(m_max // block))
        return carry, carry[0]

    # Checkpointing the interval: under reverse-mode AD only the states at the saving
    # times are stored; the steps inside an interval are recomputed.
    interval = jax.checkpoint(interval, prevent_cse=False)
    ok0 = jnp.array(True)
    carry = (y0, ok0, jnp.zeros((), jnp.finfo(y0.dtype).dtype))
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
    return ys, carry[1], carry[2]


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
        return _step_noise(self.key, n, self.shape, jnp.sqrt(t1 - t0))


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
    solver = cfg.solver
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



def solve_one(cfg: _Config, sde, y0, key, args):
    """One path: `(ys (T, *state), diverged, step_norm_defect)` (the defect is NaN for the
    diffrax integrator, which does not track it)."""
    if cfg.method == "scan":
        ys, ok, defect = _solve_scan(cfg, sde, y0, key, args)
    else:
        ys, ok = _solve_diffrax(cfg, sde, y0, key, args)
        defect = jnp.asarray(jnp.nan, jnp.finfo(y0.dtype).dtype)
    ok = ok & jnp.all(jnp.isfinite(ys))
    return ys, ~ok, defect


def solve_trajectory(
    sde: AbstractSDE,
    y0: Shaped[ArrayLike, "*state"],
    tsave: Float[ArrayLike, " T"],
    key: PRNGKeyArray,
    *,
    method: EulerMaruyama | DiffraxSDE,
    args: Any = None,
    t0: float | None = None,
    normalize: bool = False,
    max_norm: float | None = None,
) -> tuple[Shaped[Array, " T *state"], Bool[Array, ""]]:
    r"""One stochastic path of `sde`, saved at `tsave`.

    $y_{n+1} = y_n + f(t_n, y_n)\Delta t + g(t_n, y_n)\sqrt{\Delta t}\,\xi_n$ with
    $\xi_n$ from `jax.random.fold_in(key, n)` (Euler–Maruyama). Pure and
    jittable (`tsave` and the method's `dt` must be concrete); vmap it over keys.

    Args:
        sde: The model (unbatched).
        y0: Initial state at `t0`, shape `state`.
        tsave: Save times `(T,)`, strictly increasing, on the grid `t0 + n dt`.
        key: PRNG key of this trajectory.
        method: `thermojax.options.EulerMaruyama` or
            `thermojax.options.DiffraxSDE`.
        args: Passed to `sde.drift` and `sde.diffusion_mv`.
        t0: Initial time; default `tsave[0]`.
        normalize: Project `y` back to unit norm after every step.
        max_norm: Flag the path as diverged above this norm (scan: every step; diffrax:
            at the save times). Non-finite states are always flagged.

    Returns:
        `(ys, diverged)`: states `(T, *state)` and a scalar bool. With
        `EulerMaruyama` a diverged path is frozen at its last good state.

    Raises:
        ValueError: Bad `dt`, `tsave`, or a `y0` that does not fit `sde`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from thermojax.options import EulerMaruyama
        >>> class Decay(AbstractSDE):
        ...     def drift(self, t, y, args): return -y
        ...     def diffusion_mv(self, t, y, args, dw): return 0.0 * dw
        ...     def noise_shape(self): return jax.ShapeDtypeStruct((1,), jnp.float64)
        >>> ys, diverged = solve_trajectory(Decay(), jnp.ones(1), [0.0, 0.5], jax.random.key(0),
        ...                                 method=EulerMaruyama(0.25))
        >>> ys[:, 0]
        Array([1.    , 0.5625], dtype=float64)
    """
    from .ensemble import describe

    y0 = jnp.asarray(y0)
    cfg = make_config(
        tsave, method, t0=t0, normalize=normalize,
        max_norm=sde.divergence_norm() if max_norm is None else max_norm,
    )
    describe(cfg, None, sde, y0, (args, ()))
    return solve_one(cfg, sde, y0, key, args)[:2]
