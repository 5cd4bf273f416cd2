r"""Ensembles of stochastic trajectories: chunked, vmapped, streamed statistics.

`simulate_trajectories` runs `ntraj` paths of an
`thermojax.trajectories.AbstractSDE` in chunks of one compiled, vmapped kernel
(the chunk loop of `thermojax.sweep.iterate_chunks`, sharded over devices), with
trajectory $i$ keyed by `fold_in(key, i)`. It streams

* the ensemble mean and unbiased variance of named observables (a Welford update in
  trajectory order: the same numbers bitwise whatever the chunk size);
* optionally the mean of $yy^\dagger$ (the density matrix when $y$ is a
  ket), accumulated per chunk as one matrix product over the chunk (equal across chunk
  sizes to rounding, ~1e-16 relative);
* divergence flags (non-finite states, or norm above `max_norm`): diverged
  trajectories are counted and left out of every average.

`ensemble_mean` is the differentiable counterpart (`jax.checkpoint`-ed chunks
in one graph), for fits through trajectories.
"""

import math
from collections.abc import Callable, Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, Shaped

from .._checks import check_memory
from ..options import DiffraxSDE, EulerMaruyama, Options
from ..result import EnsembleStats, Result, status_array
from ..sweep import canonical_key, iterate_chunks
from ._integrate import _Config, _sq_norm, _time_dtype, check_noise_shape, make_config, solve_one
from .sde import AbstractSDE

__all__ = ["simulate_trajectories", "ensemble_mean", "estimate_memory"]

# Work arrays of the size of one state (y, drift, diffusion, y_new, ...) assumed live per
# trajectory by the memory estimate, per integrator.
_WORK_STATES = {"scan": 6, "diffrax": 12}

_DESCRIBE_CACHE: dict = {}


def _leaf_key(x):
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return ("a", tuple(x.shape), str(x.dtype))
    try:
        hash(x)
        return ("v", x)
    except TypeError:
        return ("id", id(x))


def _cache_key(*trees):
    out = []
    for tree in trees:
        leaves, treedef = jax.tree.flatten(tree, is_leaf=lambda v: v is None)
        out.append((treedef, tuple(_leaf_key(v) for v in leaves)))
    return tuple(out)


def describe(cfg: _Config, in_axes, sde, y0, args):
    """Check that `sde` accepts `y0` and return `(n_batch, obs_shapes, extra_shapes)`.

    Traced once per (config, structure, shapes): later calls with the same shapes hit a
    cache instead of re-tracing the integrator (that re-tracing was 44% of the wall
    time of a 50-step call).
    """
    key = (cfg, _cache_key(in_axes, sde, y0, args))
    try:
        hit = _DESCRIBE_CACHE.get(key)
    except TypeError:  # unhashable static content: no caching
        hit, key = None, None
    if hit is not None:
        return hit
    out = _describe(cfg, in_axes, sde, y0, args)
    if key is not None:
        if len(_DESCRIBE_CACHE) > 256:
            _DESCRIBE_CACHE.clear()
        _DESCRIBE_CACHE[key] = out
    return out


def _describe(cfg, in_axes, sde, y0, args):
    noise = check_noise_shape(sde)
    y0_axis = None if in_axes is None else in_axes[1]
    if y0_axis not in (None, 0):
        raise ValueError(f"`in_axes[1]` (the y0 batch axis) must be 0 or None, got {y0_axis}.")
    t0 = cfg.t0
    user_args = args[0]

    def probe(sde_, y0_):
        dw = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), noise)
        return sde_.drift(t0, y0_, user_args), sde_.diffusion_mv(t0, y0_, user_args, dw)

    if in_axes is not None:
        probe = eqx.filter_vmap(probe, in_axes=(in_axes[0], y0_axis))
    try:
        drift, diffusion = eqx.filter_eval_shape(probe, sde, y0)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"Argument `y0` of shape {y0.shape} and dtype {y0.dtype} (in_axes={in_axes}) does not fit "
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
                f"Argument `y0` has shape {y0.shape} but sde.{name} returns shape {out.shape} "
                f"(expected {expected}): the state shape does not match the sde."
            )
        if out.dtype != y0.dtype:
            raise TypeError(
                f"sde.{name} returns dtype {out.dtype} for a state `y0` of dtype {y0.dtype}; "
                "they must agree (cast y0, or the model's constants)."
            )

    def one(s, y):
        return _per_element(cfg, s, y, jax.random.key(0), args)

    if in_axes is not None:
        one = eqx.filter_vmap(one, in_axes=in_axes)
    obs, extra, _ = eqx.filter_eval_shape(one, sde, y0)
    return batch, obs, extra


