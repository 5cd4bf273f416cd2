"""Benchmark: cost of one explicit Runge-Kutta step, diffrax's own against the written-out
step of `thermojax.solvers._fused.FusedERK` (same Tsit5 tableau), and of diffrax's loop.

Why it exists: the library rule is "diffrax unless measured as the bottleneck". This is
the measurement behind `ODE(fused=True)` and behind its restriction to real states.

(a) One Tsit5 step in a `lax.fori_loop` of 1000 steps (us per step), for
    - a trivial right-hand side (-0.1 y) on a complex 50 x 50 state and on a real
      2 x 50 x 50 state: the step's own bookkeeping;
    - the driven-Kerr Lindblad stencil of `benchmarks/solvers.py` on the complex state
      (the right-hand side `thermojax.mesolve` integrates).
(b) `diffrax.diffeqsolve` on the real trivial problem, t = 0 ... 10, about 400 steps: fixed
    steps (`StepTo`), a `PIDController`, and a `PIDController` with `SaveAt(ts=...)`, for
    diffrax's Tsit5 and for `FusedERK(Tsit5())` (us per step: the loop's overhead).

Run: python benchmarks/rk_step.py   (about 1 minute; quote `uptime` with the numbers)
"""

import os
import sys

import jax

jax.config.update("jax_enable_x64", True)

import diffrax as dfx  # noqa: E402
import jax.numpy as jnp  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from _timing import timed  # noqa: E402
from solvers import operators  # noqa: E402

from thermojax.lindblad import Lindbladian  # noqa: E402
from thermojax.solvers._fused import FusedERK  # noqa: E402


def _best(fn, arg, repeats=5):
    jax.block_until_ready(fn(arg))  # compile
    return timed(lambda: fn(arg), repeat=repeats)[0]


def step_cost(solver, field, y0, n=1000):
    term = dfx.ODETerm(field)

    @jax.jit
    def run(y):
        state = solver.init(term, 0.0, 0.01, y, None)

        def body(i, c):
            y, st = c
            y1, _, _, st, _ = solver.step(term, 0.0, 0.01, y, None, st, False)
            return y1, st

        return jax.lax.fori_loop(0, n, body, (y, state))[0]

    return _best(run, y0) / n * 1e6


def loop_cost(solver, y0, controller, saveat):
    @jax.jit
    def run(y):
        sol = dfx.diffeqsolve(dfx.ODETerm(lambda t, y, a: -1.0 * y), solver, 0.0, 10.0, None, y, saveat=saveat,
                              stepsize_controller=controller, max_steps=100_000)
        return sol.ys, sol.stats["num_steps"]

    out = run(y0)
    return _best(run, y0) / int(out[1]) * 1e6, int(out[1])


def main():
    print(f"load average {os.getloadavg()}, jax {jax.__version__}, diffrax {dfx.__version__}")
    H, ops, _, _ = operators()
    gen = Lindbladian(H, ops)
    yc = jnp.ones((50, 50), complex) / 50
    yr = jnp.ones((2, 50, 50)) / 50
    rows = [
        ("trivial, complex 50x50", lambda t, y, a: -0.1 * y, yc),
        ("trivial, real 2x50x50", lambda t, y, a: -0.1 * y, yr),
        ("Kerr Lindblad stencil, complex 50x50", lambda t, y, a: gen.rhs_hermitian(t, y), yc),
    ]
    print("\n(a) one Tsit5 step in a fori_loop [us/step]")
    print(f"{'right-hand side':<40}{'diffrax':>10}{'FusedERK':>10}{'ratio':>8}")
    for name, field, y0 in rows:
        a = step_cost(dfx.Tsit5(), field, y0)
        b = step_cost(FusedERK(dfx.Tsit5()), field, y0)
        print(f"{name:<40}{a:>10.1f}{b:>10.1f}{a / b:>8.2f}")
    ts = jnp.linspace(0.0, 10.0, 100)
    loops = [
        ("StepTo (400 fixed steps)", dfx.StepTo(jnp.linspace(0.0, 10.0, 401)), dfx.SaveAt(t1=True)),
        ("PIDController(1e-13)", dfx.PIDController(rtol=1e-13, atol=1e-13), dfx.SaveAt(t1=True)),
        ("PIDController + SaveAt(ts=100)", dfx.PIDController(rtol=1e-13, atol=1e-13), dfx.SaveAt(ts=ts)),
    ]
    print("\n(b) diffeqsolve on the trivial real problem [us/step]")
    print(f"{'loop':<40}{'diffrax':>10}{'FusedERK':>10}{'steps':>8}")
    for name, ctrl, saveat in loops:
        a, n = loop_cost(dfx.Tsit5(), yr, ctrl, saveat)
        b, _ = loop_cost(FusedERK(dfx.Tsit5()), yr, ctrl, saveat)
        print(f"{name:<40}{a:>10.1f}{b:>10.1f}{n:>8}")
    print(f"\nload average {os.getloadavg()}")


if __name__ == "__main__":
    main()
