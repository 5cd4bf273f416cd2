"""`ssesolve`: diffusive stochastic Schrödinger equations for any Lindbladian."""

import dataclasses
import math
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp

from .._checks import check_state, check_times
from ..interop import qutip_dims
from ..lindblad import sparsity
from ..operators import AbstractOperator, ConstantOperator, DiaMatrix, as_operator, as_operator_stack, matmul, op_lmul
from ..options import AbstractMethod, DiffraxSDE, EulerMaruyama, Options
from ..result import Result
from ..trajectories import AbstractSDE, simulate_trajectories
from ._common import expect_values, prepare_e_ops, raise_if_failed

__all__ = ["DiffusiveSSE", "ssesolve"]


def _combine_ops(c, ly):
    r"""$\sum_k c_k (L_k y)_i$ as an element-wise product and a sum over the few jump
    operators: XLA (CPU) fuses it into the step, where the `einsum` became a separate
    small matrix product per trajectory that cost 10x the rest of the step on the Kerr
    benchmark (`benchmarks/solvers.py`)."""
    return jnp.sum(c[:, None] * ly, axis=0)


def _contract_states(yc, ly):
    r"""$\sum_i \bar y_i (L_k y)_i$ for every `k`, fused like `_combine_ops`."""
    return jnp.sum(yc[None, :] * ly, axis=1)


class DiffusiveSSE(AbstractSDE):
    r"""Diffusive (homodyne or heterodyne) stochastic Schrödinger equation of a Lindbladian.

    With normalised expectations $\ell_k = \langle\psi|L_k|\psi\rangle/\langle\psi|\psi\rangle$
    and $x_k = 2\,\mathrm{Re}\,\ell_k$ (Itô, $\hbar = 1$; Wiseman & Milburn,
    *Quantum Measurement and Control*, ch. 4; Gisin & Percival, J. Phys. A 25, 5677
    (1992) for the heterodyne form):

    * homodyne, one real Wiener increment $dW_k$ per jump operator:

      $$
      d\psi = \Big[-iH - \tfrac12\sum_k\big(L_k^\dagger L_k - x_kL_k
      + \tfrac14x_k^2\big)\Big]\psi\,dt + \sum_k\big(L_k - \tfrac12x_k\big)\psi\,dW_k
      $$

    * heterodyne (quantum state diffusion), complex $dZ_k$,
      $E|dZ_k|^2 = dt$, $E\,dZ_k^2 = 0$:

      $$
      d\psi = \Big[-iH - \tfrac12\sum_k\big(L_k^\dagger L_k - 2\bar\ell_kL_k
      + |\ell_k|^2\big)\Big]\psi\,dt + \sum_k\big(L_k - \ell_k\big)\psi\,dZ_k
      $$

    Both keep $\langle\psi|\psi\rangle = 1$ in Itô calculus, and the ensemble mean
    of $|\psi\rangle\langle\psi|$ obeys the Lindblad master equation of
    `thermojax.mesolve`. Every channel is monitored with efficiency 1.

    Args:
        H: Hamiltonian (see `thermojax.operators.as_operator`).
        jump_ops: `(K, d, d)`.
        unravelling: `"homodyne"` or `"heterodyne"` (static).
    """

    H: AbstractOperator
    jump_ops: jax.Array
    half_k: jax.Array
    unravelling: str = eqx.field(static=True)
    jump_offsets: tuple = eqx.field(static=True)
    k_offsets: tuple | None = eqx.field(static=True)

    def __init__(self, H, jump_ops, unravelling: Literal["homodyne", "heterodyne"] = "homodyne"):
        if unravelling not in ("homodyne", "heterodyne"):
            raise ValueError(f'Argument `unravelling` must be "homodyne" or "heterodyne", got {unravelling!r}.')
        self.H = as_operator(H, "H")
        ops = as_operator_stack(jump_ops, "jump_ops", self.H.dim)
        self.jump_ops = ops.astype(jnp.result_type(ops.dtype, complex))
        self.half_k = 0.5 * jnp.einsum("kba,kbc->ac", self.jump_ops.conj(), self.jump_ops)
        self.unravelling = unravelling
        # banded operators (ladder, number) are applied in the dia layout
        self.jump_offsets, self.k_offsets = sparsity(self.jump_ops, self.half_k)

    def _parts(self, t, y):
        ly = jnp.stack([
            matmul(self.jump_ops[k], y) if off is None else DiaMatrix.from_dense(self.jump_ops[k], off).lmul(y)
            for k, off in enumerate(self.jump_offsets)
        ]) if self.jump_offsets else jnp.zeros((0,) + y.shape, y.dtype)  # (K, d)
        n = jnp.sum(jnp.real(y * jnp.conj(y)))
        ell = _contract_states(jnp.conj(y), ly) / n
        return ly, ell

    def _half_k(self, y):
        return op_lmul(self.half_k if self.k_offsets is None else DiaMatrix.from_dense(self.half_k, self.k_offsets), y)

    def drift(self, t, y, args):
        ly, ell = self._parts(t, y)
        base = -1j * self.H.mv(t, y) - self._half_k(y)
        if self.unravelling == "homodyne":
            x = 2.0 * jnp.real(ell)
            return base + 0.5 * _combine_ops(x.astype(y.dtype), ly) - (jnp.sum(x**2) / 8.0) * y
        return base + _combine_ops(jnp.conj(ell), ly) - 0.5 * jnp.sum(jnp.abs(ell) ** 2) * y

    def diffusion_mv(self, t, y, args, dw):
        ly, ell = self._parts(t, y)
        if self.unravelling == "homodyne":
            c = 0.5 * (ell + jnp.conj(ell))
            w = dw.astype(y.dtype)
        else:
            c = ell
            w = jax.lax.complex(dw[:, 0], dw[:, 1]).astype(y.dtype) / jnp.sqrt(2.0).astype(y.dtype)
        return _combine_ops(w, ly) - jnp.sum(w * c) * y

    def noise_shape(self):
        k = self.jump_ops.shape[0]
        dtype = jnp.finfo(self.jump_ops.dtype).dtype
        shape = (k,) if self.unravelling == "homodyne" else (k, 2)
        return jax.ShapeDtypeStruct(shape, dtype)

    def divergence_norm(self) -> float:
        """A norm above 10 flags a trajectory as diverged (the exact norm is 1)."""
        return 10.0

    def conserves_norm(self) -> bool:
        return True