# ----------------------------------------------------------------------------------
# the kernel
# ----------------------------------------------------------------------------------


def _per_element(cfg: _Config, sde, y0, key, args):
    """Integrate one (trajectory, batch element); observables, norms and the flag.

    `args` is the pair `(user args, array leaves of the observables)` (see `_prepare`)."""
    args, obs_dyn = args
    ys, diverged, defect = solve_one(cfg, sde, y0, key, args)
    ts = jnp.asarray(cfg.save_ts, _time_dtype())
    fns = [(name, eqx.combine(dyn, fn)) for (name, fn), dyn in zip(cfg.observables, obs_dyn)]
    obs = {name: jax.vmap(lambda t, y, fn=fn: jnp.asarray(fn(t, y)))(ts, ys) for name, fn in fns}
    extra = {}
    if cfg.record_norm:
        norms = jnp.sqrt(jax.vmap(_sq_norm)(ys))
        obs["norm"] = norms
        extra["norm_drift"] = jnp.abs(norms - jnp.sqrt(_sq_norm(y0)))
        extra["step_norm_defect"] = defect
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
    """Sequential update of the observable accumulators of one batch element."""
    means, m2s = {}, {}
    for name, x in obs.items():
        means[name], m2s[name] = _welford((acc["n"], acc["mean"][name], acc["m2"][name]), x, valid)
    new = dict(acc, n=acc["n"] + valid.astype(acc["n"].dtype), mean=means, m2=m2s)
    if "norm_drift" in acc:
        nd = jnp.where(valid, extra["norm_drift"], 0).astype(acc["norm_drift"].dtype)
        new["norm_drift"] = jnp.maximum(acc["norm_drift"], nd)
        sd = jnp.where(valid, extra["step_norm_defect"], 0).astype(acc["step_norm_defect"].dtype)
        new["step_norm_defect"] = jnp.maximum(acc["step_norm_defect"], sd)
    return new


def _outer_sum(ys, valid, dtype):
    r"""$\sum_c y_c y_c^\dagger$ over the chunk axis as one product per save time.

    `ys`: `(C, *batch, T, *state)`; returns `(*batch, T, S, S)` with `S` the
    flattened state size."""
    c = ys.shape[0]
    mask = valid.reshape(valid.shape + (1,) * (ys.ndim - valid.ndim))
    y = jnp.where(mask, ys, 0).astype(dtype)
    nb = valid.ndim - 1
    shp = ys.shape[1 : 1 + nb + 1]  # (*batch, T)
    y = y.reshape((c,) + shp + (-1,))
    # move the chunk axis last but one: (*batch, T, S, C) @ (*batch, T, C, S)
    yt = jnp.moveaxis(y, 0, -1)
    return jnp.matmul(yt, jnp.conj(jnp.swapaxes(yt, -1, -2)))


