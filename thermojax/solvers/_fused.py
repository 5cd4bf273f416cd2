r"""`FusedERK`: diffrax's explicit Runge–Kutta methods with the stages written out.

diffrax's generic Runge–Kutta step stores the stages in a `(stages, *y.shape)` buffer
and forms every stage input and the error estimate as a contraction of the tableau
against that buffer. On CPU, for the small states of quantum problems (a 50 x 50
density matrix), that bookkeeping costs more than the physics: a Tsit5 step of
diffrax on a trivial right-hand side takes 63 µs against 15 µs written out
(`benchmarks/rk_step.py`), and it is half of every step of the driven Kerr benchmark
of `thermojax.mesolve`.

`FusedERK` wraps a diffrax ERK solver (Tsit5, Dopri5, Dopri8, Bosh3, ...) and takes
everything from it: the Butcher tableau, the order, the dense-output interpolation.
Only the step is rewritten: each stage input is one expression
$y_0 + \sum_j a_{ij} k_j$ over the stages already computed, with the tableau's nonzero
coefficients as constants (one fused pass, materialised before the right-hand side reads
it). It is a diffrax solver, so
`diffrax.diffeqsolve` still runs the loop, the step-size controller, saving and the
adjoints (the step is plain differentiable JAX). The same tableau with the same
controller takes as many steps as the wrapped solver; one step agrees to rounding,
and the solution within the tolerance (`tests/test_solvers.py`).

`thermojax.options.ODE` uses it in place of the diffrax solver it holds when that
solver qualifies (`ODE(fused=False)` turns it off).
"""

from collections.abc import Callable

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["FusedERK", "fusable"]


def fusable(solver) -> bool:
    """Whether `solver` is a diffrax explicit Runge–Kutta method with one plain Butcher
    tableau (Tsit5, Dopri5, Dopri8, Bosh3, Heun, Ralston, Midpoint, ...) and an error
    estimate."""
    tab = getattr(type(solver), "tableau", None)
    return (
        isinstance(solver, dfx.AbstractERK)
        and isinstance(tab, dfx.ButcherTableau)
        and not tab.implicit
        and tab.b_error is not None
        and np.any(np.asarray(tab.b_error) != 0)
    )


def _combine(coeffs, ks):
    """`sum_j coeffs[j] * ks[j]` over the nonzero coefficients, as Python constants."""
    out = None
    for c, k in zip(coeffs, ks, strict=False):
        c = float(c)
        if c == 0.0:
            continue
        term = k if c == 1.0 else c * k
        out = term if out is None else out + term
    return out


class FusedERK(dfx.AbstractAdaptiveSolver, dfx.AbstractWrappedSolver):
    """A diffrax ERK solver with its stages written out (see the module docstring).

    Only for `diffrax.ODETerm` right-hand sides whose state is one array.

    Attributes:
        solver: The diffrax solver whose tableau, order and interpolation are used.

    Raises:
        TypeError: If `solver` is not a plain explicit Runge–Kutta method (`fusable`).
    """

    solver: dfx.AbstractERK
    # not None: diffrax's ForwardMode adjoint sets a Runge–Kutta solver's `scan_kind`
    # when it is None; the written-out step has no stage loop to set
    scan_kind: str = eqx.field(static=True, default="lax")
    term_structure = dfx.AbstractTerm

    def __check_init__(self):
        if not fusable(self.solver):
            raise TypeError(f"FusedERK needs a diffrax explicit Runge-Kutta solver, got {type(self.solver).__name__}.")

    @property
    def interpolation_cls(self) -> Callable:  # pyright: ignore
        return self.solver.interpolation_cls

    @property
    def _tableau(self) -> dfx.ButcherTableau:
        return type(self.solver).tableau

    def order(self, terms):
        return self.solver.order(terms)

    def error_order(self, terms):
        return self.solver.error_order(terms)

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)

    def init(self, terms, t0, t1, y0, args):
        # FSAL: the first stage of a step is the last of the previous one
        return terms.vf(t0, y0, args) if self._tableau.fsal else None

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        tab = self._tableau
        h = terms.contr(t0, t1)

        def vf(t, y):
            return terms.vf(t, y, args)

        if tab.fsal:
            if made_jump is False:
                f0 = solver_state
            else:
                f0 = jax.lax.cond(made_jump, lambda: vf(t0, y0), lambda: solver_state)
        else:
            f0 = vf(t0, y0)
        fs = [f0]
        for c, a in zip(tab.c, tab.a_lower, strict=True):
            # materialise each stage input: without the barrier XLA fuses the stage sums
            # into the right-hand side's reads (rk_step.py: 5.6 vs 8.9 µs per fixed step;
            # the solid chain at N = 256: 2.95 vs 3.86 ms per step)
            yi = jax.lax.optimization_barrier(y0 + h * _combine(a, fs))
            fs.append(vf(t0 + float(c) * h, yi))
        y1 = y0 + h * _combine(tab.b_sol, fs)
        # FSAL tableaus evaluate their last stage at (t1, y1) (c = 1, last row = b_sol)
        f1 = fs[-1] if tab.fsal else None
        y_error = h * _combine(tab.b_error, fs)
        ks = jnp.stack([h * f for f in fs])
        dense_info = dict(y0=y0, y1=y1, k=ks)
        return y1, y_error, dense_info, f1, dfx.RESULTS.successful
