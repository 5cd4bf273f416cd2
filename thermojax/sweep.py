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

**Parameter sweeps** (`thermojax sweep`, `docs/sweeps.md`) are built on the same
pieces:

* `expand_grid` turns a config and grid axes (`[sweep]` table, `--grid`,
  `--seeds`) into validated `Point`s, each with the hash of its resolved config;
* an experiment that registers a `PointKernel` (`register_kernel`) names the config
  keys that enter its computation as arrays (a rate, a coupling; the seed always does):
  points that differ only in those run as one compiled, `vmap`-ped group, in chunks laid
  across this process's devices with `NamedSharding` (`shard_map` over a one-axis
  mesh); points that differ in anything else (sizes) are separate groups. Experiments
  without a kernel run point by point through their `run`;
* under `jax.distributed` (`initialize_distributed`) process `p` of `P` takes the
  points whose index is `p` modulo `P`; process 0 writes the summary;
* `SweepStore` keeps one `.npz` record per completed point (arrays, headline
  numbers, resolved config, config hash; no pickle), written atomically, verified on
  reading; a rerun skips valid records and redoes missing or corrupt ones.
"""

import contextlib
import copy
import csv
import dataclasses
import datetime
import functools
import hashlib
import io
import itertools
import json
import os
import socket
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import tomllib
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from pydantic import Field
from tqdm.auto import tqdm

from .config import ConfigError, ExperimentConfig, Section, validate

__all__ = [
    "batch_mesh",
    "batch_multiple",
    "shard_batch",
    "canonical_key",
    "item_keys",
    "iterate_chunks",
    "map_chunks",
    "initialize_distributed",
    "process_local",
    "SweepTable",
    "Point",
    "parse_grid",
    "expand_grid",
    "config_hash",
    "PointKernel",
    "PointResult",
    "register_kernel",
    "point_kernel",
    "run_point",
    "SweepStore",
    "CorruptRecord",
    "SweepReport",
    "run_sweep",
]


_LOCAL_ONLY: list[bool] = []


def _devices() -> list:
    return jax.local_devices() if _LOCAL_ONLY else jax.devices()


@contextlib.contextmanager
def process_local():
    """Within this block `batch_mesh`, `batch_multiple` and `shard_batch` (and so
    every chunk loop) use this process's devices only.

    A sweep splits its points between processes, and each process shards its own
    chunks over its own devices; a kernel that sharded over every host's devices would
    wait for processes that are computing other points.

    Example:
        >>> with process_local():
        ...     batch_multiple() == jax.local_device_count()
        True
    """
    _LOCAL_ONLY.append(True)
    try:
        yield
    finally:
        _LOCAL_ONLY.pop()


def batch_mesh() -> Mesh:
    """A 1-D mesh named `"batch"` over every device of every process (of this process
    only inside `process_local`)."""
    return Mesh(np.asarray(_devices()), ("batch",))


def batch_multiple() -> int:
    """Chunk sizes that shard evenly are multiples of this (the device count)."""
    return len(_devices())


def shard_batch(x: jax.Array) -> jax.Array:
    """Place `x`'s leading axis across all devices (a no-op on one device).

    Raises:
        ValueError: If the leading axis is not a multiple of the device count.
    """
    n = batch_multiple()
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
    """Call `jax.distributed.initialize` when running under a multi-process launcher.

    Detected from the usual environment: an explicit coordinator
    (`JAX_COORDINATOR_ADDRESS`, with `JAX_NUM_PROCESSES` and `JAX_PROCESS_ID`), SLURM
    (`SLURM_NTASKS` > 1) or Open MPI (`OMPI_COMM_WORLD_SIZE` > 1), whose process count,
    rank and coordinator JAX reads itself; or explicit `kwargs` (those of
    `jax.distributed.initialize`). Does nothing in a single process or when the runtime
    is already up. Call before any JAX computation. Returns whether the distributed
    runtime is running.

    Raises:
        ValueError: If `JAX_NUM_PROCESSES` or `JAX_PROCESS_ID` is not an integer.
    """
    if jax.distributed.is_initialized():
        return True
    env = os.environ
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if "JAX_COORDINATOR_ADDRESS" in env:
        for name, var in (("num_processes", "JAX_NUM_PROCESSES"), ("process_id", "JAX_PROCESS_ID")):
            if name not in kwargs and var in env:
                try:
                    kwargs[name] = int(env[var])
                except ValueError:
                    raise ValueError(f"environment variable {var} must be an integer, got {env[var]!r}") from None

    def _more_than_one(var):
        try:
            return int(env.get(var, "1")) > 1
        except ValueError:
            return False

    launched = bool(kwargs) or "JAX_COORDINATOR_ADDRESS" in env or any(
        _more_than_one(v) for v in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE")
    )
    if not launched:
        return False
    jax.distributed.initialize(**kwargs)
    return True


# ----------------------------------------------------------------------------------
# the grid
# ----------------------------------------------------------------------------------


class SweepTable(Section):
    """The `[sweep]` table of a config: the grid `thermojax sweep` runs.

    Attributes:
        grid: Config key (dotted, e.g. `"model.coupling"`) -> list of values. The
            points are the Cartesian product of the axes, in the order given.
        seeds: Repeat every point with the seeds `seed, seed + 1, ..., seed + seeds - 1`
            (an axis `seed` last).
        chunk_size: Points per compiled call (rounded up to a multiple of the
            process's device count; default: 4 per device, fewer if memory is short).
        headline: The headline number drawn against each axis in the summary figures
            (default: the experiment's).
    """

    grid: dict[str, list[Any]] = Field(default_factory=dict, description="config key -> values")
    seeds: int | None = Field(None, ge=1, description="seeds per grid point")
    chunk_size: int | None = Field(None, ge=1, description="points per compiled call")
    headline: str | None = Field(None, description="headline number of the summary figures")


@dataclasses.dataclass(frozen=True)
class Point:
    """One point of a sweep.

    Attributes:
        index: Position in the grid (axes in order, the last varying fastest).
        values: Grid key -> value at this point.
        config: The validated config of this point.
        config_hash: SHA-256 of the resolved config (`config_hash`).
    """

    index: int
    values: dict[str, Any]
    config: ExperimentConfig
    config_hash: str

    @property
    def id(self) -> str:
        """The record name: the first 16 hex digits of the config hash."""
        return self.config_hash[:16]

    @property
    def label(self) -> str:
        """`key=value, ...` of the grid values (`base config` for a one-point sweep)."""
        return ", ".join(f"{k}={v!r}" for k, v in self.values.items()) or "base config"


_UNHASHED = ("progress", "sweep")  # keys that do not change a point's numbers


def _hashed_dump(cfg) -> dict:
    data = cfg if isinstance(cfg, dict) else cfg.model_dump(mode="json")
    return {k: v for k, v in data.items() if k not in _UNHASHED}


def config_hash(cfg) -> str:
    """SHA-256 (hex) of a resolved config (or its JSON dump), without `progress` and
    `sweep`: two points with equal hashes compute the same numbers.

    Example:
        >>> a = config_hash({"experiment": "x", "seed": 1, "progress": True})
        >>> a == config_hash({"seed": 1, "experiment": "x", "progress": False}), len(a)
        (True, 64)
    """
    text = json.dumps(_hashed_dump(cfg), sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _split_values(text: str) -> list[str]:
    """Split at commas outside brackets and quotes."""
    parts, depth, quote, cur = [], 0, None, []
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts]


def _parse_value(text: str):
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare string


def parse_grid(assignment: str) -> tuple[str, list[Any]]:
    """`"KEY=V1,V2,..."` -> `(KEY, [V1, V2, ...])`, each value read as a TOML value
    (a bare word is a string; brackets and quotes may hold commas).

    Raises:
        ConfigError: If it is not `KEY=V1,...` or a value is empty.

    Example:
        >>> parse_grid("model.coupling=1e-4, 2e-4")
        ('model.coupling', [0.0001, 0.0002])
        >>> parse_grid("fit.M_values=[100, 200],[400]")
        ('fit.M_values', [[100, 200], [400]])
    """
    if "=" not in assignment:
        raise ConfigError(f"--grid must look like KEY=V1,V2,..., got {assignment!r}")
    key, text = (s.strip() for s in assignment.split("=", 1))
    if not key:
        raise ConfigError(f"--grid {assignment!r}: the key is empty")
    parts = _split_values(text)
    if any(p == "" for p in parts):
        raise ConfigError(f"--grid {key}: empty value in {text!r}")
    return key, [_parse_value(p) for p in parts]


def _set_path(raw: dict, key: str, value) -> None:
    node = raw
    *parents, leaf = key.split(".")
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"grid key `{key}`: `{p}` is not a section")
    node[leaf] = copy.deepcopy(value)


def _get_path(cfg, key: str):
    node = cfg
    for part in key.split("."):
        node = node[part] if isinstance(node, dict) else getattr(node, part)
    return node


def _check_axis_value(config_cls, trial: dict, key: str, value, source: str) -> None:
    """Refuse a grid value that `run` would refuse whatever the other axes are (errors
    located at the key); cross-checks between keys are left to the points."""
    import pydantic

    try:
        config_cls.model_validate(trial)
    except pydantic.ValidationError as err:
        parts = tuple(key.split("."))
        mine = [e for e in err.errors() if tuple(str(x) for x in e["loc"])[: len(parts)] == parts]
        if mine:
            lines = []
            for e in mine:
                what = {"extra_forbidden": "unknown key", "missing": "required key is missing"}.get(e["type"], e["msg"])
                lines.append(f"  key `{'.'.join(str(x) for x in e['loc'])}`: {what} (got {e.get('input')!r})")
            head = f"grid axis `{key}`: value {value!r} is invalid ({source}):\n"
            raise ConfigError(head + "\n".join(lines)) from None


def expand_grid(config_cls: type[ExperimentConfig], raw: dict, axes: dict[str, list], source: str = "") -> list[Point]:
    """Validate every grid value and every point; return the points in grid order.

    Args:
        config_cls: The experiment's config class.
        raw: The base config as read (a `sweep` table in it is ignored).
        axes: Config key -> values; the product is the grid (the last axis fastest).
        source: Where the base config came from (for messages).

    Returns:
        The points, each with its validated config and config hash.

    Raises:
        ConfigError: Naming the key and the value: an axis that is empty, lists a
            value twice, is `experiment`, or holds a value `run` would refuse; or a
            combination of values a cross-check refuses (naming the point).

    Example:
        >>> class Cfg(ExperimentConfig):
        ...     rate: float = 1.0
        >>> pts = expand_grid(Cfg, {"experiment": "x"}, {"rate": [1.0, 2.0], "seed": [0, 1]})
        >>> labels = [p.label for p in pts]
        >>> labels[0], labels[3]
        ('rate=1.0, seed=0', 'rate=2.0, seed=1')
    """
    base = {k: v for k, v in copy.deepcopy(raw).items() if k != "sweep"}
    for key, values in axes.items():
        if key == "experiment":
            raise ConfigError("`experiment` cannot be a grid axis: sweep one experiment at a time")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"grid axis `{key}` must list at least one value, got {values!r}")
        seen = set()
        for v in values:
            tag = json.dumps(v, sort_keys=True)
            if tag in seen:
                raise ConfigError(f"grid axis `{key}` lists the value {v!r} twice")
            seen.add(tag)
            trial = copy.deepcopy(base)
            _set_path(trial, key, v)
            _check_axis_value(config_cls, trial, key, v, source)
    points, hashes = [], {}
    for index, combo in enumerate(itertools.product(*axes.values())):
        values = dict(zip(axes, combo))
        trial = copy.deepcopy(base)
        for key, v in values.items():
            _set_path(trial, key, v)
        point_label = ", ".join(f"{k}={v!r}" for k, v in values.items())
        try:
            cfg = validate(config_cls, trial, source)
        except ConfigError as err:
            raise ConfigError(f"grid point {index} ({point_label}) is invalid; {err}") from None
        h = config_hash(cfg)
        if h in hashes:
            raise ConfigError(f"grid points {hashes[h]} and {index} ({point_label}) are the same config")
        hashes[h] = index
        points.append(Point(index, values, cfg, h))
    return points


# ----------------------------------------------------------------------------------
# point kernels
# ----------------------------------------------------------------------------------


@dataclasses.dataclass
class PointResult:
    """What a sweep keeps of one point.

    Attributes:
        arrays: Name -> NumPy array (numeric), saved in the record.
        headline: Name -> `{"value", "stderr", ...}` (JSON values): the numbers of
            the summary table and figures; other keys (`true`, `theory`, `z`) are
            shown beside them.
        summary: Other JSON-ready results of the point.
    """

    arrays: dict[str, np.ndarray]
    headline: dict[str, dict[str, Any]]
    summary: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class PointKernel:
    """How the points of one experiment run batched in a sweep.

    Attributes:
        batched: Dotted config keys whose values enter `compute` as arrays (the seed
            always does, as the key data of `jax.random.key(seed)` under `"key"`).
            Points that differ only in these share one compiled, vmapped group.
        compute: `compute(group_config, inputs) -> {name: array}` for ONE point,
            pure JAX (it is vmapped and sharded); `inputs` maps each batched key and
            `"key"` to a scalar/array. In `group_config` the batched keys and the
            seed are `None`: read them from `inputs`.
        finish: `finish(config, arrays) -> PointResult` on the host (NumPy arrays of
            one point): fits, errors, headline numbers.
        point_bytes: `point_bytes(config) -> int`, device bytes one point of the
            batched kernel needs (chooses the chunk; a point that cannot fit is
            refused).
        summarize: `summarize(points, results) -> (summary, figures)` over the whole
            sweep (e.g. a fit across the grid); `results` are `PointResult`s.
        headline_name: The default headline number of the summary figures.
    """

    batched: tuple[str, ...]
    compute: Callable[[Any, dict[str, jax.Array]], dict[str, jax.Array]]
    finish: Callable[[Any, dict[str, np.ndarray]], PointResult]
    point_bytes: Callable[[Any], int] | None = None
    summarize: Callable[[list[Point], list[PointResult]], tuple[dict, dict]] | None = None
    headline_name: str | None = None


_KERNELS: dict[str, PointKernel] = {}


def register_kernel(experiment: str, kernel: PointKernel) -> None:
    """Register the batched point kernel of an experiment (at import of its module)."""
    _KERNELS[experiment] = kernel


def point_kernel(experiment: str) -> PointKernel | None:
    """The registered kernel of an experiment, or `None` (its points run one by one)."""
    from .experiments import registry

    registry()  # imports every experiment module, which registers the kernels
    return _KERNELS.get(experiment)


def _group_config(cfg, keys: tuple[str, ...]):
    """`cfg` with the batched keys and the seed set to `None` (not validated): the
    static part shared by a group."""

    def blank(node, parts):
        if len(parts) == 1:
            return node.model_copy(update={parts[0]: None})
        child = getattr(node, parts[0])
        return node.model_copy(update={parts[0]: blank(child, parts[1:])})

    out = cfg
    for key in (*keys, "seed"):
        out = blank(out, key.split("."))
    return out


def _group_key(point: Point, kernel: PointKernel) -> str:
    dump = _group_config(point.config, kernel.batched).model_dump(mode="json")
    return json.dumps(_hashed_dump(dump), sort_keys=True)


def _point_inputs(cfg, kernel: PointKernel) -> dict[str, np.ndarray]:
    out = {k: np.asarray(_get_path(cfg, k), dtype=float) for k in kernel.batched}
    out["key"] = np.asarray(jax.random.key_data(jax.random.key(cfg.seed)))
    return out


_COMPILED: dict = {}  # (kernel, group, devices) -> jitted group function, reused by later sweeps


def run_point(kernel: PointKernel, cfg) -> PointResult:
    """One point through its kernel, unbatched (`thermojax run` of a sweep experiment,
    tests). Numbers equal a sweep's to rounding."""
    gcfg = _group_config(cfg, kernel.batched)
    key = (id(kernel), "single", json.dumps(_hashed_dump(gcfg.model_dump(mode="json")), sort_keys=True))
    if key not in _COMPILED:
        _COMPILED[key] = (kernel, jax.jit(functools.partial(kernel.compute, gcfg)))
    inputs = {k: jnp.asarray(v) for k, v in _point_inputs(cfg, kernel).items()}
    out = _COMPILED[key][1](inputs)
    return kernel.finish(cfg, {k: np.asarray(v) for k, v in out.items()})


def _run_experiment_point(exp, cfg) -> PointResult:
    """A point of an experiment without a kernel: its `run`; headline = its fits and
    the numbers at the top of its summary (`{"value": x}`)."""
    from .experiments import RunContext
    from .io import _jsonable

    with RunContext():
        result = exp.run(cfg)
    summary = _jsonable(result.summary)
    headline = {k: {"value": v} for k, v in summary.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)}
    for name, fit in summary.get("fits", {}).items():
        if isinstance(fit, dict) and "value" in fit:
            headline[name] = {k: v for k, v in fit.items() if isinstance(v, (int, float, bool, type(None)))}
    return PointResult({k: np.asarray(v) for k, v in result.arrays.items()}, headline,
                       {k: v for k, v in summary.items() if k != "fits"})


# ----------------------------------------------------------------------------------
# the store
# ----------------------------------------------------------------------------------

RECORD_FORMAT = "thermojax-sweep-point/1"
SPEC_FORMAT = "thermojax-sweep/1"
_META = "__record__"


class CorruptRecord(Exception):
    """A point's record exists but cannot be trusted (truncated, damaged, foreign)."""


def _atomic_write(path: Path, write: Callable[[Any], None]) -> None:
    """Write through `write(file)` to a temporary name beside `path`, flush it to disk,
    then rename: readers see the old file or the whole new one, never a part."""
    tmp = path.with_name(f".{path.name}.{socket.gethostname()}-{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


class SweepStore:
    """A sweep's directory: one record per completed point, the spec, the summary.

    Layout::

        DIR/
          sweep.json          the sweep: experiment, base config, axes, points (ids)
          points/<id>.npz     one record per completed point (id = config hash[:16])
          summary.json        written last, by process 0: table, fits across the grid
          table.csv           one row per point: grid values, headline numbers, errors
          *.png               headline number against each axis, experiment figures

    A record is an `.npz` file (NumPy arrays, no pickle) whose entry `__record__`
    is a JSON document: `format`, `experiment`, `id`, `config_hash`, `config`
    (resolved), `point` (grid values), `headline`, `summary`, `arrays_sha256` and
    `run` (when, where and how long; the only part that differs between two runs of a
    point). It is written to a temporary name and renamed, so a killed sweep leaves
    complete records only; a record that fails to load, whose digest or config hash does
    not match, is corrupt and is computed again.
    """

    def __init__(self, directory):
        self.directory = Path(directory)
        self.points_dir = self.directory / "points"

    def path(self, point: Point) -> Path:
        return self.points_dir / f"{point.id}.npz"

    def write(self, point: Point, result: PointResult, experiment: str, run_info: dict) -> None:
        from .io import _jsonable

        arrays = {k: np.asarray(v) for k, v in result.arrays.items()}
        for k, v in arrays.items():
            if k.startswith("__") or v.dtype == object:
                raise TypeError(f"point array `{k}`: names starting with '__' and object arrays cannot be stored")
        meta = {
            "format": RECORD_FORMAT, "experiment": experiment, "id": point.id, "config_hash": point.config_hash,
            "index": point.index, "point": _jsonable(point.values), "config": point.config.model_dump(mode="json"),
            "headline": _jsonable(result.headline), "summary": _jsonable(result.summary),
            "arrays_sha256": _digest(arrays), "run": run_info,
        }
        text = json.dumps(meta, allow_nan=True)
        self.points_dir.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.path(point), lambda f: np.savez(f, **arrays, **{_META: np.array(text)}))

    def read(self, point: Point) -> tuple[dict[str, np.ndarray], dict]:
        """`(arrays, meta)` of a point's record.

        Raises:
            FileNotFoundError: No record.
            CorruptRecord: The record is truncated, damaged, or not this point's.
        """
        path = self.path(point)
        if not path.exists():
            raise FileNotFoundError(path)
        try:
            with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as f:
                data = {k: f[k] for k in f.files}  # reads every member: zip CRCs are checked
            meta = json.loads(str(data.pop(_META)))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, json.JSONDecodeError) as err:
            raise CorruptRecord(f"cannot read {path.name}: {type(err).__name__}: {err}") from None
        if meta.get("format") != RECORD_FORMAT:
            raise CorruptRecord(f"{path.name}: not a {RECORD_FORMAT} record")
        if meta.get("config_hash") != point.config_hash or config_hash(meta.get("config", {})) != point.config_hash:
            raise CorruptRecord(f"{path.name}: its config does not match the point ({point.label})")
        if meta.get("arrays_sha256") != _digest(data):
            raise CorruptRecord(f"{path.name}: its arrays do not match their digest")
        return data, meta

    def status(self, point: Point) -> str:
        """`"ok"`, `"missing"` or `"corrupt: <reason>"`."""
        try:
            self.read(point)
        except FileNotFoundError:
            return "missing"
        except CorruptRecord as err:
            return f"corrupt: {err}"
        return "ok"

    def write_json(self, name: str, data: dict) -> None:
        text = json.dumps(data, indent=2, allow_nan=True) + "\n"
        _atomic_write(self.directory / name, lambda f: f.write(text.encode()))

    def clean_temporaries(self) -> int:
        """Remove temporary files a killed writer left (call when no process writes)."""
        n = 0
        for folder in (self.directory, self.points_dir):
            for p in folder.glob(".*.tmp") if folder.is_dir() else ():
                p.unlink(missing_ok=True)
                n += 1
        return n


