"""`sesolve`: the Schrödinger equation for a user's Hamiltonian."""

import equinox as eqx
import jax
import jax.numpy as jnp

from .._checks import check_state, check_times
from ..interop import qutip_dims
from ..operators import as_operator
from ..options import ODE, AbstractMethod, Eigen, Options
from ..result import Result, Status
from ._common import assemble, cartesian_call, ode_integrate, prepare_e_ops, state_and_expect

__all__ = ["sesolve"]


def sesolve(
    H,
    psi0,
    tsave,
    *,
    e_ops=None,
    method: AbstractMethod | None = None,
    options: Options | None = None,
) -> Result:
    r"""Solve the Schrödinger equation $i\,d\psi/dt = H(t)\psi$ ($\hbar = 1$).

    Args:
        H: Hamiltonian, energy units. A dense Hermitian array `(*bH, d, d)`, a QuTiP
            `Qobj`; or time dependent: a callable `H(t) -> (d, d)`, or a pair
            `(H0, [(V_1, f_1), ...])` meaning $H_0 + \sum_k f_k(t)V_k$ with scalar
            functions `f_k` (define them once and reuse them: a new function object
            recompiles).
        psi0: Initial kets `(*bpsi, d)` (a `Qobj` or a `(d, 1)` column is accepted).
        tsave: Save times `(T,)`, strictly increasing (time unit $\hbar/E$).
        e_ops: Operators `(E, d, d)` (or a list of arrays/`Qobj`), or a function
            `psi -> (E,)`; their expectation values are saved.
        method: `thermojax.options.ODE` (default: diffrax `Tsit5`,
            `rtol = atol = 1e-8`) or `thermojax.options.Eigen` (exact, for a
            time-independent `H`).
        options: `thermojax.options.Options`.

    Returns:
        `thermojax.result.Result` with `states` `(*bH, *bpsi, T, d)` and
        `expect` `(*bH, *bpsi, E, T)`: batch axes of `H` first, then of `psi0`
        (cartesian batching). Parameters enter by `jax.vmap` over a function that
        calls `sesolve`.

    Raises:
        ValueError: Non-square, non-Hermitian or non-finite `H` (NaN said as such),
            `psi0` of the wrong shape or not normalised (unless
            `Options(normalize=True)`), `tsave` not increasing, `Eigen` with a
            time-dependent `H`.
        TypeError: An unknown `method`.

    Example:
        >>> import jax.numpy as jnp
        >>> sx = jnp.array([[0.0, 1.0], [1.0, 0.0]])
        >>> res = sesolve(0.5 * sx, jnp.array([1.0, 0.0]), jnp.linspace(0, jnp.pi, 3),
        ...               e_ops=[jnp.diag(jnp.array([0.0, 1.0]))])
        >>> jnp.round(res.expect[0].real, 6).tolist()  # sin^2(t/2)
        [0.0, 0.5, 1.0]
    """
    method = ODE() if method is None else method
    options = Options() if options is None else options
    dims = qutip_dims(psi0) or qutip_dims(H)
    tsave = check_times(tsave, "tsave")
    t0 = float(tsave[0]) if options.t0 is None and not isinstance(tsave, jax.core.Tracer) else 0.0
    op = as_operator(H, "H", t0=t0)
    d = op.dim
    psi0, _ = check_state(psi0, d, "psi0", kind="ket", normalize=bool(options.normalize))
    e = prepare_e_ops(e_ops, d)
    if isinstance(method, Eigen):
        if not op.is_constant:
            raise ValueError("method Eigen() needs a time-independent `H`; use ODE() for H(t).")
        out = _se_eigen(op, psi0, tsave, e, method, options)
    elif isinstance(method, ODE):
        out = _se_ode(op, psi0, tsave, e, method, options)
    else:
        raise TypeError(f"Argument `method` must be ODE(...) or Eigen(...) for sesolve, got {type(method).__name__}.")
    name = type(method).__name__ if isinstance(method, Eigen) else type(method.solver).__name__
    return assemble(tsave, out, method=name, kets=True, dims=dims, options=options)


def _se_one_ode(op, psi, tsave, e_ops, method, options):
    saved, stats, status = ode_integrate(
        lambda t, y, a: -1j * op.mv(t, y),
        psi,
        tsave,
        method=method,
        options=options,
        save=state_and_expect(e_ops, options.save_states, True),
    )
    return saved[0], saved[1], stats, status


@eqx.filter_jit
def _se_ode(op, psi0, tsave, e_ops, method, options):
    return cartesian_call(_se_one_ode, op, psi0, 1, tsave, e_ops, method, options)


def _se_one_eigen(op, psi, tsave, e_ops, method, options):
    from ..spectra import eigh

    if callable(e_ops):  # per-state function -> batch function, as Eigensystem.evolve expects
        per_state = e_ops

        def e_ops(st):
            flat = st.reshape((-1, st.shape[-1]))
            out = jax.vmap(lambda x: jnp.asarray(per_state(x)))(flat)
            return out.reshape(st.shape[:-1] + out.shape[1:])

    res = eigh(op.matrix, name="H", check=False).evolve(
        psi, tsave, e_ops=e_ops, time_batch=method.time_batch, save_states=options.save_states, kind="ket"
    )
    status = jax.tree.map(lambda x: jnp.broadcast_to(x, psi.shape[:-1]), Status.successful)
    expect = None if res.expect is None else jnp.moveaxis(res.expect, -1, -2)  # (..., T, E)
    return res.states, expect, {}, status


@eqx.filter_jit
def _se_eigen(op, psi0, tsave, e_ops, method, options):
    # states of one H are propagated together (one eigendecomposition per H)
    b_op = op.batch_shape
    opf = op.flatten_batch()
    f = _se_one_eigen
    if b_op:
        f = eqx.filter_vmap(f, in_axes=(opf.vmap_axes(), None, None, None, None, None))
    out = f(opf, psi0, tsave, e_ops, method, options)
    return jax.tree.map(lambda x: x.reshape(b_op + x.shape[1:]) if b_op else x, out)
