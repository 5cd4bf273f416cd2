"""Chunks, keys and devices: the one loop that every batched computation in thermojax runs.

A batch of `n` independent items (trajectories, random initial states, parameter
points) is processed in chunks of a compiled, vmapped kernel:

* `iterate_chunks` yields the index array of each chunk, padded to the chunk
  size (padding indices are `>= n`; the kernel masks them with `idx < n`), laid
  across all devices with `jax.sharding` when there are several;
* `item_keys` gives item `i` the key `fold_in(key, i)`, so results do not
  depend on the chunk size or the device count;
* `map_chunks` runs a kernel over all chunks and concatenates its per-item
  outputs on the host (trimmed to `n`).

On one device the sharding is a no-op. On several (GPUs of one host, or all hosts
after `initialize_distributed`), each chunk's leading axis is split across a
one-axis device mesh and XLA's SPMD partitioner runs the kernel in parallel.
"""

import os
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

__all__ = [
    "batch_mesh",
    "batch_multiple",
    "shard_batch",
    "canonical_key",
    "item_keys",
    "iterate_chunks",
    "map_chunks",
    "initialize_distributed",
]


def batch_mesh() -> Mesh:
    """A 1-D mesh named `"batch"` over every device of every process."""
    return Mesh(np.asarray(jax.devices()), ("batch",))


def batch_multiple() -> int:
    """Chunk sizes that shard evenly are multiples of this (the device count)."""
    return jax.device_count()


def shard_batch(x: jax.Array) -> jax.Array:
    """Place `x`'s leading axis across all devices (a no-op on one device).

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


_UNSAFE_IMPLS = ("rbg", "unsafe_rbg")


def canonical_key(key) -> jax.Array:
    """A typed PRNG key whose `fold_in` and draws are safe under `vmap`.

    `rbg` and `unsafe_rbg` keys are not: under `vmap` their bit generator draws
    one stream for the whole batch from the first key, so per-item keys would give
    numbers that depend on the chunk size. Such a key is mapped deterministically to a
    `threefry2x32` key (its key data folded in word by word, outside `vmap`); other
    keys, typed or raw `uint32`, are returned as typed keys unchanged.

    Example:
        >>> k = canonical_key(jax.random.key(0, impl="rbg"))
        >>> str(jax.random.key_impl(k))
        'threefry2x32'
    """
    if not (hasattr(key, "dtype") and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)):
        key = jax.random.wrap_key_data(jnp.asarray(key, jnp.uint32))
    impl = str(jax.random.key_impl(key))
    if not any(impl.endswith(name) for name in _UNSAFE_IMPLS):
        return key
    words = np.asarray(jax.random.key_data(key)).ravel()
    out = jax.random.key(0)
    for w in words:
        out = jax.random.fold_in(out, int(w))
    return out


def item_keys(key, idx: jax.Array) -> jax.Array:
    """Keys `fold_in(key, i)` of the items `idx` (shape `idx.shape`)."""
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(idx)


def iterate_chunks(
    n: int,
    chunk_size: int | None,
    *,
    progress: bool = False,
    desc: str = "chunks",
    unit: str = "chunk",
    shard: bool = True,
) -> Iterator[tuple[slice, jax.Array]]:
    """Yield `(slice, idx)` for chunks of `n` items.

    `idx` holds `chunk` consecutive item indices (`int` array, the last chunk
    padded with indices `>= n`), sharded across devices when `shard` and there are
    several. `chunk` is `chunk_size` (default `n`) rounded up to a multiple of
    the device count. The slice is the chunk's range of real items.

    Raises:
        ValueError: If `n < 1` or `chunk_size < 1`.
    """
    if n < 1:
        raise ValueError(f"need at least one item, got n = {n}")
    chunk = n if chunk_size is None else int(chunk_size)
    if chunk < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    chunk = min(chunk, n)
    m = batch_multiple() if shard else 1
    chunk = -(-chunk // m) * m
    starts = range(0, n, chunk)
    int_dtype = jax.dtypes.canonicalize_dtype(jnp.int64)
    for start in tqdm(starts, desc=desc, unit=unit, disable=not progress, leave=False):
        idx = jnp.arange(start, start + chunk, dtype=int_dtype)
        yield slice(start, min(start + chunk, n)), (shard_batch(idx) if shard else idx)


def map_chunks(
    kernel: Callable[[jax.Array], object],
    n: int,
    chunk_size: int | None = None,
    *,
    progress: bool = False,
    desc: str = "chunks",
) -> object:
    """Run `kernel(idx)` over all chunks; concatenate its outputs on the host.

    `kernel` gets a padded, sharded index array of one chunk (see
    `iterate_chunks`) and returns a pytree of arrays with the chunk as leading
    axis; the result has the same pytree with leading axis `n` (padding dropped), as
    NumPy arrays.

    Example:
        >>> out = map_chunks(lambda idx: {"sq": idx**2}, 5, chunk_size=2)
        >>> out["sq"].tolist()
        [0, 1, 4, 9, 16]
    """
    parts = []
    for sl, idx in iterate_chunks(n, chunk_size, progress=progress, desc=desc):
        out = kernel(idx)
        take = sl.stop - sl.start
        parts.append(jax.tree.map(lambda x: np.asarray(x)[:take], out))
    return jax.tree.map(lambda *xs: np.concatenate(xs), *parts)


def initialize_distributed(**kwargs) -> bool:
    """Call `jax.distributed.initialize` when running under a multi-host launcher.

    Detected from the usual environment (`JAX_COORDINATOR_ADDRESS`, SLURM, Open MPI,
    or explicit `kwargs`); does nothing in a single process. Call before any JAX
    computation. Returns whether the distributed runtime was started.
    """
    launched = kwargs or any(
        k in os.environ for k in ("JAX_COORDINATOR_ADDRESS", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE")
    )
    if not launched:
        return False
    jax.distributed.initialize(**kwargs)
    return True
