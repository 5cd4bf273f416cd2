"""Command line: `thermojax run [CONFIG] [--out DIR] [--set key=value ...]`, `thermojax list`.

CONFIG is a TOML path, a run's saved `config.json`, or the name of a shipped config
(`thermojax list`). Without CONFIG the default, `heat_chain_fig2`, runs.
"""

import argparse
import datetime
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

from .config import ConfigError, read_config_file, set_override, validate

DEFAULT_CONFIG = "heat_chain_fig2"


def config_dir() -> Path:
    """Folder of the shipped configs (`configs/` in a checkout, packaged in a wheel)."""
    packaged = resources.files("thermojax") / "_configs"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "configs"


def shipped_configs() -> dict[str, Path]:
    """Shipped config names -> paths."""
    return {p.stem: p for p in sorted(config_dir().glob("*.toml"))}


def resolve_config_path(arg: str | None) -> Path:
    """Path of CONFIG given as a path or a shipped name.

    Raises:
        ConfigError: If it is neither.
    """
    arg = DEFAULT_CONFIG if arg is None else arg
    path = Path(arg)
    if path.is_file():
        return path
    shipped = shipped_configs()
    if arg in shipped:
        return shipped[arg]
    raise ConfigError(
        f"no config file {arg!r} and no shipped config of that name; "
        f"shipped: {', '.join(shipped)}"
    )


def load_config(arg: str | None, overrides: list[str] = ()):
    """Read, override and validate a config. Returns `(experiment, config)`."""
    from .experiments import get

    path = resolve_config_path(arg)
    raw: dict[str, Any] = read_config_file(path)
    for o in overrides:
        set_override(raw, o)
    if "experiment" not in raw:
        raise ConfigError(f"invalid config {path}:\n  key `experiment`: required key is missing")
    exp = get(raw["experiment"])
    return exp, validate(exp.config, raw, str(path))


def run(arg: str | None = None, out: str | None = None, overrides: list[str] = ()):
    """Run an experiment end to end and write its run directory. Returns `(path, result)`."""
    import matplotlib

    matplotlib.use("Agg")
    from . import io

    exp, cfg = load_config(arg, overrides)
    if out is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        out = Path("runs") / f"{exp.name}-{stamp}"
    from .experiments import RunContext

    t0 = time.perf_counter()
    with RunContext() as ctx:
        result = exp.run(cfg)
    result.summary["timings_s"] = {**ctx.timings, "total": time.perf_counter() - t0}
    figures = exp.plot(result, cfg)
    path = io.save_run(
        out, arrays=result.arrays, summary=result.summary, config=cfg.model_dump(), figures=figures
    )
    return path, result


def _headline(summary: dict) -> str:
    lines = []
    for k, v in summary.items():
        if isinstance(v, (int, float, str, bool)):
            lines.append(f"  {k}: {v}")
    for name, fit in summary.get("fits", {}).items():
        ref = {k: fit[k] for k in ("theory", "true") if k in fit}
        refs = ", ".join(f"{k} {v:.6g}" for k, v in ref.items())
        lines.append(f"  fit {name}: {fit['value']:.6g} +- {fit['stderr']:.2g}  ({refs})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="thermojax", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="run an experiment from a config")
    p_run.add_argument("config", nargs="?", help=f"TOML/JSON path or shipped name ({DEFAULT_CONFIG})")
    p_run.add_argument("--out", help="run directory (default runs/<experiment>-<time>)")
    p_run.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config value, e.g. --set model.n=200 (repeatable)",
    )
    sub.add_parser("list", help="list shipped configs and registered experiments")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            from .experiments import registry

            print("shipped configs:")
            for name, path in shipped_configs().items():
                print(f"  {name:<24} {path}")
            print("experiments:")
            for name, exp in sorted(registry().items()):
                print(f"  {name:<24} {exp.description}")
            return 0
        path, result = run(args.config, args.out, args.overrides)
    except ConfigError as e:
        print(f"thermojax: {e}", file=sys.stderr)
        return 2
    print(f"results written to {path}")
    print(_headline(result.summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
