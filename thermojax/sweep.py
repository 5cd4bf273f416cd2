"""Spreading batches over devices with JAX's own sharding (no home-made scheduler).

On one device these helpers are no-ops. On several (GPUs of one host, or all hosts
after :func:`initialize_distributed`), :func:`shard_batch` lays the leading axis of
an array across a one-axis device mesh, and jitted code that consumes it runs in
parallel (XLA's SPMD partitioner inserts the communication).
"""

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def batch_mesh() -> Mesh:
    """A 1-D mesh named ``"batch"`` over every device of every process."""
    return Mesh(np.asarray(jax.devices()), ("batch",))


def batch_multiple() -> int:
    """Batch sizes that shard evenly are multiples of this (the device count)."""
    return jax.device_count()


def shard_batch(x: jax.Array) -> jax.Array:
    """Place ``x``'s leading axis across all devices (a no-op on one device).

    Raises:
        ValueError: If the leading axis is not a multiple of the device count.
    """
    n = jax.device_count()
    if n == 1:
        return x
    if x.shape[0] % n:
        raise ValueError(
            f"leading axis {x.shape[0]} is not a multiple of the {n} devices; "
            "choose a chunk size that is (see sweep.batch_multiple())"
        )
    spec = PartitionSpec("batch", *([None] * (x.ndim - 1)))
    return jax.device_put(x, NamedSharding(batch_mesh(), spec))


def initialize_distributed(**kwargs) -> bool:
    """Call ``jax.distributed.initialize`` when running under a multi-host launcher.

    Detected from the usual environment (``JAX_COORDINATOR_ADDRESS``, SLURM, Open MPI,
    or explicit ``kwargs``); does nothing in a single process. Call before any JAX
    computation. Returns whether the distributed runtime was started.
    """
    launched = kwargs or any(
        k in os.environ for k in ("JAX_COORDINATOR_ADDRESS", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE")
    )
    if not launched:
        return False
    jax.distributed.initialize(**kwargs)
    return True