@eqx.filter_jit
def _run_chunk(cfg: _Config, in_axes, sde, y0, key, args, idx, ntraj, acc):
    """The compiled kernel: `len(idx)` trajectories, then the accumulation."""

    def per_traj(i):
        k = jax.random.fold_in(key, i)
        if in_axes is None:
            return _per_element(cfg, sde, y0, k, args)
        return eqx.filter_vmap(lambda s, y: _per_element(cfg, s, y, k, args), in_axes=in_axes)(sde, y0)

    obs, extra, diverged = jax.vmap(per_traj)(idx)
    in_range = idx < ntraj
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

    scan_extra = {k: v for k, v in extra.items() if k != "ys"}
    stream = {k: v for k, v in acc.items() if k not in ("outer", "batch_n", "batch_sum")}
    stream, _ = jax.lax.scan(body, stream, (obs, scan_extra, valid))
    if "outer" in acc:
        stream["outer"] = acc["outer"] + _outer_sum(extra["ys"], valid, acc["outer"].dtype).reshape(
            acc["outer"].shape
        )
    if "batch_n" in acc:
        n_b = acc["batch_n"].shape[0]
        seg = jnp.minimum(idx // (ntraj // n_b), n_b - 1)

        def bsum(x, dtype):
            mask = valid.reshape(valid.shape + (1,) * (x.ndim - valid.ndim))
            return jax.ops.segment_sum(jnp.where(mask, x, 0).astype(dtype), seg, num_segments=n_b)

        stream["batch_n"] = acc["batch_n"] + bsum(valid, acc["batch_n"].dtype)
        stream["batch_sum"] = {k: acc["batch_sum"][k] + bsum(obs[k], v.dtype) for k, v in acc["batch_sum"].items()}
    ys = extra.get("ys") if cfg.store else None
    return stream, diverged, ys


def _real_dtype(dtype) -> np.dtype:
    """Real accumulation dtype: float64 when x64 is enabled."""
    wide = jax.dtypes.canonicalize_dtype(jnp.float64)
    if jnp.issubdtype(dtype, jnp.inexact):
        return np.dtype(jnp.promote_types(jnp.finfo(dtype).dtype, wide))
    return np.dtype(wide)


def _acc_dtype(dtype) -> np.dtype:
    """Accumulation dtype of a mean: complex stays complex, widened to 64 bits."""
    return np.dtype(jnp.promote_types(dtype, _real_dtype(dtype)))


# ----------------------------------------------------------------------------------
# memory
# ----------------------------------------------------------------------------------


def _nbytes(x) -> int:
    return sum(int(np.prod(leaf.shape)) * jnp.dtype(leaf.dtype).itemsize for leaf in jax.tree.leaves(x))


def _state_shape(y0, in_axes) -> tuple[int, ...]:
    return y0.shape[1:] if in_axes is not None and in_axes[1] == 0 else y0.shape


def _memory(cfg: _Config, in_axes, sde, y0, args, *, for_grad: bool = False):
    n_batch, obs, extra = describe(cfg, in_axes, sde, y0, args)
    n_batch = 1 if n_batch is None else n_batch
    state = _nbytes(jax.ShapeDtypeStruct(_state_shape(y0, in_axes), y0.dtype))
    noise = _nbytes(sde.noise_shape())
    n_save = len(cfg.save_ts)
    per_state = (n_save + _WORK_STATES[cfg.method]) * state + 3 * noise
    if for_grad:
        per_state += (n_save + max(cfg.intervals, default=cfg.n_steps)) * state * 2
    per_traj = n_batch * per_state + _nbytes(obs) + (_nbytes(extra) if cfg.store else 0)
    wide = 16
    n_obs = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(obs))
    fixed = 2 * wide * 2 * n_obs
    if cfg.accumulate_outer:
        fixed += 2 * wide * n_batch * n_save * (state // y0.dtype.itemsize) ** 2
    return fixed, per_traj


def _chunk_from_budget(fixed, per_traj, memory_budget) -> int:
    chunk = (int(memory_budget) - fixed) // per_traj
    if chunk < 1:
        raise MemoryError(
            f"memory_budget={int(memory_budget)} bytes cannot hold one trajectory: need at "
            f"least {fixed + per_traj} bytes ({fixed} for the accumulators + {per_traj} per "
            "trajectory). Raise memory_budget, save fewer times or observables."
        )
    return chunk


def _observable_items(observables, record_norm):
    """`(static, dynamic)`: the observables split by `eqx.partition` into their static
    part (kept in the hashable config) and their array leaves (passed to the compiled
    kernel as data). An observable that is an `eqx.Module` holding arrays (e.g. the
    operators of `e_ops`) is thereby compiled once for all values of those arrays; a
    new lambda each call would recompile."""
    if observables is None:
        observables = {}
    if not isinstance(observables, Mapping):
        raise TypeError(
            f"Argument `observables` must be a mapping {{name: fn(t, y)}}, got {type(observables).__name__}."
        )
    for name, fn in observables.items():
        if not isinstance(name, str) or not callable(fn):
            raise TypeError(f"Argument `observables` must map str names to callables; got {name!r}.")
    if record_norm and "norm" in observables:
        raise ValueError('"norm" is reserved for record_norm=True; rename that observable.')
    parts = [eqx.partition(fn, eqx.is_array) for fn in observables.values()]
    static = tuple((name, st) for name, (_, st) in zip(observables, parts))
    return static, tuple(dyn for dyn, _ in parts)


def _check_ntraj(ntraj):
    if not isinstance(ntraj, (int, np.integer)) or isinstance(ntraj, bool) or ntraj < 1:
        raise ValueError(f"Argument `ntraj` must be an integer >= 1, got {ntraj!r}.")


def _single(tree):
    """Cast every inexact array leaf to single precision (float32 / complex64)."""

    def cast(x):
        if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jnp.inexact):
            return x.astype(jnp.complex64 if jnp.iscomplexobj(x) else jnp.float32)
        return x

    return jax.tree.map(cast, tree)


