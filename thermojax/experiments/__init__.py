"""Experiments: one package per paper, each module one figure or study.

An experiment is a config class (pydantic, `thermojax.config`), a
`run(config) -> ExperimentResult` and a `plot(result, config) -> {name: Figure}`,
registered with `register` at import. Every module of every subpackage here is
imported once when the registry is first used, so adding an experiment needs a module
and a TOML file in `configs/`; nothing else changes.

Expensive steps of `run` go through `stage`: a stage's output is saved inside
the run directory as soon as it is computed, so an interrupted run keeps it and
`thermojax run --resume DIR` continues without recomputing it.
"""

import dataclasses
import importlib
import json
import pkgutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from ..config import ConfigError, ExperimentConfig

__all__ = ["ExperimentResult", "Experiment", "register", "registry", "get", "stage", "RunContext", "active_run"]


@dataclasses.dataclass
class ExperimentResult:
    """What an experiment hands to I/O and plotting.

    Attributes:
        arrays: Name -> numeric array, saved to `arrays.npz`.
        summary: JSON-ready headline results (fits, figures of merit, `timings_s`).
    """

    arrays: dict[str, np.ndarray]
    summary: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Experiment:
    name: str
    config: type[ExperimentConfig]
    run: Callable[[Any], ExperimentResult]
    plot: Callable[[ExperimentResult, Any], dict[str, Any]]
    description: str


_REGISTRY: dict[str, Experiment] = {}


def register(name: str, config: type[ExperimentConfig], run, plot, description: str) -> None:
    """Register an experiment under `name` (called at import of its module).

    Raises:
        ValueError: If the name is taken by another experiment.
    """
    # configs built in code (notebooks, tests) need not repeat the experiment's name
    field = config.model_fields["experiment"]
    if field.is_required():
        field.default = name
        config.model_rebuild(force=True)
    old = _REGISTRY.get(name)
    if old is not None and (old.run.__module__, old.run.__qualname__) != (run.__module__, run.__qualname__):
        raise ValueError(f"experiment {name!r} registered twice")
    _REGISTRY[name] = Experiment(name, config, run, plot, description)


_DISCOVERED = False


def _discover() -> None:
    """Import every module of every subpackage once (each registers its experiments).

    Tracked by a flag, not by an empty registry: importing one experiment module
    directly registers it and must not stop the others from being found."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    for mod in pkgutil.walk_packages(__path__, prefix=f"{__name__}."):
        if not mod.name.rsplit(".", 1)[-1].startswith("_"):
            importlib.import_module(mod.name)
    _DISCOVERED = True


def registry() -> dict[str, Experiment]:
    """All registered experiments, by name."""
    _discover()
    return dict(_REGISTRY)


def get(name: str) -> Experiment:
    """The experiment called `name`.

    Raises:
        ConfigError: If no experiment has that name (the message lists them).
    """
    reg = registry()
    if name not in reg:
        raise ConfigError(f"unknown experiment {name!r}; known: {', '.join(sorted(reg))}")
    return reg[name]


# ----------------------------------------------------------------------------------
# stages: what survives an interrupt
# ----------------------------------------------------------------------------------


@dataclasses.dataclass
class RunContext:
    """The run in progress: where stages are kept and how long each took.

    Attributes:
        directory: The run directory (stages go to `directory/stages`), or `None`
            to keep nothing (library use, tests).
        timings: Stage name -> wall seconds (computed stages only).
        resumed: Names of the stages loaded instead of computed.
        interrupt_requested: Set by the command line's Ctrl-C handler. A
            `KeyboardInterrupt` raised where Python cannot pass it on (a garbage-collector
            callback, for one) would be lost; the next `stage` raises it again.
    """

    directory: Path | None = None
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    resumed: list[str] = dataclasses.field(default_factory=list)
    interrupt_requested: bool = False

    def __enter__(self):
        _ACTIVE.append(self)
        return self

    def __exit__(self, *exc):
        _ACTIVE.remove(self)
        return False


_ACTIVE: list[RunContext] = []


def active_run() -> RunContext:
    """The innermost `RunContext` (a throwaway one outside any run)."""
    return _ACTIVE[-1] if _ACTIVE else RunContext()


def _host(value):
    if isinstance(value, (jax.Array, np.ndarray)) or (
        isinstance(value, (list, tuple)) and value and all(isinstance(v, (jax.Array, np.ndarray)) for v in value)
    ):
        return np.asarray(value)
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    return value


def _plain(x):
    """JSON-ready copy that keeps NaN and infinities (Python's json reads them back)."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, (np.ndarray, jax.Array)):
        return np.asarray(x).tolist()
    if isinstance(x, (np.floating, np.integer, np.bool_)):
        return x.item()
    return x


def stage(name: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Compute one stage of an experiment, or load it when resuming an interrupted run.

    `compute()` returns a dict whose values are arrays (saved to
    `stages/<name>.npz`) or JSON values (saved to `stages/<name>.json`). Arrays
    come back as NumPy arrays, in both the computed and the resumed case, so a resumed
    run continues with exactly the numbers an uninterrupted one would have.

    Args:
        name: Stage name, unique within the run (a file name: letters, digits, `_-`).
        compute: Zero-argument function returning the stage's outputs.

    Returns:
        The stage's outputs.

    Example:
        >>> out = stage("square", lambda: {"x": np.arange(3) ** 2, "note": "ok"})
        >>> out["x"].tolist(), out["note"]
        ([0, 1, 4], 'ok')
    """
    ctx = active_run()
    if ctx.interrupt_requested:
        raise KeyboardInterrupt
    folder = None if ctx.directory is None else Path(ctx.directory) / "stages"
    if folder is not None and (folder / f"{name}.done").exists():
        with np.load(folder / f"{name}.npz", allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        values = json.loads((folder / f"{name}.json").read_text())
        ctx.resumed.append(name)
        return {**values, **arrays}
    t0 = time.perf_counter()
    out = {k: _host(v) for k, v in compute().items()}
    ctx.timings[name] = ctx.timings.get(name, 0.0) + time.perf_counter() - t0
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {k: v for k, v in out.items() if isinstance(v, np.ndarray)}
        values = {k: v for k, v in out.items() if not isinstance(v, np.ndarray)}
        np.savez(folder / f"{name}.npz", **arrays)
        (folder / f"{name}.json").write_text(json.dumps(_plain(values)))
        (folder / f"{name}.done").write_text("")
        # JSON round trip, so the computed and the resumed run see the same values
        out = {**json.loads((folder / f"{name}.json").read_text()), **arrays}
    return out
