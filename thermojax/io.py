"""Run directories: arrays (npz, no pickle), `summary.json`, resolved config, figures.

Layout of a run directory::

    <out>/
      arrays.npz      every result array (numpy, loadable with allow_pickle=False)
      summary.json    headline numbers, fits, timings, config, seed, versions, device
      config.json     the resolved config; `thermojax run <out>/config.json` repeats the run
      *.png           figures
"""

import datetime
import json
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import jax
import numpy as np

_PACKAGES = ("thermojax", "jax", "jaxlib", "diffrax", "equinox", "optax", "numpy")


def environment() -> dict[str, Any]:
    """Versions of thermojax and its numerical stack, Python, and the JAX device."""
    versions = {}
    for pkg in _PACKAGES:
        if pkg == "thermojax":  # the source that ran, not a possibly stale install record
            from thermojax import __version__

            versions[pkg] = __version__
            continue
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    dev = jax.devices()[0]
    return {
        "versions": versions,
        "python": platform.python_version(),
        "device": {"platform": dev.platform, "kind": dev.device_kind, "count": jax.device_count()},
        "x64": bool(jax.config.jax_enable_x64),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.ndarray, jax.Array)):
        a = np.asarray(x)
        return a.item() if a.ndim == 0 else a.tolist()
    if isinstance(x, (np.floating, np.integer, np.bool_)):
        return x.item()
    if isinstance(x, float) and not np.isfinite(x):
        return None if np.isnan(x) else str(x)
    return x


def save_run(
    out: str | Path,
    *,
    arrays: dict[str, Any],
    summary: dict[str, Any],
    config: dict[str, Any],
    figures: dict[str, Any] | None = None,
) -> Path:
    """Write a run directory (created if needed) and return its path.

    Args:
        out: Directory to write into.
        arrays: Name -> array (any shape, numeric). Saved with `np.savez`.
        summary: JSON-serialisable headline results (fits, timings ...).
        config: The resolved config as a plain dict (includes the seed).
        figures: Name -> matplotlib Figure, saved as `<name>.png`.

    Raises:
        TypeError: If an array has dtype `object` (it would need pickle).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    host = {k: np.asarray(v) for k, v in arrays.items()}
    for k, v in host.items():
        if v.dtype == object:
            raise TypeError(f"array `{k}` has dtype object; only numeric arrays are saved")
    np.savez(out / "arrays.npz", **host)
    full = {
        "experiment": config.get("experiment"),
        "seed": config.get("seed"),
        **_jsonable(summary),
        "config": _jsonable(config),
        "environment": environment(),
    }
    (out / "summary.json").write_text(json.dumps(full, indent=2, allow_nan=False) + "\n")
    (out / "config.json").write_text(json.dumps(_jsonable(config), indent=2) + "\n")
    for name, fig in (figures or {}).items():
        fig.savefig(out / f"{name}.png", dpi=120, bbox_inches="tight")
    return out


def load_run(out: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Load `(arrays, summary)` from a run directory written by `save_run`.

    Raises:
        FileNotFoundError: If `arrays.npz` or `summary.json` is missing.
    """
    out = Path(out)
    with np.load(out / "arrays.npz", allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    summary = json.loads((out / "summary.json").read_text())
    return arrays, summary


class Stopwatch:
    """Named wall-clock timings: `with sw("stage"): ...`; `sw.seconds` maps names to s."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str):
        sw = self

        class _Ctx:
            def __enter__(self):
                self.t0 = time.perf_counter()

            def __exit__(self, *exc):
                sw.seconds[name] = sw.seconds.get(name, 0.0) + time.perf_counter() - self.t0
                return False

        return _Ctx()