def ssesolve(
    H,
    jump_ops,
    psi0,
    tsave,
    key,
    *,
    ntraj: int,
    unravelling: Literal["homodyne", "heterodyne"] = "homodyne",
    e_ops=None,
    method: AbstractMethod | None = None,
    options: Options | None = None,
) -> Result:
    r"""Ensemble of diffusive stochastic Schrödinger trajectories for a Lindbladian.

    Runs `ntraj` trajectories of `DiffusiveSSE` (homodyne: real noise per jump
    operator; heterodyne: complex noise, quantum state diffusion) on thermojax's
    chunked, vmapped, streaming trajectory machinery
    (`thermojax.trajectories.simulate_trajectories`). The ensemble mean of
    $|\psi\rangle\langle\psi|$ solves the master equation of
    `thermojax.mesolve` with the same `H` and `jump_ops`.

    By default each step is projected back to unit norm (`Options(normalize=None)`
    means `True` here): the Itô equation preserves the norm but a discrete step does
    not, and an unprojected Euler–Maruyama scheme can blow up. The drift of the norm
    before projection is the scheme's error; `Options(normalize=False,
    record_norm=True)` shows it.

    Args:
        H: Hamiltonian `(*bH, d, d)` (array or `Qobj`, or time dependent as for
            `thermojax.sesolve`).
        jump_ops: Jump operators, a sequence or `(K, d, d)`.
        psi0: Initial kets `(*bpsi, d)`.
        tsave: Save times `(T,)` on the step grid `t0 + n dt`.
        key: PRNG key; trajectory `i` uses `fold_in(key, i)` whatever the chunking.
        ntraj: Trajectories per batch element.
        unravelling: `"homodyne"` or `"heterodyne"`.
        e_ops: Operators `(E, d, d)` (or a list), or a function `psi -> (E,)` of a
            normalised ket; their trajectory means are `expect`.
        method: `thermojax.options.EulerMaruyama` `(dt)` or
            `thermojax.options.DiffraxSDE`; required (it sets `dt`).
        options: `thermojax.options.Options` (`chunk_size`,
            `memory_budget`, `normalize`, `record_norm`, `save_states`,
            `precision`, `progress`, ...).

    Returns:
        `thermojax.result.Result`: `states` the ensemble mean
        $\overline{|\psi\rangle\langle\psi|}$ `(*bH, *bpsi, T, d, d)` (unless
        `save_states=False`), `expect` `(*bH, *bpsi, E, T)` with
        `expect_stderr`, `ensemble` (counts, divergence flags, norm drift) and a
        `status` per element (`diverged` where any trajectory diverged; those are
        left out of the averages).

    Raises:
        ValueError: Bad shapes or values (as `thermojax.mesolve`), `tsave` off
            the step grid, an unknown `unravelling`.
        TypeError: `method` missing or not a stochastic method.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from thermojax.options import EulerMaruyama
        >>> sm = jnp.array([[0.0, 1.0], [0.0, 0.0]])
        >>> res = ssesolve(jnp.zeros((2, 2)), [sm], jnp.array([0.0, 1.0]), [0.0, 1.0],
        ...                jax.random.key(0), ntraj=200, method=EulerMaruyama(0.01),
        ...                e_ops=[jnp.diag(jnp.array([0.0, 1.0]))])
        >>> res.expect.shape, bool(abs(res.expect[0, -1].real - jnp.exp(-1.0)) < 4 * res.expect_stderr[0, -1])
        ((1, 2), True)
    """
    if not isinstance(method, (EulerMaruyama, DiffraxSDE)):
        raise TypeError(
            "Argument `method` must be EulerMaruyama(dt) or DiffraxSDE(dt, ...) for ssesolve "
            f"(it sets the step), got {type(method).__name__}."
        )
    options = Options() if options is None else options
    if options.normalize is None:
        options = dataclasses.replace(options, normalize=True)
    tsave = check_times(tsave, "tsave")
    op = as_operator(H, "H", t0=float(tsave[0]) if options.t0 is None else options.t0)
    d = op.dim
    ops = as_operator_stack(jump_ops, "jump_ops", d)
    if ops.ndim != 3:
        raise ValueError(f"Argument `jump_ops` must have shape (K, {d}, {d}) for ssesolve, got {ops.shape}.")
    psi0, _ = check_state(psi0, d, "psi0", kind="ket", normalize=True)
    e = prepare_e_ops(e_ops, d)
    b_h, b_psi = tuple(op.batch_shape), tuple(psi0.shape[:-1])
    observables = {} if e is None else {"expect": _Expect(e)}
    sde, y0, in_axes = _batched(op, ops, unravelling, psi0, b_h, b_psi)
    res = simulate_trajectories(
        sde,
        y0,
        tsave,
        key,
        ntraj=ntraj,
        method=method,
        observables=observables,
        accumulate_outer=options.save_states,
        in_axes=in_axes,
        options=options,
    )
    ens = res.ensemble
    batch = b_h + b_psi

    def shape_back(x, core):
        return None if x is None else x.reshape(batch + x.shape[x.ndim - core :])

    expect = stderr = None
    if e is not None:
        expect = jnp.swapaxes(shape_back(ens.mean["expect"], 2), -1, -2)
        stderr = jnp.swapaxes(shape_back(ens.stderr("expect"), 2), -1, -2)
    out = Result(
        tsave=res.tsave,
        states=shape_back(res.states, 3),
        expect=expect,
        expect_stderr=stderr,
        stats=res.stats,
        status=jax.tree.map(lambda x: x.reshape(batch), res.status),
        ensemble=ens,
        method=res.method,
        kets=False,
        dims=qutip_dims(psi0) or qutip_dims(H),
    )
    return raise_if_failed(out, options)


