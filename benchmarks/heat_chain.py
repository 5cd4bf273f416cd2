"""Benchmark: exact evolution of the heat-chain Fig. 2 problem, and the Fig. 4 batch.

Problem (paper Fig. 2): N = 3, n = 500 (d = 1500), delta eps = 0.05, lambda = 5e-5, one
random pure state of subunit 1, populations P_mu(t) at 41 times in [0, 2/kappa].
Every method is asked for P_mu accurate to 1e-6; the error printed is the largest
|Delta P_mu| against thermojax's eigendecomposition result.

    thermojax (default path)   eigendecomposition propagator (eigh once + 41 products)
    thermojax (diffrax path)   Tsit5 in the interaction picture, PID rtol = atol = 1e-9
    QuTiP sesolve              CSR Hamiltonian, adams, atol = rtol = 1e-9: the named
                               baseline with H as given, and again with the gap removed
    SciPy expm_multiply        CSR Hamiltonian with the gap removed, 41 equal times

"Gap removed" means H - Delta E: a global phase that leaves P_mu unchanged and spares
the integrator ~2000 fast oscillations. It is a trick a user must know; we show it
because it is the fastest baseline we can give QuTiP and SciPy (expm_multiply with H
as given costs ~||H|| t = 1.3e4 Taylor steps and is not run).

Fig. 4 batch: D² (T = 5/kappa, 201 times) for many random states of subunit 1 at
N = 2, n = 500, through one eigen-propagator, against a per-state NumPy loop
(timed on a few states and scaled).

Run:  python benchmarks/heat_chain.py [--states 15000] [--skip-qutip]
Timings are wall-clock seconds of warm (compiled) calls unless marked 'cold'.
"""

import argparse
import time

import diffrax as dfx
import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse
import scipy.sparse.linalg
from _timing import timed  # benchmarks/_timing.py (the script folder is on sys.path)

from thermojax import ODE, Options, solve_ode
from thermojax.experiments.heat_chain.histogram import _d2_chunk
from thermojax.models.heat_chain import HeatChain, deviation_d2, ham_populations, random_band_state


def fig2(args):
    k_chain, k_state = jax.random.split(jax.random.key(0))
    chain = HeatChain.random(k_chain, 3, 500)
    psi0 = chain.local_state(random_band_state(k_state, 500))
    ts = jnp.linspace(0, 2 / float(chain.kappa), 41)
    rows = {}

    @jax.jit
    def eig_path(chain, psi0, ts):
        res = chain.eigensystem().evolve(psi0, ts, e_ops=chain.populations, save_states=False, kind="ket")
        return res.expect.T

    cold, _ = timed(lambda: eig_path(chain, psi0, ts))
    t, p_ref = timed(lambda: eig_path(chain, psi0, ts), repeat=3)
    rows["thermojax default (eigh + propagate)"] = (t, 0.0, f"cold {cold:.2f} s")

    ctrl = dfx.PIDController(rtol=1e-9, atol=1e-9)
    tj_options = Options(save_states=False)

    @jax.jit
    def dfx_path(chain, psi0, ts):
        return solve_ode(chain.interaction_vector_field, psi0, ts, method=ODE(stepsize_controller=ctrl),
                         e_ops=chain.populations, options=tj_options)

    cold, _ = timed(lambda: dfx_path(chain, psi0, ts))
    t, res = timed(lambda: dfx_path(chain, psi0, ts), repeat=2)
    err = float(jnp.max(jnp.abs(res.expect.T - p_ref)))
    rows["thermojax diffrax (interaction picture)"] = (t, err, f"{int(res.stats['num_steps'])} steps")

    h = np.asarray(chain.hamiltonian()) - float(chain.gap) * np.eye(chain.dim)
    hs = scipy.sparse.csr_matrix(np.where(np.abs(h) > 0, h, 0))
    psi_np = np.asarray(psi0)
    tsn = np.asarray(ts)

    def pops(states):
        return (np.abs(np.asarray(states)) ** 2).reshape(len(states), 3, 500).sum(-1)

    t, states = timed(lambda: scipy.sparse.linalg.expm_multiply(
        -1j * hs, psi_np, start=0, stop=tsn[-1], num=len(tsn), endpoint=True))
    rows["SciPy expm_multiply (gap removed)"] = (t, float(np.abs(pops(states) - p_ref).max()), "")

    if not args.skip_qutip:
        import qutip

        pq = qutip.Qobj(psi_np.reshape(-1, 1), dims=[[chain.dim], [1]])
        opts = {"atol": 1e-9, "rtol": 1e-9, "nsteps": 10**8, "store_states": True}
        h_given = scipy.sparse.csr_matrix(np.asarray(chain.hamiltonian()))
        for label, hmat in (("QuTiP sesolve (H as given)", h_given),
                            ("QuTiP sesolve (gap removed)", hs)):
            hq = qutip.Qobj(hmat, dims=[[chain.dim], [chain.dim]])
            t, out = timed(lambda: qutip.sesolve(hq, pq, tsn, options=opts))
            qs = np.stack([s.full().ravel() for s in out.states])
            rows[label] = (t, float(np.abs(pops(qs) - p_ref).max()), "adams, atol = rtol = 1e-9")

    base = rows["thermojax default (eigh + propagate)"][0]
    print(f"\nFig. 2 problem: d = {chain.dim}, 41 save times to t = 2/kappa = {float(ts[-1]):.0f}")
    print(f"{'method':<42}{'time [s]':>10}{'max|dP|':>11}{'ratio to default':>18}  note")
    for name, (t, err, note) in rows.items():
        print(f"{name:<42}{t:>10.3f}{err:>11.1e}{t / base:>18.1f}  {note}")
    return rows


