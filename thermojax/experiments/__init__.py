"""Experiment registry: each module in this package registers one or more experiments.

An experiment is a config class (pydantic, see :mod:`thermojax.config`), a
``run(config) -> ExperimentResult`` and a ``plot(result, config) -> {name: Figure}``.
Adding one needs a new module here (found automatically) and a TOML file in
``configs/``; nothing else changes.
"""

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable
from typing import Any

import numpy as np

from ..config import ConfigError, ExperimentConfig


@dataclasses.dataclass
class ExperimentResult:
    """What an experiment hands to I/O and plotting.

    Attributes:
        arrays: Name -> numeric array, saved to ``arrays.npz``.
        summary: JSON-ready headline results (fits, figures of merit, ``timings_s``).
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
    """Register an experiment under ``name`` (called at import of its module)."""
    if name in _REGISTRY:
        raise ValueError(f"experiment {name!r} registered twice")
    _REGISTRY[name] = Experiment(name, config, run, plot, description)


_DISCOVERED = False


def _discover() -> None:
    """Import every module of this package once (each registers its experiments).

    Tracked by a flag, not by an empty registry: importing one experiment module
    directly registers it and must not stop the others from being found."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    for mod in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{mod.name}")
    _DISCOVERED = True


def registry() -> dict[str, Experiment]:
    """All registered experiments, by name."""
    _discover()
    return dict(_REGISTRY)


def get(name: str) -> Experiment:
    """The experiment called ``name``.

    Raises:
        ConfigError: If no experiment has that name (the message lists them).
    """
    reg = registry()
    if name not in reg:
        raise ConfigError(f"unknown experiment {name!r}; known: {', '.join(sorted(reg))}")
    return reg[name]