class _Expect(eqx.Module):
    """Observable `t, psi -> <psi|E_k|psi>/<psi|psi>` (a module: its operators are data,
    so the trajectory kernel compiles once for all of them)."""

    e_ops: object

    def __call__(self, t, y):
        return expect_values(self.e_ops, y / jnp.sqrt(jnp.sum(jnp.abs(y) ** 2)), True)


def _batched(op, ops, unravelling, psi0, b_h, b_psi):
    """The SDE, initial states and `in_axes` with all batch axes flattened into one
    (cartesian: each Hamiltonian with each initial state)."""
    if not b_h and not b_psi:
        return DiffusiveSSE(op, ops, unravelling), psi0, None
    n_h, n_psi = math.prod(b_h), math.prod(b_psi)
    psis = psi0.reshape((n_psi, psi0.shape[-1]))
    if not b_h:
        return DiffusiveSSE(op, ops, unravelling), psis, (None, 0)
    if not isinstance(op, ConstantOperator):
        raise ValueError("ssesolve batches over a constant H only; vmap over ssesolve for a batch of H(t).")
    mats = jnp.repeat(op.matrix.reshape((n_h,) + op.matrix.shape[-2:]), n_psi, axis=0)
    sde = DiffusiveSSE(ConstantOperator(mats, op.offsets), ops, unravelling)
    batched = sde.H.matrix
    axes = jax.tree.map(lambda x: 0 if x is batched else None, sde)
    return sde, jnp.tile(psis, (n_h, 1)), (axes, 0)
