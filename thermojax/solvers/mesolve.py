"""`mesolve`: the Lindblad master equation for a user's Hamiltonian and jump operators."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp

from .._checks import check_memory, check_state, check_times, estimate_bytes
from ..interop import qutip_dims
from ..lindblad import AbstractGenerator, Lindbladian, sparsity
from ..operators import ConstantOperator, SumOperator, as_operator, as_operator_stack
from ..options import ODE, AbstractMethod, Expm, Options
from ..result import Result, Status
from ._common import assemble, cartesian_call, ode_integrate, prepare_e_ops, state_and_expect

__all__ = ["mesolve"]


class _Problem(eqx.Module):
    """A batch of generators: the Hamiltonian operator and the jump operators, with the
    batch axes of both flattened into one (cartesian product) for `cartesian_call`."""

    H: object
    jump_ops: jax.Array
    n_h: int = eqx.field(static=True)
    n_l: int = eqx.field(static=True)
    shape: tuple = eqx.field(static=True)
    offsets: tuple = eqx.field(static=True)

    @property
    def batch_shape(self):
        return self.shape

    def flatten_batch(self):
        return self

    def vmap_axes(self):
        return _ProblemAxes(self)

    def element(self):
        return Lindbladian(self.H, self.jump_ops, check=False, jump_offsets=self.offsets)


def _ProblemAxes(p: _Problem):
    h_axes = p.H.vmap_axes() if p.n_h else None
    return _Problem(h_axes, 0 if p.n_l else None, p.n_h, p.n_l, p.shape, p.offsets)


def mesolve(
    H,
    jump_ops,
    rho0,
    tsave,
    *,
    e_ops=None,
    method: AbstractMethod | None = None,
    options: Options | None = None,
) -> Result:
    r"""Solve the Lindblad master equation ($\hbar = 1$)

    $$
    \dot\rho = -i[H(t),\rho] + \sum_k\big(L_k\rho L_k^\dagger
    - \tfrac12\{L_k^\dagger L_k,\rho\}\big).
    $$

    Args:
        H: Hamiltonian as for `thermojax.sesolve` (array `(*bH, d, d)`, `Qobj`,
            callable `H(t)` or `(H0, [(V, f), ...])`). Or a generator object, an
            `thermojax.lindblad.AbstractGenerator` (e.g. an OQT model, a KMS
            generator); then `jump_ops` must be empty.
        jump_ops: Jump operators with their rates absorbed: a sequence of `(d, d)`
            arrays/`Qobj` or an array `(*bL, K, d, d)`; may be empty.
        rho0: Initial density matrices `(*brho, d, d)`, or kets `(*brho, d)`
            (turned into $|\psi\rangle\langle\psi|$); `Qobj` accepted.
        tsave: Save times `(T,)`, strictly increasing.
        e_ops: Operators `(E, d, d)` (or a list), or a function `rho -> (E,)`.
        method: `thermojax.options.ODE` (default `Tsit5`,
            `rtol = atol = 1e-8`) or `thermojax.options.Expm` (dense
            Liouvillian exponential, small `d`).
        options: `thermojax.options.Options`.

    Returns:
        `thermojax.result.Result` with `states` `(*bH, *bL, *brho, T, d, d)`
        and `expect` `(*bH, *bL, *brho, E, T)` (cartesian batching).

    Raises:
        ValueError: Bad shapes, a non-Hermitian `H`, NaN, a `rho0` that is not a
            normalised positive density matrix (unless `Options(normalize=True)`).
        TypeError: An unknown `method`.
        MemoryError: `Expm` with a Liouvillian that would not fit.

    Example:
        >>> import jax.numpy as jnp
        >>> sm = jnp.array([[0.0, 1.0], [0.0, 0.0]])  # decay |1> -> |0> at rate 1
        >>> res = mesolve(jnp.zeros((2, 2)), [sm], jnp.array([0.0, 1.0]), jnp.array([0.0, 1.0]),
        ...               e_ops=[jnp.diag(jnp.array([0.0, 1.0]))])
        >>> round(float(res.expect[0, -1].real), 6)  # exp(-1)
        0.367879
    """
    method = ODE() if method is None else method
    options = Options() if options is None else options
    dims = qutip_dims(rho0) or (None if isinstance(H, AbstractGenerator) else qutip_dims(H))
    tsave = check_times(tsave, "tsave")
    if isinstance(H, AbstractGenerator):
        if jump_ops is not None and len(jump_ops) != 0:
            raise ValueError("Argument `jump_ops` must be empty when `H` is a generator object.")
        problem = H
        d = H.dim
    else:
        t0 = float(tsave[0]) if options.t0 is None and not isinstance(tsave, jax.core.Tracer) else 0.0
        op = as_operator(H, "H", t0=t0)
        d = op.dim
        ops = as_operator_stack(jump_ops, "jump_ops", d)
        ops = ops.astype(jnp.result_type(ops.dtype, complex))
        b_h, b_l = tuple(op.batch_shape), tuple(ops.shape[:-3])
        offsets = sparsity(ops)  # dia layout for banded operators, decided on the concrete values
        if b_h and b_l:
            # cartesian: repeat each over the other's batch, then flatten
            n_h, n_l = math.prod(b_h), math.prod(b_l)
            opf = _repeat_batch(op.flatten_batch(), n_l)
            opsf = jnp.tile(ops.reshape((n_l,) + ops.shape[-3:]), (n_h, 1, 1, 1))
            problem = _Problem(opf, opsf, 1, 1, b_h + b_l, offsets)
        elif b_h:
            problem = _Problem(op.flatten_batch(), ops, 1, 0, b_h, offsets)
        elif b_l:
            problem = _Problem(op, ops.reshape((-1,) + ops.shape[-3:]), 0, 1, b_l, offsets)
        else:
            problem = _Problem(op, ops, 0, 0, (), offsets)
    rho0 = _as_density_matrix(rho0, d, options)
    e = prepare_e_ops(e_ops, d)
    if isinstance(method, Expm):
        check_memory(estimate_bytes(((4, d * d, d * d), jnp.complex128)), f"Expm: dense Liouvillian of d = {d}")
        out = _me_solve(_me_one_expm, problem, rho0, tsave, e, method, options)
        name = "Expm"
    elif isinstance(method, ODE):
        out = _me_solve(_me_one_ode, problem, rho0, tsave, e, method, options)
        name = type(method.solver).__name__
    else:
        raise TypeError(f"Argument `method` must be ODE(...) or Expm() for mesolve, got {type(method).__name__}.")
    return assemble(tsave, out, method=name, kets=False, dims=dims, options=options)


def _repeat_batch(op, n):
    """Repeat each element of a flattened operator batch `n` times (cartesian product)."""
    if isinstance(op, ConstantOperator):
        return ConstantOperator(jnp.repeat(op.matrix, n, axis=0), op.offsets)
    return SumOperator(jnp.repeat(op.h0, n, axis=0), op.ops, op.coeffs)


def _as_density_matrix(rho0, d, options):
    state, is_ket = check_state(rho0, d, "rho0", normalize=bool(options.normalize))
    if is_ket:
        state = state[..., :, None] * jnp.conj(state)[..., None, :]
    return state


def _generator(problem):
    return problem.element()


def _me_one_ode(problem, rho, tsave, e_ops, method, options):
    field = _generator(problem).vector_field()
    saved, stats, status = ode_integrate(
        lambda t, y, a: field(t, y),
        rho,
        tsave,
        method=method,
        options=options,
        save=state_and_expect(e_ops, options.save_states, False),
    )
    return saved[0], saved[1], stats, status


def _me_one_expm(problem, rho, tsave, e_ops, method, options):
    gen = _generator(problem)
    d = rho.shape[-1]
    big = gen.liouvillian()
    t0 = tsave[0] if options.t0 is None else options.t0
    save = state_and_expect(e_ops, options.save_states, False)

    def at(t):
        r = (jax.scipy.linalg.expm(big * (t - t0)) @ rho.reshape(d * d)).reshape(d, d)
        return save(r)

    states, expect = jax.lax.map(at, tsave)
    status = Status.where(jnp.all(jnp.isfinite(big)), Status.successful, Status.nonfinite)
    return states, expect, {}, status


@eqx.filter_jit
def _me_solve(one, problem, rho0, tsave, e_ops, method, options):
    if isinstance(problem, _Problem):
        return cartesian_call(one, problem, rho0, 2, tsave, e_ops, method, options)
    return cartesian_call(one, _Single(problem), rho0, 2, tsave, e_ops, method, options)


class _Single(eqx.Module):
    """An unbatched generator object, with the interface `cartesian_call` expects."""

    gen: AbstractGenerator
    batch_shape: tuple = eqx.field(static=True, default=())

    def flatten_batch(self):
        return self

    def vmap_axes(self):
        return None

    def element(self):
        return self.gen