def _prepare(sde, y0, tsave, method, options, observables, accumulate_outer, in_axes, args):
    options = Options() if options is None else options
    y0 = jnp.asarray(y0)
    if sde.conserves_norm():
        from .._checks import check_state

        y0_axis = None if in_axes is None else in_axes[1]
        y0, _ = check_state(y0, None, "y0", kind="ket", normalize=bool(options.normalize), batch=y0_axis == 0)
    if options.precision == "single":
        sde, y0 = _single(sde), _single(y0)
    obs_static, obs_dyn = _observable_items(observables, options.record_norm)
    cfg = make_config(
        tsave,
        method,
        t0=options.t0,
        normalize=bool(options.normalize),
        max_norm=sde.divergence_norm() if options.max_norm is None else options.max_norm,
        observables=obs_static,
        record_norm=options.record_norm,
        accumulate_outer=accumulate_outer,
        store=options.store_trajectories,
    )
    if in_axes is not None and (not isinstance(in_axes, tuple) or len(in_axes) != 2):
        raise ValueError(f"Argument `in_axes` must be None or a pair (sde_axes, y0_axis), got {in_axes}.")
    return sde, y0, cfg, options, (args, obs_dyn)


def estimate_memory(
    sde: AbstractSDE,
    y0: Shaped[ArrayLike, "*batch_state"],
    tsave: Float[ArrayLike, " T"],
    *,
    method: EulerMaruyama | DiffraxSDE,
    observables: Mapping[str, Callable] | None = None,
    accumulate_outer: bool = False,
    args: Any = None,
    in_axes: tuple[Any, int | None] | None = None,
    options: Options | None = None,
    for_grad: bool = False,
) -> tuple[int, int]:
    r"""Estimated device memory of a chunk: `(fixed_bytes, bytes_per_trajectory)`.

    A chunk of `c` trajectories needs about `fixed + c * per_trajectory` bytes with
    per_trajectory = n_batch · [(T + w)·|y| + 3·|dW|] + T·|observables| (+ T·|y| stored),
    `w` the integrator's work states (6 scan, 12 diffrax) and, for gradients,
    `2(T + m)·|y|` more; `fixed` counts the float64 accumulators (with the mean
    outer product). An estimate: the model's own temporaries are not seen.

    Args:
        sde: As for `simulate_trajectories`.
        y0: As for `simulate_trajectories`.
        tsave: As for `simulate_trajectories`.
        method: As for `simulate_trajectories`.
        observables: As for `simulate_trajectories`.
        accumulate_outer: As for `simulate_trajectories`.
        args: As for `simulate_trajectories`.
        in_axes: As for `simulate_trajectories`.
        options: As for `simulate_trajectories`.
        for_grad: Add the reverse-mode residuals of `ensemble_mean`.

    Returns:
        `(fixed_bytes, bytes_per_trajectory)`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from thermojax.options import EulerMaruyama
        >>> class Decay(AbstractSDE):
        ...     def drift(self, t, y, args): return -y
        ...     def diffusion_mv(self, t, y, args, dw): return 0.0 * dw
        ...     def noise_shape(self): return jax.ShapeDtypeStruct((1,), jnp.float64)
        >>> fixed, per = estimate_memory(Decay(), jnp.ones(1), [0.0, 1.0], method=EulerMaruyama(0.1))
        >>> per > 0
        True
    """
    sde, y0, cfg, _, args = _prepare(sde, y0, tsave, method, options, observables, accumulate_outer, in_axes, args)
    return _memory(cfg, in_axes, sde, y0, args, for_grad=for_grad)


