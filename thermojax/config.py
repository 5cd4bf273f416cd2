"""Experiment configs: TOML (or the JSON a run saved) validated by pydantic.

Every experiment declares a `ExperimentConfig` subclass. Unknown keys, wrong
types and unphysical values are rejected with a `ConfigError` that names the
key, the problem and the value that came.
"""

import json
from pathlib import Path
from typing import Any

import pydantic
import tomllib
from pydantic import BaseModel, ConfigDict, Field


class ConfigError(ValueError):
    """A config file or value is invalid; the message names the key and the problem."""


class Section(BaseModel):
    """A strict config section: unknown keys and silent type coercion are errors."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ExperimentConfig(Section):
    """Keys every experiment has.

    Attributes:
        experiment: Registered experiment name (`thermojax list`).
        seed: Seed of the `jax.random.key` from which every random number derives.
        progress: Show progress bars.
    """

    experiment: str
    seed: int = 0
    progress: bool = True

    def memory_requirements(self) -> list[tuple[str, int, str]]:
        """`(key, bytes, what)` for the largest allocations this config asks for; the
        command line refuses a config whose needs exceed the available memory before
        anything is allocated. Experiments with large sizes override this."""
        return []


def _format_errors(err: pydantic.ValidationError, source: str) -> str:
    lines = [f"invalid config {source}:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == "missing":
            msg = "required key is missing"
        else:
            msg = e["msg"]
        got = "" if e["type"] == "missing" else f" (got {e.get('input')!r})"
        lines.append(f"  key `{key}`: {msg}{got}")
    return "\n".join(lines)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a `.toml` or `.json` config file into a dict.

    Raises:
        ConfigError: If the file is missing, has another suffix, or does not parse.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        if path.suffix == ".toml":
            return tomllib.loads(path.read_text())
        if path.suffix == ".json":
            return json.loads(path.read_text())
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot parse {path}: {e}") from e
    raise ConfigError(f"config file must end in .toml or .json, got {path.name!r}")


def set_override(raw: dict[str, Any], assignment: str) -> None:
    """Apply `"section.key=value"` (value parsed as a TOML value) to `raw` in place.

    Raises:
        ConfigError: If the assignment is not of the form `key=value`.
    """
    if "=" not in assignment:
        raise ConfigError(f"override must look like key=value, got {assignment!r}")
    key, text = assignment.split("=", 1)
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text  # a bare string
    node = raw
    *parents, leaf = key.strip().split(".")
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {assignment!r}: `{p}` is not a section")
    node[leaf] = value


def validate(cls: type[BaseModel], raw: dict[str, Any], source: str = "") -> BaseModel:
    """Validate `raw` against `cls`.

    Raises:
        ConfigError: Listing every offending key with the problem and the value.
    """
    try:
        return cls.model_validate(raw)
    except pydantic.ValidationError as e:
        raise ConfigError(_format_errors(e, source)) from None


# ----------------------------------------------------------------------------------
# sections shared by experiments of every paper
# ----------------------------------------------------------------------------------


class TimeGrid(Section):
    """Save times `linspace(0, t_max, n_times)`, in the time unit the experiment names
    (e.g. `1/kappa` for the heat chain, `hbar/energy` for OQT)."""

    t_max: float = Field(1.0, gt=0, description="last save time")
    n_times: int = Field(41, ge=2, description="number of save times")

    def times(self, unit: float = 1.0):
        """The save times, scaled by `unit` (a JAX array `(n_times,)`)."""
        import jax.numpy as jnp

        return jnp.linspace(0.0, self.t_max * float(unit), self.n_times)


class TrajectoryOptions(Section):
    """Stochastic trajectories: the Euler–Maruyama step and how the batch is chunked."""

    dt: float = Field(0.01, gt=0, description="time step")
    chunk_size: int | None = Field(None, ge=1, description="trajectories per compiled chunk (default: all)")
    memory_budget_mib: float | None = Field(None, gt=0, description="device memory a chunk may use")

    def method(self):
        """The method object, `EulerMaruyama(dt)`."""
        from .options import EulerMaruyama

        return EulerMaruyama(self.dt)

    def options(self, **kw):
        """`thermojax.Options` with the chunking set (extra options as keywords)."""
        from .options import Options

        budget = None if self.memory_budget_mib is None else int(self.memory_budget_mib * 2**20)
        return Options(chunk_size=self.chunk_size, memory_budget=budget, **kw)


class FitOptions(Section):
    """A least-squares fit of one model constant (optax L-BFGS)."""

    max_steps: int = Field(100, ge=1, description="optimiser steps at most")
    start_ratio: float = Field(0.5, gt=0, description="the fit starts at start_ratio x the reference value")
