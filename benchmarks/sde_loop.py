"""Throughput of the two Euler–Maruyama integrators of `thermojax.trajectories`.

Measures trajectory-steps per second of `method="scan"` (nested `lax.scan`) and
`method="diffrax"` (`diffrax.Euler` on `MultiTerm(ODETerm, ControlTerm)`, `StepTo`,
`SaveAt(ts)`) for a toy complex SDE

    dpsi = (-i H psi - (gamma/2) psi) dt + sqrt(gamma) psi * dW,   dW real, shape (d,)

with a dense random Hermitian H (d = 16, 64, 256), batches sized for a 2-core CPU.
This is the measurement (diffrax issue #517) that justifies keeping the scan path.

Run: python benchmarks/sde_loop.py [--steps 200] [--repeats 3] [--brownian matched ...]
"""

import argparse
import time

import equinox as eqx
import jax
import jax.numpy as jnp

from thermojax import DiffraxSDE, EulerMaruyama
from thermojax.trajectories import AbstractSDE, solve_trajectory

jax.config.update("jax_enable_x64", True)


class ToyDephasing(AbstractSDE):
    hamiltonian: jax.Array
    gamma: jax.Array

    def drift(self, t, y, args):
        return -1j * (self.hamiltonian @ y) - 0.5 * self.gamma * y

    def diffusion_mv(self, t, y, args, dw):
        return jnp.sqrt(self.gamma) * y * dw

    def noise_shape(self):
        return jax.ShapeDtypeStruct((self.hamiltonian.shape[0],), jnp.float64)


def _model(d):
    k1, k2 = jax.random.split(jax.random.key(0))
    a = jax.random.normal(k1, (d, d)) + 1j * jax.random.normal(k2, (d, d))
    h = (a + a.conj().T) / (2 * jnp.sqrt(d))
    psi0 = jnp.ones(d, jnp.complex128) / jnp.sqrt(d)
    return ToyDephasing(h, jnp.array(0.1)), psi0


def measure(d, batch, n_steps, method, brownian, repeats):
    sde, psi0 = _model(d)
    dt = 0.01
    ts = jnp.array([0.0, n_steps * dt / 2, n_steps * dt])

    @eqx.filter_jit
    def run(sde, keys):
        def one(k):
            meth = EulerMaruyama(dt) if method == "scan" else DiffraxSDE(dt, brownian=brownian)
            ys, div = solve_trajectory(sde, psi0, ts, k, method=meth)
            return ys[-1], div

        return jax.vmap(one)(keys)

    keys = jax.random.split(jax.random.key(1), batch)
    jax.block_until_ready(run(sde, keys))  # compile
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(run(sde, keys))
        best = min(best, time.perf_counter() - t)
    return batch * n_steps / best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--brownian",
        nargs="+",
        default=["matched", "unsafe", "virtual"],
        choices=["matched", "unsafe", "virtual"],
        help="diffrax Brownian paths to compare with the scan path",
    )
    opts = parser.parse_args()
    print(f"backend={jax.default_backend()} devices={jax.devices()} steps={opts.steps}")
    print("trajectory-steps per second (best of repeats); ratio = scan / diffrax")
    head = f"{'d':>5} {'batch':>6} {'scan':>10}"
    for b in opts.brownian:
        head += f" {'diffrax/' + b:>17} {'ratio':>6}"
    print(head)
    for d, batch in ((16, 256), (64, 128), (256, 32)):
        scan = measure(d, batch, opts.steps, "scan", "matched", opts.repeats)
        line = f"{d:>5} {batch:>6} {scan:>10.3e}"
        for b in opts.brownian:
            dfx = measure(d, batch, opts.steps, "diffrax", b, opts.repeats)
            line += f" {dfx:>17.3e} {scan / dfx:>6.2f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