def simulate_trajectories(
    sde: AbstractSDE,
    y0: Shaped[ArrayLike, "*batch_state"],
    tsave: Float[ArrayLike, " T"],
    key: PRNGKeyArray,
    *,
    ntraj: int,
    method: EulerMaruyama | DiffraxSDE,
    observables: Mapping[str, Callable[[Array, Array], ArrayLike]] | None = None,
    accumulate_outer: bool = False,
    n_batches: int | None = None,
    args: Any = None,
    in_axes: tuple[Any, int | None] | None = None,
    options: Options | None = None,
) -> Result:
    r"""Run `ntraj` trajectories of `sde` and return their ensemble statistics.

    For each observable $O$ (`fn(t, y)`) and save time $t_j$:
    $\bar O(t_j) = \frac1n\sum_{i\ \text{not diverged}} O(t_j, y_i(t_j))$ and
    $s^2 = \frac{1}{n-1}\sum_i|O_i - \bar O|^2$; optionally
    $\overline{yy^\dagger}(t_j)$ (`accumulate_outer`). Trajectory $i$ uses
    `fold_in(key, i)` for every batch element (common random numbers across a
    batch), so the same key gives the same trajectories for every chunk size and device
    count, with any key type (`rbg` keys are mapped to a vmap-safe key first, see
    `thermojax.sweep.canonical_key`).

    Args:
        sde: The model. With `in_axes`, array fields may carry a batch axis.
        y0: Initial state at `t0`, shape `state` or `(n_batch, *state)` when
            `in_axes[1] == 0`.
        tsave: Save times `(T,)`, strictly increasing, each `t0 + n dt`.
        key: PRNG key (any implementation).
        ntraj: Trajectories per batch element, >= 1.
        method: `thermojax.options.EulerMaruyama` (fast `lax.scan` path) or
            `thermojax.options.DiffraxSDE`.
        observables: `{name: fn(t, y)}`; `fn` gets a scalar time and one state and
            returns a scalar or an array (real or complex).
        accumulate_outer: Accumulate the mean of $yy^\dagger$ (`Result.states`).
        n_batches: Also keep the mean of every observable over each of `n_batches`
            consecutive batches of trajectories (`EnsembleStats.batch_mean`), for
            batch-means errors of fits (`thermojax.stats`); `ntraj` must be a multiple.
        args: Passed to `sde.drift` and `sde.diffusion_mv`.
        in_axes: `None`, or `(sde_axes, y0_axis)` to run a batch (as for
            `eqx.filter_vmap`; `y0_axis` in `{0, None}`); the batch axis leads the
            statistics.
        options: `thermojax.options.Options`: `chunk_size`,
            `memory_budget`, `normalize` (project each step to unit norm),
            `max_norm`, `record_norm`, `store_trajectories`, `precision`,
            `progress`, `t0`.

    Returns:
        `thermojax.result.Result` with `states` the mean outer product
        `(*batch, T, *state, *state)` (or `None`), `ensemble` the
        `thermojax.result.EnsembleStats`, `stats["norm_drift"]` with
        `record_norm`, and `status` `diverged` where any trajectory diverged.

    Raises:
        ValueError: `ntraj < 1`, `tsave` off the step grid, a `y0` the sde does not
            accept, bad `in_axes`.
        TypeError: Non-real noise dtypes, drift dtype different from `y0`'s, bad
            `observables`, an unknown `method`.
        MemoryError: A `memory_budget` that cannot hold one trajectory.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from thermojax.options import EulerMaruyama
        >>> class OU(AbstractSDE):
        ...     k: jax.Array
        ...     def drift(self, t, y, args): return -self.k * y
        ...     def diffusion_mv(self, t, y, args, dw): return dw
        ...     def noise_shape(self): return jax.ShapeDtypeStruct((1,), jnp.float64)
        >>> res = simulate_trajectories(
        ...     OU(jnp.array(1.0)), jnp.ones(1), jnp.array([0.0, 0.5, 1.0]), jax.random.key(0),
        ...     ntraj=100, method=EulerMaruyama(0.05), observables={"y": lambda t, y: y[0]})
        >>> res.ensemble.mean["y"].shape, res.ensemble.stderr("y").shape, int(res.ensemble.n)
        ((3,), (3,), 100)
    """
    _check_ntraj(ntraj)
    sde, y0, cfg, options, args = _prepare(
        sde, y0, tsave, method, options, observables, accumulate_outer, in_axes, args
    )
    key = canonical_key(key)
    n_batch, obs_shapes, extra_shapes = describe(cfg, in_axes, sde, y0, args)
    chunk_size = options.chunk_size
    if chunk_size is None and options.memory_budget is not None:
        chunk_size = _chunk_from_budget(*_memory(cfg, in_axes, sde, y0, args), options.memory_budget)
    chunk_size = int(min(chunk_size or ntraj, ntraj))
    batch = () if n_batch is None else (n_batch,)
    state = _state_shape(y0, in_axes)
    acc = _init_accumulators(cfg, obs_shapes, batch, state, y0.dtype, ntraj, n_batches)

    host_bytes = _nbytes(acc) + (ntraj * _nbytes(extra_shapes["ys"]) if options.store_trajectories else 0)
    check_memory(host_bytes, f"the statistics of {ntraj} trajectories" + (" and their stored states" if
                 options.store_trajectories else ""), key="ntraj")
    diverged = np.zeros((ntraj,) + batch, dtype=bool)
    stored = None
    if options.store_trajectories:
        ys_shape = extra_shapes["ys"]
        stored = np.zeros((ntraj,) + ys_shape.shape, dtype=ys_shape.dtype)
    ntraj_arr = jnp.asarray(ntraj, acc["n"].dtype)
    for sl, idx in iterate_chunks(ntraj, chunk_size, progress=options.progress, desc="trajectories"):
        acc, div, ys = _run_chunk(cfg, in_axes, sde, y0, key, args, idx, ntraj_arr, acc)
        take = sl.stop - sl.start
        diverged[sl] = np.asarray(div)[:take]  # also waits for the chunk: bounded memory
        if stored is not None:
            stored[sl] = np.asarray(ys)[:take]
    ens, mean_outer = _finalize(cfg, jax.tree.map(np.asarray, acc), diverged, stored, batch, state, chunk_size)
    stats = {"n_steps": cfg.n_steps, "dt": cfg.dt}
    if ens.norm_drift is not None:
        stats["norm_drift"] = ens.norm_drift
        if cfg.normalize:  # projected each step: the drift is hidden, its size per step is not
            stats["step_norm_defect"] = jnp.asarray(acc["step_norm_defect"])
    return Result(
        tsave=jnp.asarray(cfg.save_ts, _time_dtype()),
        states=mean_outer,
        expect=None,
        stats=stats,
        status=status_array(ens.n_diverged == 0),
        ensemble=ens,
        method=type(method).__name__,
        kets=False,
    )


