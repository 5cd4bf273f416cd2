"""Benchmarks of `thermojax.models.solid` (issue 10), each printed as a ratio against a
baseline measured in the same run.

1. Thawed-Gaussian FPU-beta chain, fixed ends, local forces, N = 256 and 1024: diffrax
   Tsit5 (`thermojax.solve_ode`) against SciPy `solve_ivp` (RK45, Dormand-Prince) on the
   same equations with the same packing, both at a fixed step `dt` (SciPy forced with
   `first_step = max_step = dt` and tolerances so loose that every step is accepted).
   Two representations of the same flow: "width" integrates A itself (Riccati, O(N^3) per
   step) and "tangent" integrates X, P with A = P X^-1 / 2 (O(N^2) per step). Step counts
   that would take longer than the machine allows are timed on fewer steps and reported
   per step, extrapolated to 10^4 steps (marked "extrapolated"). thermojax saves without
   dense output (`ODE(dense=False)`; SciPy has none without `dense_output=True`), and the
   row "tangent/64" integrates the tangent columns in blocks of 64
   (`ThawedGaussian.evolve(column_block=64)`).
2. Shell dynamics at dimension >= 10^4 (N = 8 oscillators + 1 radiation mode, Q = 8, D =
   12870), both couplings: the matrix-free `ShellHamiltonian` under diffrax Dopri8
   (`thermojax.sesolve`) against SciPy `expm_multiply` on the CSR matrix; plus the cost
   of one product: matrix-free, SciPy CSR, `jax.experimental.sparse` BCOO.
3. The grid reference of the single-oscillator check (`sesolve` with `Eigen` on a
   256-point Fourier grid).

Run: `.venv/bin/python benchmarks/solid.py` (about 15 minutes on two CPU cores;
`--quick` for a short check). Quote `uptime`'s load average with the numbers.
"""

import argparse
import os
import time

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from jax.experimental import sparse as jsparse
from scipy.integrate import solve_ivp
from scipy.sparse.linalg import expm_multiply

import thermojax
from thermojax.models import solid

# ----------------------------------------------------------------------------------
# the same equations in NumPy (fixed ends, local forces)
# ----------------------------------------------------------------------------------


def numpy_field(n, mass, k, beta, representation):
    """`f(t, y)` of `ThawedGaussian(FPUChain(n, k, beta), mass, representation=...)`, same packing."""
    nn = n * n

    def moments(q):
        r = np.diff(np.pad(q, 1))
        return 0.5 * k * r**2 + 0.25 * beta * r**4, k * r + beta * r**3, k + 3 * beta * r**2

    def hess_mv(kap, x):  # D^T diag(kap) D x, x (n, m)
        return -np.diff(kap[:, None] * np.diff(np.pad(x, ((1, 1), (0, 0))), axis=0), axis=0)

    def width(t, y):
        q, p = y[:n], y[n : 2 * n]
        a = (y[2 * n : 2 * n + nn] + 1j * y[2 * n + nn : 2 * n + 2 * nn]).reshape(n, n)
        v, dv, kap = moments(q)
        v2 = hess_mv(kap, np.eye(n))
        da = -2.0 / mass * (a @ a) - 0.5 * v2
        dg = p @ p / (2 * mass) - v.sum() + 1j * np.trace(a) / mass
        return np.concatenate([p / mass, np.diff(dv), da.real.ravel(), da.imag.ravel(), [dg.real, dg.imag]])

    def tangent(t, y):  # the grid W (2, n, 2n + 2): centre | X or P real | imaginary | phase
        w = y.reshape(2, n, -1)
        q, p = w[0, :, 0], w[1, :, 0]
        v, dv, kap = moments(q)
        out = np.empty_like(w)
        out[0] = w[1] / mass
        out[0, :, -1] = 0.0
        out[1] = -hess_mv(kap, w[0])
        out[1, :, 0] = np.diff(dv)
        out[1, :, -1] = 0.0
        out[1, 0, -1] = p @ p / (2 * mass) - v.sum()
        return out.ravel()

    return width if representation == "width" else tangent


