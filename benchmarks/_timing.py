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
