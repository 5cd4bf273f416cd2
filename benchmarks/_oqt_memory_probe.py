"""Peak-memory probe for ``benchmarks/oqt.py`` section (d); run in its own process.

Streams ``--n-traj`` OQT SSE trajectories (reduced noise, eigenbasis, GOE Hamiltonian,
random pure state) through ``thermojax.trajectories.simulate_trajectories`` with a
``--memory-budget`` (the chunk size is computed from it) and the ensemble mean of
``|psi><psi|`` accumulated on the fly, then prints one JSON line ``RESULT {...}`` with
the process's resident memory (``/proc/self/status`` VmRSS/VmHWM, and
``resource.getrusage`` ru_maxrss) before and after the run, the chunk used, and the
sizes one would need to store the trajectories instead.

Run: python benchmarks/_oqt_memory_probe.py --d 256 --n-traj 100000 --memory-budget 67108864
"""

import argparse
import json
import resource
import time


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def _mem() -> dict:
    return {
        "vmrss": _status_kib("VmRSS") * 1024,
        "vmhwm": _status_kib("VmHWM") * 1024,
        "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--d", type=int, default=256)
    p.add_argument("--n-traj", type=int, default=100_000)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--dt", type=float, default=0.01)
    p.add_argument("--memory-budget", type=int, default=64 * 2**20)
    p.add_argument("--noise", default="reduced", choices=["reduced", "literal"])
    a = p.parse_args()

    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np

    from thermojax import EulerMaruyama, Options
    from thermojax.models.oqt import OQTSSE, OQTModel
    from thermojax.spectra import goe_matrix
    from thermojax.trajectories import estimate_memory, simulate_trajectories

    kh, kp = jax.random.split(jax.random.key(0))
    h = goe_matrix(kh, a.d)
    z = jax.random.normal(kp, (2, a.d))
    psi = (z[0] + 1j * z[1]) / jnp.linalg.norm(z[0] + 1j * z[1])
    model = OQTModel.microcanonical(h, psi, alpha_N=0.5)
    psi_e = model.eigensystem.ket_to_eigenbasis(psi)
    sse = OQTSSE(model, noise=a.noise)
    ts = np.array([0.0, a.steps * a.dt])
    fixed, per = estimate_memory(sse, psi_e, ts, method=EulerMaruyama(a.dt), accumulate_outer=True)
    jax.block_until_ready(psi_e)
    before = _mem()
    t0 = time.perf_counter()
    res = simulate_trajectories(
        sse, psi_e, ts, jax.random.key(1), ntraj=a.n_traj, method=EulerMaruyama(a.dt), accumulate_outer=True,
        options=Options(memory_budget=a.memory_budget),
    )
    rho = np.asarray(res.states)
    wall = time.perf_counter() - t0
    after = _mem()
    item = 16  # complex128
    out = {
        "d": a.d,
        "n_traj": a.n_traj,
        "steps": a.steps,
        "noise": a.noise,
        "memory_budget": a.memory_budget,
        "chunk_size": int(res.ensemble.chunk_size),
        "n_chunks": -(-a.n_traj // int(res.ensemble.chunk_size)),
        "wall_s": wall,
        "before": before,
        "after": after,
        "estimate_fixed": int(fixed),
        "estimate_per_traj": int(per),
        "unchunked_estimate": int(fixed + a.n_traj * per),
        "stored_kets": a.n_traj * len(ts) * a.d * item,
        "stored_dms": a.n_traj * len(ts) * a.d * a.d * item,
        "trace_final": float(np.real(np.trace(rho[-1]))),
        "n_used": int(np.asarray(res.n)),
    }
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