def chain_case(n, representation, jax_steps, scipy_steps, dt=0.05, block=None):
    """Time `jax_steps` Tsit5 steps and `scipy_steps` RK45 steps; per-step costs and checks.
    thermojax saves without dense output (`ODE(dense=False)`, as `solve_ivp` without
    `dense_output`), and with `block` integrates the tangent columns in blocks
    (`ThawedGaussian.evolve(column_block=block)`)."""
    mass, k, beta = 1.0, 1.0, 1.0
    chain = solid.FPUChain(n, k, beta)
    rng = np.random.default_rng(0)
    q0, p0 = jnp.asarray(0.1 * rng.standard_normal(n)), jnp.asarray(0.3 * rng.standard_normal(n))
    g0 = solid.GaussianState.normalized(q0, p0, chain.ground_state_width(mass))
    model = solid.ThawedGaussian(chain, mass, representation=representation)
    y0 = model.pack(g0)
    f_np = numpy_field(n, mass, k, beta, representation)
    rhs_diff = float(np.max(np.abs(f_np(0.0, np.asarray(y0)) - np.asarray(eqx.filter_jit(model)(0.0, y0)))))
    method = thermojax.ODE(
        dfx.Tsit5(), dfx.ConstantStepSize(), dt0=dt, max_steps=max(jax_steps, scipy_steps) + 8, dense=False
    )

    def run_jax(steps):
        res = model.evolve(g0, jnp.array([0.0, steps * dt]), method=method, column_block=block)
        return jax.block_until_ready(res.states), int(res.stats["num_steps"])

    run_jax(2)  # compile (t1 is traced: no recompilation for another step count)
    t0 = time.perf_counter()
    ys_j, steps_j = run_jax(jax_steps)
    t_jax = time.perf_counter() - t0
    t0 = time.perf_counter()
    sol = solve_ivp(f_np, (0.0, scipy_steps * dt), np.asarray(y0), method="RK45", first_step=dt, max_step=dt,
                    rtol=1e3, atol=1e3)  # fmt: skip
    t_sci = time.perf_counter() - t0
    steps_s = len(sol.t) - 1
    same = None
    if scipy_steps <= jax_steps:  # both at t = scipy_steps dt: compare the centres (RK45 vs Tsit5: O(dt^5))
        ys_c, _ = run_jax(scipy_steps)
        centre = (lambda y: y.reshape(2, n, -1)[:, :, 0].ravel()) if representation == "tangent" else (
            lambda y: y[: 2 * n])  # fmt: skip
        same = float(np.max(np.abs(centre(np.asarray(ys_c[-1])) - centre(sol.y[:, -1]))))
    return {
        "n": n, "rep": representation, "block": block, "jax_steps": steps_j, "scipy_steps": steps_s,
        "t_jax": t_jax, "t_scipy": t_sci,
        "per_step_jax": t_jax / steps_j, "per_step_scipy": t_sci / steps_s, "rhs_diff": rhs_diff, "centre_diff": same,
    }  # fmt: skip


# ----------------------------------------------------------------------------------
# shell dynamics
# ----------------------------------------------------------------------------------


def _time(f, repeat=1):
    f()  # warm up / compile
    t0 = time.perf_counter()
    for _ in range(repeat):
        out = f()
    return (time.perf_counter() - t0) / repeat, out


def shell_case(n, q, kind, n_times=11, span=5.0, rtol=1e-10):
    basis = solid.ShellBasis.build(n, q)
    gen = solid.random_hopping if kind == "hopping" else solid.random_two_body
    op = solid.ShellHamiltonian(basis, gen(jax.random.key(0), basis.n_modes), kind)
    psi0 = solid.cold_product_state(basis).astype(complex)
    t1 = span / float(solid.energy_spread(op, psi0))  # a few dephasing times
    ts = jnp.linspace(0.0, t1, n_times)
    r, c, v = op.coo()
    csr = sp.csr_matrix((v, (r, c)), shape=(basis.dim, basis.dim))
    tol = jnp.asarray(rtol)
    method = thermojax.ODE(dfx.Dopri8(), dfx.PIDController(rtol=tol, atol=tol), max_steps=10**7)
    t_jax, res = _time(lambda: jax.block_until_ready(thermojax.sesolve(op, psi0, ts, method=method)))
    t0 = time.perf_counter()
    ref = expm_multiply(-1j * csr, np.asarray(psi0), start=0.0, stop=t1, num=n_times, endpoint=True)
    t_sci = time.perf_counter() - t0
    x = jnp.asarray(np.random.default_rng(1).standard_normal(basis.dim) + 0j)
    mv = jax.jit(lambda o, x: o.mv(0.0, x))
    t_mf, _ = _time(lambda: jax.block_until_ready(mv(op, x)), 20)
    xn = np.asarray(x)
    t_csr, _ = _time(lambda: csr @ xn, 20)
    bcoo = jsparse.BCOO.from_scipy_sparse(csr)
    bmv = jax.jit(lambda b, x: b @ x)
    t_bcoo, _ = _time(lambda: jax.block_until_ready(bmv(bcoo, x)), 5)
    return {
        "kind": kind, "dim": basis.dim, "nnz": csr.nnz, "t_jax": t_jax, "t_scipy": t_sci,
        "err": float(np.max(np.abs(np.asarray(res.states) - ref))), "steps": int(res.stats["num_steps"]),
        "mv_matrix_free": t_mf, "mv_csr": t_csr, "mv_bcoo": t_bcoo,
    }  # fmt: skip


