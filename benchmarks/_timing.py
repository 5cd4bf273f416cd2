"""Timing helper shared by the benchmark scripts (run them as `python benchmarks/NAME.py`)."""

import time

import jax
import numpy as np


def timed(fn, repeat=1):
    """`(best wall seconds over `repeat` calls, last output)`, each call blocked until ready."""
    best, out = np.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t0)
    return best, out


def rounds(fns: dict, n: int):
    """`n` rounds calling each fn in turn, each call `timed` once: `({name: [seconds per
    round]}, {name: last output})`. Interleaving spreads a shared machine's disturbances
    over all of them, and round r of one fn can be paired with round r of another."""
    times, out = {k: [] for k in fns}, {}
    for _ in range(n):
        for k, fn in fns.items():
            t, out[k] = timed(fn)
            times[k].append(t)
    return times, out
