"""Pieces shared by the public solvers: e_ops, the diffrax ODE driver, cartesian batching."""

import warnings
from collections.abc import Callable
from typing import Any

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from .._checks import check_finite
from ..interop import to_array
from ..options import ODE, Options
from ..result import Result, Status, status_from_diffrax
from ._fused import FusedERK, fusable

__all__ = ["prepare_e_ops", "expect_values", "ode_integrate", "solve_ode", "cartesian_call"]


def prepare_e_ops(e_ops, d: int):
    """`None`, a callable `state -> (E,)`, or operators as an array `(E, d, d)`.

    Raises:
        ValueError: On operators of the wrong shape or with NaN.
    """
    if e_ops is None or callable(e_ops) and not hasattr(e_ops, "shape") and not isinstance(e_ops, list):
        return e_ops
    arr = to_array(e_ops, "e_ops")
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1:] != (d, d):
        raise ValueError(f"Argument `e_ops` must hold (d, d) = ({d}, {d}) operators, got shape {arr.shape}.")
    return check_finite(arr, "e_ops")


def expect_values(e_ops, state: Array, is_ket: bool) -> Array | None:
    r"""`(E,)` expectation values of one state: $\langle\psi|E_k|\psi\rangle$ or
    $\mathrm{Tr}(E_k\rho)$; a callable `e_ops` is applied as is."""
    if e_ops is None:
        return None
    if callable(e_ops):
        return jnp.asarray(e_ops(state))
    if is_ket:
        return jnp.einsum("i,eij,j->e", jnp.conj(state), e_ops, state)
    return jnp.einsum("eij,ji->e", e_ops, state)


def _to_real(y):
    return jnp.stack([y.real, y.imag]) if jnp.iscomplexobj(y) else y


def _from_real(y, is_complex):
    return jax.lax.complex(y[0], y[1]) if is_complex else y


def ode_integrate(
    vector_field: Callable[[Any, Array, Any], Array],
    y0: Array,
    tsave: Array,
    *,
    args: Any = None,
    method: ODE,
    options: Options,
    save: Callable[[Array], Any],
):
    """Integrate with diffrax and apply `save(y)` at every save time.

    Complex states are integrated as complex arrays (`ODE(complex_state=True)`, the
    default: 20-40% faster on the Kerr benchmark than stacking real and imaginary
    parts; diffrax's warning that its complex support is experimental is silenced, and
    the solvers' tests against QuTiP and closed forms hold this path to account), or
    as stacked `(real, imaginary)` parts (`complex_state=False`). Never raises on
    solver failure (`throw=False`): the failure is returned as a `Status`.

    Returns:
        `(saved, stats, status)` with `saved` the pytree of `save` outputs with a
        leading time axis.
    """
    split = jnp.iscomplexobj(y0) and not method.complex_state

    def field(t, yr, a):
        return _to_real(vector_field(t, _from_real(yr, True), a)) if split else vector_field(t, yr, a)

    t0 = tsave[0] if options.t0 is None else jnp.asarray(options.t0, tsave.dtype)
    # real states only: for complex states XLA (CPU) runs diffrax's own step faster
    # (benchmarks/rk_step.py)
    real_state = split or not jnp.iscomplexobj(y0)
    fuse = method.fused and real_state and fusable(method.solver)
    solver = FusedERK(method.solver) if fuse else method.solver
    yi = _to_real(y0) if split else y0
    save_y = lambda yr: save(_from_real(yr, True) if split else yr)  # noqa: E731
    if not method.dense:
        return _integrate_by_intervals(field, solver, yi, t0, tsave, args, method, save_y)
    progress = dfx.TqdmProgressMeter() if options.progress else dfx.NoProgressMeter()
    saveat = dfx.SaveAt(ts=tsave, fn=lambda t, yr, a: save_y(yr))
    sol = _diffeqsolve(field, solver, t0, tsave[-1], yi, args, method, saveat, progress)
    return sol.ys, _counts(sol), _flag_nonfinite(sol.ys, status_from_diffrax(sol.result))