def grid_reference():
    osc = solid.QuarticOscillator(1.0, 0.05)
    x, h = solid.fourier_grid_hamiltonian(osc, 1.0, 256, 10.0)
    g0 = solid.GaussianState.normalized(jnp.array([1.5]), jnp.array([0.0]), jnp.array([[0.5j]]))
    psi0 = g0.wavefunction(x[:, None]) * np.sqrt(float(x[1] - x[0]))
    ts = jnp.linspace(0.0, 20.0, 201)
    t, _ = _time(lambda: jax.block_until_ready(thermojax.sesolve(h, psi0, ts, method=thermojax.Eigen()).states))
    return t


def _chain_table(cases):
    print("\n1. thawed-Gaussian FPU-beta chain, fixed dt = 0.05, diffrax Tsit5 vs SciPy RK45 (same equations)")
    print(f"{'N':>5} {'repr':>8} {'jax steps':>9} {'s/step jax':>11} {'scipy steps':>11} {'s/step scipy':>12} "
          f"{'1e4 steps jax':>13} {'1e4 steps scipy':>15} {'ratio':>7}  check")  # fmt: skip
    rows = {}
    for n, rep, nj, ns, *block in cases:
        rep_b = rep + (f"/{block[0]}" if block else "")
        r = rows[n, rep_b] = chain_case(n, rep, nj, ns, block=block[0] if block else None)
        rep = rep_b
        ej = " " if r["jax_steps"] >= 10_000 else "*"
        chk = f"rhs {r['rhs_diff']:.1e}" + ("" if r["centre_diff"] is None else f", centre {r['centre_diff']:.1e}")
        pj, ps = r["per_step_jax"], r["per_step_scipy"]
        print(f"{n:>5} {rep:>8} {r['jax_steps']:>9} {pj:>11.3e} {r['scipy_steps']:>11} {ps:>12.3e} "
              f"{1e4 * pj:>11.1f}s{ej} {1e4 * ps:>14.1f}s* {ps / pj:>6.1f}x  {chk}")  # fmt: skip
    print("   * extrapolated from the steps shown (the cost per step is constant at a fixed step);"
          " tangent/b: columns integrated in blocks of b")
    for n in sorted({n for n, _ in rows}):
        tangent = [r for (m, rep), r in rows.items() if m == n and rep.startswith("tangent")]
        if tangent and (n, "width") in rows:
            t, w = min(tangent, key=lambda r: r["per_step_jax"]), rows[n, "width"]
            print(f"   N = {n}: thermojax tangent vs SciPy on the Riccati (width) equations as written: "
                  f"{w['per_step_scipy'] / t['per_step_jax']:.0f}x per step; tangent vs width, both thermojax: "
                  f"{w['per_step_jax'] / t['per_step_jax']:.0f}x")  # fmt: skip


def _shell_table(shells):
    print("\n2. shell dynamics: matrix-free ShellHamiltonian + diffrax Dopri8 (rtol 1e-10) vs SciPy expm_multiply")
    for n, q in shells:
        for kind in ("hopping", "two_body"):
            s = shell_case(n, q, kind)
            tj, ts, mf = s["t_jax"], s["t_scipy"], s["mv_matrix_free"]
            print(f"   D = {s['dim']} {kind:>8} (nnz {s['nnz']}): thermojax {tj:.2f}s ({s['steps']} steps), "
                  f"expm_multiply {ts:.2f}s -> {ts / tj:.1f}x; max |dpsi| {s['err']:.1e}")  # fmt: skip
            csr, bcoo = s["mv_csr"], s["mv_bcoo"]
            print(f"      one product: matrix-free {mf * 1e3:.2f} ms, SciPy CSR {csr * 1e3:.2f} ms "
                  f"({csr / mf:.1f}x), JAX BCOO {bcoo * 1e3:.2f} ms ({bcoo / mf:.1f}x)")  # fmt: skip


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few steps, small shell (a smoke test of this script)")
    args = ap.parse_args()
    print(f"load average {os.getloadavg()}, jax {jax.__version__}, device {jax.devices()[0].platform}")
    if args.quick:
        cases = [(64, "tangent", 200, 50), (64, "width", 50, 20)]
        shells = [(5, 5)]
    else:
        cases = [(256, "tangent", 10_000, 1000), (256, "width", 300, 60)]
        cases += [(1024, "tangent", 10_000, 100, 64), (1024, "tangent", 60, 20), (1024, "width", 6, 3)]
        shells = [(8, 8)]
    _chain_table(cases)
    _shell_table(shells)
    t_grid = grid_reference()
    print(f"\n3. grid reference (single anharmonic oscillator): sesolve Eigen, 256 points, 201 times: {t_grid:.3f}s")
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