def _check_out_dir(directory: Path, experiment: str) -> None:
    spec = directory / "sweep.json"
    if spec.is_file():
        try:
            old = json.loads(spec.read_text())
        except json.JSONDecodeError:
            old = {}
        if old.get("experiment") not in (None, experiment):
            raise ConfigError(
                f"--out {str(directory)!r} holds a sweep of `{old.get('experiment')}`, not `{experiment}`; "
                "choose another directory"
            )
        return
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise ConfigError(
            f"--out {str(directory)!r} exists and is not a thermojax sweep directory (no sweep.json); "
            "choose another directory"
        )


# ----------------------------------------------------------------------------------
# the runner
# ----------------------------------------------------------------------------------


@dataclasses.dataclass
class SweepReport:
    """What one process did in `run_sweep`.

    Attributes:
        directory: The store.
        n_points: Points in the sweep.
        share: Indices of the points this process owns.
        computed: Indices computed now (missing before).
        reused: Indices whose valid records were kept (not recomputed).
        redone: Indices whose records were corrupt and were computed again.
        summary: The sweep summary (process 0; `None` elsewhere).
    """

    directory: Path
    n_points: int
    share: list[int]
    computed: list[int]
    reused: list[int]
    redone: list[int]
    summary: dict | None = None


def _available_bytes() -> int:
    from ._checks import available_memory

    return available_memory()