def _init_accumulators(cfg, obs_shapes, batch, state, dtype, ntraj, n_batches):
    """Zeroed device accumulators: counts, Welford means and M2, and (as asked) the outer
    product, the norm drift and the batch sums."""
    int_dtype = np.dtype(jax.dtypes.canonicalize_dtype(jnp.int64))
    acc = {
        "n": np.zeros(batch, int_dtype),
        "mean": {k: np.zeros(s.shape, _acc_dtype(s.dtype)) for k, s in obs_shapes.items()},
        "m2": {k: np.zeros(s.shape, _real_dtype(s.dtype)) for k, s in obs_shapes.items()},
    }
    n_save = len(cfg.save_ts)
    if cfg.accumulate_outer:
        s = math.prod(state)
        acc["outer"] = np.zeros(batch + (n_save, s, s), _acc_dtype(dtype))
    if cfg.record_norm:
        acc["norm_drift"] = np.zeros(batch + (n_save,), _real_dtype(dtype))
        acc["step_norm_defect"] = np.zeros(batch, _real_dtype(dtype))
    if n_batches is not None:
        if isinstance(n_batches, bool) or not isinstance(n_batches, (int, np.integer)) or n_batches < 2:
            raise ValueError(f"Argument `n_batches` must be an integer >= 2 or None, got {n_batches!r}.")
        if ntraj % n_batches:
            raise ValueError(f"Argument `ntraj` ({ntraj}) must be a multiple of `n_batches` ({n_batches}).")
        acc["batch_n"] = np.zeros((n_batches,) + batch, int_dtype)
        acc["batch_sum"] = {k: np.zeros((n_batches,) + s.shape, _acc_dtype(s.dtype)) for k, s in obs_shapes.items()}
    return jax.tree.map(jnp.asarray, acc)