def _diffeqsolve(field, solver, t0, t1, y0, args, method: ODE, saveat, progress=None):
    """`diffrax.diffeqsolve` with the method's controller, adjoint and step budget, never
    raising (`throw=False`); diffrax's warning about complex dtypes silenced."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Complex dtype support in Diffrax")
        return dfx.diffeqsolve(
            dfx.ODETerm(field),
            solver,
            t0=t0,
            t1=t1,
            dt0=method.dt0,
            y0=y0,
            args=args,
            saveat=saveat,
            stepsize_controller=method.stepsize_controller,
            adjoint=method.adjoint,
            max_steps=method.max_steps,
            progress_meter=dfx.NoProgressMeter() if progress is None else progress,
            throw=False,
        )


def _counts(sol) -> dict:
    """diffrax's step counts (`num_steps`, `num_accepted_steps`, ...) of a solution."""
    return {k: v for k, v in sol.stats.items() if k.startswith("num_")}


def _flag_nonfinite(saved, status: Status) -> Status:
    """`Status.nonfinite` where the solve succeeded but saved a NaN or infinity."""
    ok = jax.tree.reduce(lambda a, b: a & b, jax.tree.map(lambda x: jnp.all(jnp.isfinite(x)), saved), True)
    return Status.where(ok | (status != Status.successful), status, Status.nonfinite)


def first_failure(status: Status) -> Status:
    """One `Status` from statuses stacked on a leading axis (intervals, blocks): the first
    that is not `successful`, else the first."""
    bad = jnp.argmin(jnp.asarray(status == Status.successful))
    return jax.tree.map(lambda v: v[bad], status)


def _integrate_by_intervals(field, solver, y0, t0, tsave, args, method: ODE, save):
    """`ode_integrate` with `ODE(dense=False)`: one diffeqsolve per interval between save
    times (`t0` to `tsave[0]`, then `tsave[k]` to `tsave[k + 1]`), `lax.scan` over them."""
    bounds = jnp.concatenate([jnp.reshape(t0, (1,)).astype(tsave.dtype), tsave])

    def interval(y, tt):
        sol = _diffeqsolve(field, solver, tt[0], tt[1], y, args, method, dfx.SaveAt(t1=True))
        y1 = jax.tree.map(lambda v: v[0], sol.ys)  # an interval of length zero (t0 = tsave[0]) returns y
        return y1, (save(y1), _counts(sol), status_from_diffrax(sol.result))

    _, (saved, stats, status) = jax.lax.scan(interval, y0, jnp.stack([bounds[:-1], bounds[1:]], axis=1))
    return saved, {k: jnp.sum(v) for k, v in stats.items()}, _flag_nonfinite(saved, first_failure(status))


def state_and_expect(e_ops, save_states: bool, is_ket: bool):
    """The `save` function of `ode_integrate`: `(state or None, expect or None)`."""

    def save(y):
        return (y if save_states else None), expect_values(e_ops, y, is_ket)

    return save


