"""One command for the GPU figures (issue 11): SSE trajectory-steps/s, the Fig. 4 batch,
mesolve on the Kerr problem, the largest model sizes that fit, and what bounds the SSE.

On a GPU (`jax.default_backend() == "gpu"`) it measures, and prints as one table with the
device name:

* trajectory-steps/s of the OQT SSE (GOE H, microcanonical chi, alpha_N = 0.5, reduced
  noise, Schrodinger picture, Euler-Maruyama dt = 0.01, populations streamed) at d = 64 and
  256 with 10^5 trajectories, in complex64 and complex128
  (`simulate_trajectories(..., options=Options(precision="single"|"double", chunk_size=...))`);
  the moonshot is >= 1e9 trajectory-steps/s at d = 64, complex64, on one H100;
* the Fig. 4 batch: 15000 random states of subunit 1 (N = 2, n = 500) through one
  eigendecomposition, D^2 of each (the `thermojax run heat_chain_fig4` code path);
* `mesolve` on the driven Kerr cavity of `benchmarks/solvers.py` (N = 50, Tsit5,
  rtol 1e-6, atol 1e-8);
* the largest sizes that fit in the device's free memory by the project's own estimates
  (those the command line refuses with), and a run of the largest SSE chunk at d = 256;
* the bounds of one SSE step from XLA's cost model of the compiled step (flops and bytes
  per trajectory-step, the random-number share) and measured timings of its parts.

On a CPU it prints that it skipped. `--force-cpu` runs every section at tiny sizes as a
smoke test; `--bounds` runs only the bounds section (on any device: on a CPU these are
the CPU measurements the README's moonshot estimate is made from).

Run:  python benchmarks/gpu.py [--force-cpu] [--bounds] [--ntraj 100000] [--steps 100]
Timings are wall-clock: warm = best of --repeats after a compiling first call.
"""

import argparse
import os
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import thermojax as tj  # noqa: E402
from thermojax._checks import available_memory, format_bytes  # noqa: E402
from thermojax.models.heat_chain import memory_estimate  # noqa: E402
from thermojax.models.oqt import OQTSSE, OQTModel  # noqa: E402
from thermojax.spectra import goe_matrix, random_ket  # noqa: E402
from thermojax.trajectories import estimate_memory, simulate_trajectories  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
MOONSHOT = 1e9  # trajectory-steps/s at d = 64, complex64, one H100
H100 = {"hbm_bytes_per_s": 3.35e12, "fp32_flops": 6.7e13, "int32_ops": 3.35e13}  # H100 SXM data sheet
ROWS: list[tuple] = []


def row(what, size, value, unit, compile_s=float("nan"), note=""):
    ROWS.append((what, size, value, unit, compile_s, note))
    print(f"  {what:<34}{size:<22}{value:>12.4g} {unit:<16}{compile_s:>9.2f}  {note}", flush=True)