def _finalize(cfg, acc, diverged, stored, batch, state, chunk_size):
    """Means, variances, batch means and the mean outer product from the host accumulators."""
    n = acc["n"]

    def per(x, counts=n):
        return np.reshape(counts, counts.shape + (1,) * (x.ndim - counts.ndim))

    with np.errstate(divide="ignore", invalid="ignore"):
        mean = {k: jnp.asarray(np.where(per(v) > 0, v, np.nan)) for k, v in acc["mean"].items()}
        var = {k: jnp.asarray(np.where(per(v) > 1, v / (per(v) - 1), np.nan)) for k, v in acc["m2"].items()}
        mean_outer = None
        if "outer" in acc:
            o = acc["outer"]
            shape = batch + (len(cfg.save_ts),) + state + state
            mean_outer = jnp.asarray(np.where(per(o) > 0, o / per(o), np.nan).reshape(shape))
        batch_mean = batch_n = None
        if "batch_n" in acc:
            batch_n = acc["batch_n"]
            batch_mean = {k: jnp.asarray(v / per(v, batch_n)) for k, v in acc["batch_sum"].items()}
            batch_n = jnp.asarray(batch_n)
    ens = EnsembleStats(
        mean=mean, var=var, n=jnp.asarray(n), n_diverged=jnp.asarray(diverged.sum(axis=0)),
        diverged=jnp.asarray(diverged),
        norm_drift=None if "norm_drift" not in acc else jnp.asarray(acc["norm_drift"]),
        trajectories=None if stored is None else jnp.asarray(stored),
        batch_mean=batch_mean, batch_n=batch_n, ntraj=int(diverged.shape[0]), n_steps=cfg.n_steps, dt=cfg.dt,
        chunk_size=chunk_size,
    )
    return ens, mean_outer