def fig4(args):
    k_chain, k_states = jax.random.split(jax.random.key(0))
    chain = HeatChain.random(k_chain, 2, 500)
    ts = jnp.linspace(0, 5 / float(chain.kappa), 201)
    t_eigh, prop = timed(lambda: chain.eigensystem())
    chunk = args.chunk
    keys = jax.vmap(lambda i: jax.random.fold_in(k_states, i))(jnp.arange(args.states))
    psi = jax.vmap(lambda k: random_band_state(k, 500))(keys)
    _d2_chunk(prop, chain, k_states, jnp.arange(chunk), ts).block_until_ready()  # compile

    def batched():
        return jnp.concatenate([_d2_chunk(prop, chain, k_states, jnp.arange(i, i + chunk), ts)
                                for i in range(0, args.states, chunk)])[: args.states]

    t_batch, d2 = timed(batched)

    # Baseline: a straightforward NumPy loop, one state at a time, full propagation.
    w, e = np.asarray(prop.vectors), np.asarray(prop.energies)
    phases = np.exp(-1j * np.outer(np.asarray(ts), e))  # (T, d)
    p1_ham = np.asarray(ham_populations(chain.kappa, jnp.array([1.0, 0.0]), ts))[:, 0]

    def numpy_one(psi_band):
        psi0 = np.concatenate([psi_band, np.zeros(500)])
        c = w.conj().T @ psi0
        states = (phases * c) @ w.T  # (T, d)
        p1 = (np.abs(states[:, :500]) ** 2).sum(-1)
        return float(deviation_d2(ts, jnp.asarray(p1), jnp.asarray(p1_ham)))

    n_np = 20
    t0 = time.perf_counter()
    ref = [numpy_one(np.asarray(psi[i])) for i in range(n_np)]
    t_np = (time.perf_counter() - t0) / n_np * args.states
    np.testing.assert_allclose(np.asarray(d2[:n_np]), ref, rtol=1e-8)
    print(f"\nFig. 4 batch: {args.states} states, N = 2, n = 500, 201 times, device {jax.default_backend()}")
    print(f"  diagonalisation (once)          {t_eigh:8.2f} s")
    print(f"  thermojax batched propagation   {t_batch:8.2f} s  ({args.states / t_batch:.0f} states/s)")
    print(f"  NumPy per-state loop (scaled)   {t_np:8.2f} s  -> ratio {t_np / t_batch:.1f}x")
    print(f"  D² median {float(jnp.median(d2)):.3e}, agrees with NumPy on {n_np} states to 1e-8")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--states", type=int, default=15000, help="Fig. 4 batch size")
    parser.add_argument("--chunk", type=int, default=500)
    parser.add_argument("--skip-qutip", action="store_true")
    parser.add_argument("--skip-fig4", action="store_true")
    args = parser.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}")
    fig2(args)
    if not args.skip_fig4:
        fig4(args)


if __name__ == "__main__":
    main()