def _check_memory(points: list[Point], kernel: PointKernel | None, budget: int) -> None:
    from ._checks import format_bytes

    for p in points:
        needs = list(p.config.memory_requirements())
        if kernel is not None and kernel.point_bytes is not None:
            needs.append(("", int(kernel.point_bytes(p.config)), "one point of the batched kernel"))
        for key, needed, what in needs:
            if needed > budget:
                where = f"key `{key}`: " if key else ""
                raise MemoryError(
                    f"grid point {p.index} ({p.label}): {where}{what} needs about {format_bytes(needed)} but only "
                    f"{format_bytes(budget)} is available; the sweep was not started. Reduce it"
                )


def _chunk_for(group: list[Point], group_size: int, kernel: PointKernel, chunk_size, budget: int) -> int:
    """Points per compiled call: a multiple of the local device count, at most the
    group's size in the whole sweep (so it does not depend on the share or on what is
    already stored), within half the memory."""
    ndev = jax.local_device_count()
    chunk = chunk_size or 4 * ndev
    if kernel.point_bytes is not None:
        per = max(max(int(kernel.point_bytes(p.config)) for p in group), 1)
        chunk = max(1, min(chunk, (budget // 2) // per))
    chunk = min(chunk, group_size)
    return -(-chunk // ndev) * ndev


def _group_function(kernel: PointKernel, gkey: str, gcfg, mesh: Mesh):
    key = (id(kernel), gkey, tuple(d.id for d in mesh.devices.flat))
    if key not in _COMPILED:
        body = jax.vmap(functools.partial(kernel.compute, gcfg))
        if mesh.size > 1:
            spec = PartitionSpec("batch")
            body = jax.shard_map(body, mesh=mesh, in_specs=spec, out_specs=spec, check_vma=False)
        if len(_COMPILED) >= 32:
            _COMPILED.clear()
        _COMPILED[key] = (kernel, jax.jit(body))  # the kernel is kept alive: its id stays unique
    return _COMPILED[key][1]


def _run_group(group: list[Point], chunk: int, kernel: PointKernel, emit: Callable) -> None:
    """Run one compiled group in padded chunks sharded over this process's devices."""
    mesh = Mesh(np.asarray(jax.local_devices()), ("batch",))
    gcfg = _group_config(group[0].config, kernel.batched)
    fn = _group_function(kernel, _group_key(group[0], kernel), gcfg, mesh)
    sharding = NamedSharding(mesh, PartitionSpec("batch"))
    for start in range(0, len(group), chunk):
        part = group[start : start + chunk]
        padded = part + [part[-1]] * (chunk - len(part))  # same batch size every call: same numbers
        per_point = [_point_inputs(p.config, kernel) for p in padded]
        inputs = {k: np.stack([x[k] for x in per_point]) for k in per_point[0]}
        t0 = time.perf_counter()
        out = fn(jax.device_put(inputs, sharding))
        out = {k: np.asarray(v) for k, v in out.items()}
        seconds = (time.perf_counter() - t0) / len(part)
        for j, p in enumerate(part):
            t1 = time.perf_counter()
            result = kernel.finish(p.config, {k: v[j] for k, v in out.items()})
            emit(p, result, seconds + time.perf_counter() - t1, chunk)


def _barrier(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def run_sweep(
    experiment,
    points: list[Point],
    out,
    *,
    chunk_size: int | None = None,
    headline: str | None = None,
    spec: dict | None = None,
    progress: bool = True,
    announce: Callable[[str], None] | None = None,
) -> SweepReport:
    """Run the points this process owns that have no valid record; then (process 0)
    write the summary.

    Args:
        experiment: The registered experiment (`thermojax.experiments.get`).
        points: From `expand_grid`.
        out: The store directory (created; resumed if it holds this experiment's sweep).
        chunk_size: Points per compiled call (see `SweepTable`).
        headline: Headline number of the summary figures.
        spec: Extra JSON for `sweep.json` (base config, axes, command).
        progress: A progress bar over this process's points, with an ETA.
        announce: Where one-line messages go (default: nowhere).

    Returns:
        A `SweepReport`.

    Raises:
        ConfigError: `out` holds something else.
        MemoryError: A point cannot fit (before anything is written or computed),
            naming the point and the config key.
    """
    say = announce or (lambda msg: None)
    out = Path(out)
    kernel = point_kernel(experiment.name)
    budget = _available_bytes()
    _check_memory(points, kernel, budget)
    _check_out_dir(out, experiment.name)
    _barrier("thermojax-sweep-checked")  # every process checked `out` before any writes to it
    store = SweepStore(out)
    pid, nproc = jax.process_index(), jax.process_count()
    store.points_dir.mkdir(parents=True, exist_ok=True)
    if pid == 0:
        (out / "summary.json").unlink(missing_ok=True)  # present only when every point is stored
        store.write_json("sweep.json", {
            "format": SPEC_FORMAT, "experiment": experiment.name, "n_points": len(points),
            "points": [{"index": p.index, "id": p.id, "values": p.values} for p in points],
            **(spec or {}),
        })
    share = [p for p in points if p.index % nproc == pid]
    status = {p.index: store.status(p) for p in share}
    reused = [i for i, s in status.items() if s == "ok"]
    redone = [i for i, s in status.items() if s.startswith("corrupt")]
    for i in redone:
        say(f"thermojax: record of point {i} ({points[i].label}) is {status[i]}; computing it again")
        store.path(points[i]).unlink(missing_ok=True)
    pending = [p for p in share if status[p.index] != "ok"]
    where = f"process {pid} of {nproc}: " if nproc > 1 else ""
    say(f"thermojax: {where}{len(share)} of {len(points)} points, {len(reused)} already stored, "
        f"{len(pending)} to compute")
    bar = tqdm(total=len(pending), desc=f"sweep {experiment.name}", unit="point", disable=not progress)
    computed = []

    def emit(p: Point, result: PointResult, seconds: float, chunk: int):
        run_info = {"seconds": seconds, "process": pid, "processes": nproc, "devices": jax.local_device_count(),
                    "chunk": chunk, "host": socket.gethostname(),
                    "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    "thermojax": _version()}
        store.write(p, result, experiment.name, run_info)
        computed.append(p.index)
        bar.update(1)

    try:
        with process_local():
            if kernel is None:
                for p in pending:
                    t0 = time.perf_counter()
                    emit(p, _run_experiment_point(experiment, p.config), time.perf_counter() - t0, 1)
            else:
                groups: dict[str, list[Point]] = {}
                sizes: dict[str, int] = {}
                for p in points:
                    sizes[_group_key(p, kernel)] = sizes.get(_group_key(p, kernel), 0) + 1
                for p in pending:
                    groups.setdefault(_group_key(p, kernel), []).append(p)
                for gkey, group in groups.items():
                    chunk = _chunk_for(group, sizes[gkey], kernel, chunk_size, budget)
                    _run_group(group, chunk, kernel, emit)
    finally:
        bar.close()
    _barrier("thermojax-sweep-points-done")
    summary = None
    if pid == 0:
        store.clean_temporaries()
        summary = _summarize(experiment, kernel, points, store, headline)
    _barrier("thermojax-sweep-summary-done")
    return SweepReport(out, len(points), [p.index for p in share], computed, reused, redone, summary)


def _version() -> str:
    from thermojax import __version__

    return __version__


# ----------------------------------------------------------------------------------
# the summary
# ----------------------------------------------------------------------------------


def _table(points: list[Point], metas: list[dict]) -> list[dict]:
    rows = []
    for p, meta in zip(points, metas):
        row = {"index": p.index, "id": p.id, **{k: v for k, v in p.values.items()}}
        for name, h in meta["headline"].items():
            for k, v in h.items():
                if isinstance(v, (int, float, bool)) or v is None:
                    row[name if k == "value" else f"{name}_{k}"] = v
        rows.append(row)
    return rows


def _table_csv(rows: list[dict]) -> str:
    cols = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in r.items()})
    return buf.getvalue()


def _headline_figures(points: list[Point], metas: list[dict], name: str) -> dict:
    """`name` (± stderr) against each grid axis; the other axes as series."""
    from . import plot

    axes = list(points[0].values)
    figs = {}
    for axis in (a for a in axes if a != "seed"):
        others = [a for a in axes if a not in (axis, "seed")]
        series: dict[str, list] = {}
        for p, meta in zip(points, metas):
            h = meta["headline"].get(name)
            if h is None:
                continue
            label = ", ".join(f"{a}={p.values[a]!r}" for a in others) or name
            series.setdefault(label, []).append((p.values[axis], h.get("value"), h.get("stderr"),
                                                 h.get("true", h.get("theory"))))
        if not series:
            continue
        fig, ax = plot.subplots(width=5.4, height=3.8)
        numeric = all(isinstance(v[0], (int, float)) for s in series.values() for v in s)
        ticks = sorted({repr(v[0]) for s in series.values() for v in s})
        for i, (label, vals) in enumerate(series.items()):
            xs = [v[0] if numeric else ticks.index(repr(v[0])) for v in vals]
            shift = (i - (len(series) - 1) / 2) * 0.012
            if numeric and all(x > 0 for x in xs):
                xs = [x * (1 + shift) for x in xs]
            ys = [np.nan if v[1] is None else v[1] for v in vals]
            es = [np.nan if v[2] is None else v[2] for v in vals]
            ax.errorbar(xs, ys, yerr=es, fmt="o", ms=4, capsize=2, color=f"C{i % 10}", label=label)
            refs = [v[3] for v in vals]
            if any(r is not None for r in refs):
                ax.plot(xs, [np.nan if r is None else r for r in refs], "_", ms=12, color=f"C{i % 10}")
        if not numeric:
            ax.set_xticks(range(len(ticks)), ticks)
        ax.set_xlabel(axis)
        ax.set_ylabel(f"{name} ± s.e.")
        if len(series) > 1 or others:
            ax.legend(fontsize=7)
        plot.caption(fig, f"{len(points)} points; bars: reference value (true/theory) where known")
        figs[f"{name}_vs_{axis.replace('.', '_')}"] = fig
    return figs


def _summarize(experiment, kernel, points: list[Point], store: SweepStore, headline: str | None) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arrays, metas, missing = [], [], []
    for p in points:
        try:
            a, m = store.read(p)
        except (FileNotFoundError, CorruptRecord) as err:
            missing.append(f"{p.index} ({p.label}): {err}")
            continue
        arrays.append(a)
        metas.append(m)
    if missing:
        raise RuntimeError(
            f"{len(missing)} point(s) have no valid record after every process finished: "
            + "; ".join(missing[:5]) + ". If several hosts ran, --out must be on a filesystem all of them "
            "see. Rerun the same command to compute them."
        )
    rows = _table(points, metas)
    summary = {"experiment": experiment.name, "n_points": len(points), "axes": list(points[0].values),
               "table": rows}
    figures = {}
    if kernel is not None and kernel.summarize is not None:
        results = [PointResult(a, m["headline"], m["summary"]) for a, m in zip(arrays, metas)]
        extra, figs = kernel.summarize(points, results)
        summary.update(extra)
        figures.update(figs)
    names = list(metas[0]["headline"])
    name = headline or (kernel.headline_name if kernel else None) or (names[0] if names else None)
    if name is not None and names and name not in names:
        raise ConfigError(f"headline {name!r} is not a headline number of {experiment.name}; it has {names}")
    summary["headline"] = name
    if name is not None:
        figures = {**_headline_figures(points, metas, name), **figures}
    for fname, fig in figures.items():
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        _atomic_write(store.directory / f"{fname}.png", lambda f, b=buf: f.write(b.getvalue()))
    summary["figures"] = sorted(f"{n}.png" for n in figures)
    _atomic_write(store.directory / "table.csv", lambda f: f.write(_table_csv(rows).encode()))
    store.write_json("summary.json", summary)
    return summary