def ensemble_mean(
    sde: AbstractSDE,
    y0: Shaped[ArrayLike, "*state"],
    tsave: Float[ArrayLike, " T"],
    key: PRNGKeyArray,
    observable: Callable[[Array, Array], ArrayLike],
    *,
    ntraj: int,
    method: EulerMaruyama | DiffraxSDE,
    args: Any = None,
    options: Options | None = None,
) -> Shaped[Array, " T *obs"]:
    r"""Differentiable ensemble mean $\frac1n\sum_i O(t_j, y_i(t_j))$ over `ntraj` paths.

    A pure JAX function of `sde` (and `y0`, `args`): use it inside `jax.grad` /
    `jax.jit`. The gradient is the pathwise derivative at fixed noise. Trajectories
    use the keys of `simulate_trajectories` and run as a `lax.map` over
    `jax.checkpoint`-ed chunks; each path stores only its states at `tsave`, so
    reverse-mode memory is about one chunk's `(T + steps per interval)` states per
    trajectory. Diverged trajectories are left out; with `EulerMaruyama` they are
    frozen at their last finite state, so gradients stay finite.

    Args:
        sde: The model (unbatched; vmap `ensemble_mean` for a batch).
        y0: Initial state, shape `state`.
        tsave: Save times `(T,)` (concrete).
        key: PRNG key.
        observable: `fn(t, y)` -> scalar or array `obs`.
        ntraj: Trajectories, >= 1.
        method: `EulerMaruyama` or `DiffraxSDE`.
        args: Passed to the sde.
        options: `chunk_size`, `memory_budget` (including reverse-mode residuals),
            `normalize`, `max_norm`, `t0`.

    Returns:
        The mean, shape `(T, *obs)`; NaN if every trajectory diverged.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from thermojax.options import EulerMaruyama
        >>> class GBM(AbstractSDE):
        ...     k: jax.Array
        ...     def drift(self, t, y, args): return -self.k * y
        ...     def diffusion_mv(self, t, y, args, dw): return 0.2 * y * dw
        ...     def noise_shape(self): return jax.ShapeDtypeStruct((1,), jnp.float64)
        >>> def f(k):
        ...     m = ensemble_mean(GBM(k), jnp.ones(1), [0.0, 1.0], jax.random.key(0),
        ...                       lambda t, y: y[0], ntraj=64, method=EulerMaruyama(0.1))
        ...     return m[-1]
        >>> g = jax.grad(f)(jnp.array(1.0))
        >>> bool(abs(g + jnp.exp(-1.0)) < 0.1)
        True
    """
    _check_ntraj(ntraj)
    sde, y0, cfg, options, args = _prepare(sde, y0, tsave, method, options, {"o": observable}, False, None, args)
    key = canonical_key(key)
    describe(cfg, None, sde, y0, args)
    chunk_size = options.chunk_size
    if chunk_size is None and options.memory_budget is not None:
        chunk_size = _chunk_from_budget(*_memory(cfg, None, sde, y0, args, for_grad=True), options.memory_budget)
    chunk_size = int(min(chunk_size or ntraj, ntraj))
    n_chunks = -(-ntraj // chunk_size)
    idx = jnp.arange(n_chunks * chunk_size).reshape(n_chunks, chunk_size)

    def chunk_fn(idx_c):
        def per_traj(i):
            obs, _, div = _per_element(cfg, sde, y0, jax.random.fold_in(key, i), args)
            return obs["o"], div

        vals, div = jax.vmap(per_traj)(idx_c)
        valid = (idx_c < ntraj) & ~div
        mask = jnp.reshape(valid, valid.shape + (1,) * (vals.ndim - 1))
        return jnp.sum(jnp.where(mask, vals, 0), axis=0), jnp.sum(valid)

    sums, counts = jax.lax.map(jax.checkpoint(chunk_fn, prevent_cse=False), idx)
    total = jnp.sum(counts)
    mean = jnp.sum(sums, axis=0) / total.astype(sums.real.dtype)
    return jnp.where(total > 0, mean, jnp.nan)