def timed(fn, repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    cold = time.perf_counter() - t0
    warm = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        warm = min(warm, time.perf_counter() - t0)
    return warm, max(cold - warm, 0.0)


def sse_problem(d, seed=0):
    kh, kp = jax.random.split(jax.random.key(seed))
    psi = random_ket(kp, d)
    model = OQTModel.microcanonical(goe_matrix(kh, d), psi, alpha_N=0.5)
    return OQTSSE(model), model.eigensystem.ket_to_eigenbasis(psi)


def _pops(t, y):
    return jnp.abs(y) ** 2


def section_sse(args):
    dt, steps = 0.01, args.steps
    ts = np.array([0.0, steps * dt])
    out = {}
    for d in args.sse_dims:
        sse, psi = sse_problem(d)
        for precision, name in (("single", "complex64"), ("double", "complex128")):
            opts = tj.Options(precision=precision)
            fixed, per = estimate_memory(sse, psi, ts, method=tj.EulerMaruyama(dt), observables={"p": _pops},
                                         options=opts)
            chunk = int(min(args.ntraj, max(1, (0.25 * available_memory() - fixed) // per)))
            opts = tj.Options(precision=precision, chunk_size=chunk)

            def run(sse=sse, psi=psi, opts=opts):
                res = simulate_trajectories(sse, psi, ts, jax.random.key(1), ntraj=args.ntraj,
                                            method=tj.EulerMaruyama(dt), observables={"p": _pops}, options=opts)
                return res.ensemble.mean["p"]

            warm, comp = timed(run, args.repeats)
            rate = args.ntraj * steps / warm
            out[(d, name)] = rate
            note = f"chunk {chunk}"
            if d == 64 and name == "complex64":
                note += f"; {rate / MOONSHOT:.3g} of the 1e9 moonshot"
            row(f"OQT SSE, {name}", f"d={d}, M={args.ntraj}", rate, "traj-steps/s", comp, note)
    return out


def section_fig4(args):
    from thermojax.cli import load_config
    from thermojax.experiments.heat_chain.histogram import _histogram

    _, cfg = load_config("heat_chain_fig4", args.fig4_overrides)
    n = args.fig4_states
    t0 = time.perf_counter()
    out = _histogram(cfg, n)
    wall = time.perf_counter() - t0
    row("Fig. 4 batch (heat_chain_fig4 path)", f"N=2, n={cfg.model.n_levels}, {n} st.", n / wall, "states/s",
        note=f"{wall:.1f} s in all (eigh, compile, chunks of {cfg.chunk_size}); median D2 {np.median(out['D2']):.3g}")


def section_mesolve(args):
    import diffrax as dfx

    sys.path.insert(0, HERE)
    from solvers import operators

    H, ops, psi0, n_op = operators()
    ts = np.linspace(0.0, 10.0, 100)
    method = tj.ODE(dfx.Tsit5(), dfx.PIDController(rtol=1e-6, atol=1e-8))

    def run():
        return tj.mesolve(H, ops, psi0, ts, e_ops=[n_op], method=method, options=tj.Options(save_states=False)).expect

    warm, comp = timed(run, args.repeats)
    row("mesolve, driven Kerr (solvers.py)", "N=50, 100 times", warm, "s", comp, "Tsit5, rtol 1e-6, atol 1e-8")


def section_largest(args):
    free = available_memory()
    n = 1
    while memory_estimate(3, 2 * n) <= free:
        n *= 2
    lo, hi = n, 2 * n
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if memory_estimate(3, mid) <= free else (lo, mid)
    row("largest heat chain (N=3, dense eigh)", f"free {format_bytes(free)}", lo, "levels n",
        note=f"d = {3 * lo}; memory_estimate, the refusal's own estimate")
    d_me = int(np.sqrt(free / (16 * 6)))
    row("largest OQT closed form / GOE eigh", "", d_me, "dimension d", note="16 d^2 x 6 bytes")
    dt, ts = 0.01, np.array([0.0, 10 * 0.01])
    for d in (64, 256):
        sse, psi = sse_problem(d)
        fixed, per = estimate_memory(sse, psi, ts, method=tj.EulerMaruyama(dt), observables={"p": _pops},
                                     options=tj.Options(precision="single"))
        row("largest SSE chunk, complex64", f"d={d}", (free - fixed) // per, "trajectories",
            note=f"{per} B per trajectory (estimate_memory)")
    # run the largest d = 256 chunk the sweep defaults would use (a quarter of free memory), 10 steps
    sse, psi = sse_problem(256)
    chunk = int(min(args.largest_cap, max(1, (0.25 * free - fixed) // per)))
    opts = tj.Options(precision="single", chunk_size=chunk)
    t0 = time.perf_counter()
    res = simulate_trajectories(sse, psi, ts, jax.random.key(2), ntraj=chunk, method=tj.EulerMaruyama(dt),
                                observables={"p": _pops}, options=opts)
    jax.block_until_ready(res.ensemble.mean["p"])
    row("ran one SSE chunk, complex64", f"d=256, {chunk} traj.", time.perf_counter() - t0, "s",
        note=f"{int(res.ensemble.n)} valid; 10 steps incl. compile")


def section_bounds(args):
    """XLA's cost model of one compiled SSE step and timings of its parts (d = 64, complex64)."""
    from thermojax.trajectories._integrate import _sample_noise

    d, dt, batch, steps = 64, 0.01, args.bounds_batch, args.bounds_steps
    sse64, psi = sse_problem(d)
    sse = jax.tree.map(lambda x: x.astype(jnp.float32) if isinstance(x, jax.Array) and x.dtype == jnp.float64 else x,
                       sse64)
    y0 = jnp.broadcast_to(psi.astype(jnp.complex64), (batch, d))
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(1), i))(jnp.arange(batch))
    struct, sdt = sse.noise_shape(), jnp.float32(np.sqrt(dt))

    def noise(k, n):
        return _sample_noise(jax.random.fold_in(k, n), struct, sdt)

    def update(y, dw):
        return y + sse.drift(0.0, y, None) * jnp.complex64(dt) + sse.diffusion_mv(0.0, y, None, dw)

    def full_step(ys, n):
        return jax.vmap(lambda k, y: update(y, noise(k, n)))(keys, ys)

    def cost(fn, *a):
        c = jax.jit(fn).lower(*a).compile().cost_analysis()
        c = c[0] if isinstance(c, list) else c
        return float(c.get("flops", np.nan)) / batch, float(c.get("bytes accessed", np.nan)) / batch

    dw0 = jax.vmap(lambda k: noise(k, 0))(keys)
    f_all, b_all = cost(full_step, y0, 0)
    f_rng, b_rng = cost(lambda n: jax.vmap(lambda k: noise(k, n))(keys), 0)
    f_upd, b_upd = cost(jax.vmap(update), y0, dw0)

    def scan_of(body):
        return jax.jit(lambda y: jax.lax.scan(lambda c, n: (body(c, n), None), y, jnp.arange(steps))[0])

    rng_only = scan_of(lambda c, n: c + jax.vmap(lambda k: noise(k, n)["oqt"][:, 0])(keys).astype(c.dtype))
    no_rng = scan_of(lambda c, n: jax.vmap(update)(c, dw0))
    full = scan_of(full_step)
    rates = {}
    for name, fn in (("full step", full), ("random numbers only", rng_only), ("step without RNG", no_rng)):
        warm, _ = timed(lambda fn=fn: fn(y0), args.repeats)
        rates[name] = batch * steps / warm
    one = jnp.broadcast_to(psi.astype(jnp.complex64), (1, d))
    keys1 = keys[:1]
    tiny = jax.jit(lambda y: jax.lax.scan(
        lambda c, n: (jax.vmap(lambda k, y: update(y, noise(k, n)))(keys1, c), None), y, jnp.arange(steps))[0])
    warm1, _ = timed(lambda: tiny(one), args.repeats)
    per_step = warm1 / steps
    dev = jax.devices()[0]
    tag = f"{dev.platform} measurement"
    row("SSE step, XLA cost model", "d=64, complex64", f_all, "flop/traj-step", note=f"RNG {f_rng:.0f}, update "
        f"{f_upd:.0f} (cost model of this backend's compiled HLO)")
    row("SSE step, XLA cost model", "d=64, complex64", b_all, "bytes/traj-step", note=f"RNG {b_rng:.0f}, update "
        f"{b_upd:.0f}")
    for name, r in rates.items():
        row(f"SSE {name}", f"d=64, batch {batch}", r, "traj-steps/s", note=tag)
    row("SSE step at batch 1 (overhead)", "d=64", per_step * 1e6, "us/step", note=tag)
    share = rates["full step"] / rates["random numbers only"]
    print(f"\n  bounds ({tag}; H100 figures are data-sheet values, not measured):")
    print(f"    random numbers take {share:.0%} of a step here ({rates['full step']:.3g} vs "
          f"{rates['random numbers only']:.3g} traj-steps/s for the draws alone)")
    print(f"    memory traffic: {b_all:.0f} B/traj-step -> H100 HBM3 3.35 TB/s allows "
          f"{H100['hbm_bytes_per_s'] / b_all:.3g} traj-steps/s if every byte the cost model counts goes to HBM")
    print(f"    arithmetic: {f_all:.0f} flop/traj-step -> 67 TFLOP/s fp32 allows {H100['fp32_flops'] / f_all:.3g}")
    print(f"    per-step overhead {per_step * 1e6:.1f} us here; at 1e5 trajectories per step a GPU needs <= 100 us "
          "per step (all launches of one step) for 1e9")
    return {"flops": f_all, "bytes": b_all, **rates, "per_step_s": per_step}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--force-cpu", action="store_true", help="run every section on the CPU at tiny sizes (smoke)")
    p.add_argument("--bounds", action="store_true", help="only the bounds section, on any backend")
    p.add_argument("--ntraj", type=int, default=100_000)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    backend = jax.default_backend()
    dev = jax.devices()[0]
    print(f"device: {dev.device_kind} ({dev.platform}, {jax.device_count()} device(s)); jax {jax.__version__}; "
          f"load average {os.getloadavg()[0]:.2f}")
    args.sse_dims, args.fig4_states, args.fig4_overrides = (64, 256), 15000, ["progress=false"]
    args.bounds_batch, args.bounds_steps, args.largest_cap = 8192, 100, 10**7
    sections = [section_sse, section_fig4, section_mesolve, section_largest, section_bounds]
    if args.bounds:
        args.bounds_batch = 1024 if backend == "cpu" else args.bounds_batch
        sections = [section_bounds]
    elif backend != "gpu":
        if not args.force_cpu:
            print(f"no GPU: jax.default_backend() is {backend!r}; nothing measured. Run this on a GPU machine "
                  "(pip install -e '.[cuda]'), or pass --force-cpu for a smoke run at tiny sizes.")
            return
        args.ntraj, args.steps, args.sse_dims, args.repeats = 256, 10, (8,), 1
        args.fig4_states = 16
        args.fig4_overrides = ["progress=false", "model.n_levels=40", "model.coupling=1e-3", "chunk_size=8",
                               "d2_times.n_times=21"]
        args.bounds_batch, args.bounds_steps, args.largest_cap = 64, 10, 1000
        print("--force-cpu: tiny sizes, a smoke test of the script; these numbers are not GPU figures")
    print(f"\n  {'what':<34}{'size':<22}{'value':>12} {'unit':<16}{'compile s':>9}  note")
    for section in sections:
        section(args)
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