def solve_ode(
    vector_field: Callable[[Any, Array, Any], Array],
    y0: Array,
    tsave: Array,
    *,
    args: Any = None,
    e_ops: Callable[[Array], Array] | None = None,
    method: ODE | None = None,
    options: Options | None = None,
) -> Result:
    r"""Integrate any ODE `dy/dt = vector_field(t, y, args)` with diffrax; one `Result`.

    The general-purpose path behind the public solvers, for equations that are not a
    Schrödinger or master equation (rate equations, PDEs by the method of lines,
    interaction-picture forms). Differentiable with respect to `y0` and `args`.

    Args:
        vector_field: `(t, y, args) -> dy/dt`, `y` of the shape and dtype of `y0`
            (complex allowed).
        y0: Initial state, any shape.
        tsave: Save times `(T,)`, strictly increasing.
        args: Passed to `vector_field` (e.g. a model whose array fields a fit tunes).
        e_ops: Optional function `y -> (E,)` evaluated at every save time.
        method: An `thermojax.options.ODE` (default `ODE()`: Tsit5,
            `rtol = atol = 1e-8`).
        options: `thermojax.options.Options` (`save_states`, `t0`,
            `progress`, `throw`).

    Returns:
        `Result` with `states` `(T, *y0.shape)` and `expect` `(E, T)`.

    Raises:
        ValueError: If `tsave` is not increasing, or (with `Options(throw=True)`)
            the solve failed.

    Example:
        >>> import jax.numpy as jnp
        >>> res = solve_ode(lambda t, y, a: -y, jnp.ones(1), jnp.array([0.0, 1.0]))
        >>> round(float(res.states[-1, 0]), 6)
        0.367879
    """
    from .._checks import check_times

    method = ODE() if method is None else method
    options = Options() if options is None else options
    if not isinstance(method, ODE):
        raise TypeError(f"Argument `method` must be thermojax.ODE(...), got {type(method).__name__}.")
    tsave = check_times(tsave, "tsave")
    y0 = jnp.asarray(y0)
    saved, stats, status = _jit_ode(vector_field, y0, tsave, args, e_ops, method, options)
    res = Result(
        tsave=tsave,
        states=saved[0],
        expect=None if saved[1] is None else jnp.moveaxis(saved[1], 0, -1),
        stats=stats,
        status=status,
        method=type(method.solver).__name__,
    )
    return raise_if_failed(res, options)


@eqx.filter_jit
def _jit_ode(vector_field, y0, tsave, args, e_ops, method, options):
    def save(y):
        return (y if options.save_states else None), (None if e_ops is None else jnp.asarray(e_ops(y)))

    return ode_integrate(vector_field, y0, tsave, args=args, method=method, options=options, save=save)


def assemble(tsave, out, *, method: str, kets: bool, dims, options: Options) -> Result:
    """The `Result` of a solver from `(states, expect (..., T, E), stats, status)`;
    raises with `Options(throw=True)` if an element failed."""
    states, expect, stats, status = out
    res = Result(
        tsave=tsave,
        states=states,
        expect=None if expect is None else jnp.moveaxis(expect, -2, -1),
        stats=stats,
        status=status,
        method=method,
        kets=kets,
        dims=dims,
    )
    return raise_if_failed(res, options)


def raise_if_failed(res: Result, options: Options) -> Result:
    """With `Options(throw=True)`, raise `RuntimeError` naming the failure of any element."""
    if options.throw:
        ok = jnp.asarray(res.success)
        if not bool(jnp.all(ok)):
            flat = jax.tree.map(lambda v: jnp.ravel(v), res.status)
            bad = int(jnp.argmin(jnp.ravel(ok)))
            item = jax.tree.map(lambda v: v[bad], flat)
            raise RuntimeError(f"solve failed for batch element {bad}: {Status[item]}")
    return res


def cartesian_call(fn, op, state, core_ndim: int, *extra):
    """Call `fn(op_element, state_element, *extra)` over the cartesian product of the
    operator's batch axes and the state's leading batch axes.

    `op` must provide `batch_shape`, `flatten_batch()` and `vmap_axes()` (any
    pytree prefix for `eqx.filter_vmap`); `state` has `core_ndim` trailing core
    axes. Returns `fn`'s output pytree with leading axes `(*op_batch, *state_batch)`.
    """
    b_op = tuple(op.batch_shape)
    b_st = tuple(state.shape[: state.ndim - core_ndim])
    opf = op.flatten_batch()
    st = state.reshape((-1,) + state.shape[state.ndim - core_ndim :]) if b_st else state
    f = fn
    if b_st:
        f = eqx.filter_vmap(f, in_axes=(None, 0) + (None,) * len(extra))
    if b_op:
        f = eqx.filter_vmap(f, in_axes=(opf.vmap_axes(), None) + (None,) * len(extra))
    out = f(opf, st, *extra)
    lead = (1 if b_op else 0) + (1 if b_st else 0)

    def unflatten(x):
        if x is None or not hasattr(x, "shape"):
            return x
        return x.reshape(b_op + b_st + x.shape[lead:])

    return jax.tree.map(unflatten, out)
