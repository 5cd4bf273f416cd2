"""The command line.

    thermojax run [CONFIG] [--out DIR] [--overwrite] [--set KEY=VALUE ...]
    thermojax run --resume DIR
    thermojax sweep CONFIG --grid KEY=V1,V2,... [--grid ...] [--seeds K] --out DIR
    thermojax list

CONFIG is the name of a shipped config (`thermojax list`), a TOML file, a run's saved
`config.json`, or a run directory (its `config.json`). Without CONFIG the default,
`heat_chain_fig2`, runs.

Nothing is ever lost or mixed: a run is written into `<DIR>.incomplete` and renamed to
`DIR` only when it has finished, so a directory is always one complete run; an
existing non-empty `--out` is refused unless `--overwrite` is given (then it is
replaced as a whole). Ctrl-C stops with one line; the stages already computed stay in
the `.incomplete` directory and `thermojax run --resume <that directory>` finishes the
run without recomputing them. Sizes that cannot fit in memory are refused before
anything large is allocated, with the key and the memory needed.

`thermojax sweep` runs a grid of one experiment's config (axes from `--grid` and the
config's `[sweep]` table, `--seeds`) into a store of one record per point; rerunning
the same command resumes it. It runs on every local device, and across processes when
started by SLURM, Open MPI or with a coordinator (`docs/sweeps.md`).
"""

import argparse
import contextlib
import datetime
import json
import shutil
import signal
import sys
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any

from .config import ConfigError, read_config_file, set_override, validate

DEFAULT_CONFIG = "heat_chain_fig2"
INCOMPLETE_SUFFIX = ".incomplete"
MARKER = "RUN_INCOMPLETE.json"


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
    """Path of CONFIG given as a file, a run directory or a shipped name.

    Raises:
        ConfigError: If it is none of these.
    """
    arg = DEFAULT_CONFIG if arg is None else arg
    path = Path(arg)
    if path.is_dir():
        if (path / "config.json").is_file():
            return path / "config.json"
        raise ConfigError(f"{arg!r} is a directory without a config.json: not a thermojax run directory")
    if path.is_file():
        return path
    shipped = shipped_configs()
    if arg in shipped:
        return shipped[arg]
    raise ConfigError(f"no config file {arg!r} and no shipped config of that name; shipped: {', '.join(shipped)}")


def load_config(arg: str | None, overrides: list[str] = ()):
    """Read, override and validate a config. Returns `(experiment, config)`.

    Raises:
        ConfigError: Naming the key, the problem and the value; a bad `--set` is
            blamed on the override, not on the file.
    """
    exp, raw, source = _read_raw(arg, overrides)
    return exp, validate(exp.config, raw, source)


def _read_raw(arg: str | None, overrides: list[str]):
    """The config file with the overrides applied, unvalidated: `(experiment, raw, source)`."""
    from .experiments import get

    path = resolve_config_path(arg)
    raw: dict[str, Any] = read_config_file(path)
    for o in overrides:
        set_override(raw, o)
    if "experiment" not in raw:
        raise ConfigError(f"invalid config {path}:\n  key `experiment`: required key is missing")
    exp = get(raw["experiment"])
    source = str(path) if not overrides else f"{path} with --set {' --set '.join(overrides)}"
    return exp, raw, source


def check_config_memory(cfg) -> None:
    """Refuse a config whose largest allocation cannot fit, before anything is allocated.

    Raises:
        MemoryError: `key `...`: <what> needs X but Y is available`.
    """
    from ._checks import available_memory, format_bytes

    budget = available_memory()
    for key, needed, what in cfg.memory_requirements():
        if needed > budget:
            raise MemoryError(
                f"key `{key}`: {what} needs about {format_bytes(needed)} but only {format_bytes(budget)} is "
                "available; reduce it"
            )


class Interrupted(Exception):
    """A run stopped by Ctrl-C; `work` is its `.incomplete` directory."""

    def __init__(self, work: Path):
        super().__init__(str(work))
        self.work = work


def _final_dir(exp_name: str, out: str | None) -> Path:
    if out is not None:
        return Path(out)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{exp_name}-{stamp}"


def _prepare_dirs(final: Path, overwrite: bool, cfg_dump: dict) -> Path:
    """The `.incomplete` working directory of a new run (config written, marker set)."""
    if final.exists() and any(final.iterdir()) and not overwrite:
        raise ConfigError(
            f"--out {str(final)!r} exists and is not empty; choose another directory or pass --overwrite "
            "(which replaces it as a whole)"
        )
    work = final.with_name(final.name + INCOMPLETE_SUFFIX)
    if work.exists():
        raise ConfigError(
            f"{str(work)!r} holds an interrupted run: finish it with `thermojax run --resume {work}` or delete it"
        )
    work.mkdir(parents=True)
    (work / "config.json").write_text(json.dumps(cfg_dump, indent=2) + "\n")
    marker = {"final": str(final), "overwrite": overwrite, "resume": f"thermojax run --resume {work}"}
    (work / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    return work


def _finish_dirs(work: Path, final: Path) -> Path:
    """Make the finished run the final directory (replacing an old one as a whole)."""
    shutil.rmtree(work / "stages", ignore_errors=True)
    (work / MARKER).unlink()
    old = None
    if final.exists():
        old = final.with_name(final.name + ".replaced")
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    work.rename(final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return final


@contextlib.contextmanager
def _interrupt_flag(ctx):
    """Ctrl-C raises `KeyboardInterrupt` as usual and also marks `ctx`, so that an interrupt
    swallowed inside a callback is raised again at the next stage."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        yield  # no handler can be set here, or the caller chose to ignore Ctrl-C (a shell's background job)
        return

    def handler(signum, frame):
        ctx.interrupt_requested = True
        raise KeyboardInterrupt

    def unraisable(info):  # the swallowed interrupt: flagged already, so say nothing here
        if not isinstance(info.exc_value, KeyboardInterrupt):
            previous_hook(info)

    previous, previous_hook = signal.signal(signal.SIGINT, handler), sys.unraisablehook
    sys.unraisablehook = unraisable
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        sys.unraisablehook = previous_hook


def _execute(exp, cfg, work: Path):
    """Run the experiment with its stages kept in `work`; write the run's files there."""
    import matplotlib

    matplotlib.use("Agg")
    from . import io
    from .experiments import RunContext

    t0 = time.perf_counter()
    with RunContext(directory=work) as ctx, _interrupt_flag(ctx):
        result = exp.run(cfg)
        if ctx.interrupt_requested:  # a Ctrl-C that arrived where Python could not raise it
            raise KeyboardInterrupt
    result.summary["timings_s"] = {**ctx.timings, "total": time.perf_counter() - t0}
    if ctx.resumed:
        result.summary["resumed_stages"] = list(ctx.resumed)
    figures = exp.plot(result, cfg)
    io.save_run(work, arrays=result.arrays, summary=result.summary, config=cfg.model_dump(), figures=figures)
    return result


def run(arg: str | None = None, out: str | None = None, overrides: list[str] = (), *, overwrite: bool = False,
        announce=None):
    """Run an experiment end to end and write its run directory. Returns `(path, result)`.

    Raises:
        ConfigError: Invalid config or `--out`.
        MemoryError: A size that cannot fit (before anything is allocated).
    """
    exp, cfg = load_config(arg, overrides)
    check_config_memory(cfg)
    final = _final_dir(exp.name, out)
    work = _prepare_dirs(final, overwrite, cfg.model_dump())
    if announce:
        announce(f"thermojax: {exp.name} -> {final} (working in {work} until it finishes)")
    return _run_in(exp, cfg, work, final)


def _run_in(exp, cfg, work: Path, final: Path):
    """Execute in `work`; on success rename it to `final`, on Ctrl-C keep it."""
    try:
        result = _execute(exp, cfg, work)
    except KeyboardInterrupt:
        raise Interrupted(work) from None
    return _finish_dirs(work, final), result


def resume(directory: str, announce=None):
    """Finish an interrupted run from its `.incomplete` directory. Returns `(path, result)`.

    Raises:
        ConfigError: If `directory` is not an interrupted run.
    """
    work = Path(directory)
    if not (work / MARKER).is_file():
        raise ConfigError(f"{directory!r} is not an interrupted thermojax run (no {MARKER} in it)")
    marker = json.loads((work / MARKER).read_text())
    exp, cfg = load_config(str(work / "config.json"))
    check_config_memory(cfg)
    final = Path(marker["final"])
    if final.exists() and any(final.iterdir()) and not marker.get("overwrite", False):
        raise ConfigError(f"the run's destination {str(final)!r} has since been filled; move it away first")
    if announce:
        announce(f"thermojax: resuming {exp.name} in {work} -> {final}")
    return _run_in(exp, cfg, work, final)


def sweep(arg: str, out: str, grid: list[str] = (), seeds: int | None = None, overrides: list[str] = (), *,
          chunk_size: int | None = None, headline: str | None = None, distributed: dict | None = None,
          announce=None):
    """Run (or resume) a parameter sweep. Returns the `thermojax.sweep.SweepReport`.

    The base config is read and overridden as `run` does; the axes are the `[sweep]`
    table's `grid` with each `--grid KEY=V1,V2,...` replacing or adding an axis, and
    `seed + 0..K-1` when `--seeds K` (or the table's `seeds`) is given. Every grid value
    and every point is validated before anything runs.

    Raises:
        ConfigError: Invalid config, `[sweep]` table, grid value (naming key and value)
            or `--out`.
        MemoryError: A point that cannot fit (naming the point), before anything runs.
    """
    from .sweep import SweepTable, expand_grid, initialize_distributed, parse_grid, run_sweep

    initialize_distributed(**(distributed or {}))  # before any JAX computation
    exp, raw, source = _read_raw(arg, overrides)
    path = resolve_config_path(arg)
    table_raw = raw.pop("sweep", {})
    if not isinstance(table_raw, dict):
        raise ConfigError(f"invalid config {source}:\n  key `sweep`: must be a table, got {table_raw!r}")
    try:
        table = validate(SweepTable, table_raw, source)
    except ConfigError as err:
        raise ConfigError(str(err).replace("key `", "key `sweep.")) from None
    base = validate(exp.config, raw, source)
    axes = {k: list(v) for k, v in table.grid.items()}
    for g in grid:
        key, values = parse_grid(g)
        axes[key] = values
    seeds = seeds if seeds is not None else table.seeds
    if seeds is not None:
        if seeds < 1:
            raise ConfigError(f"--seeds must be >= 1, got {seeds}")
        if "seed" in axes:
            raise ConfigError("give the seeds either as --seeds or as a grid axis `seed`, not both")
        axes["seed"] = [base.seed + k for k in range(seeds)]
    points = expand_grid(exp.config, raw, axes, source)
    spec = {"config_file": str(path), "overrides": list(overrides), "axes": axes,
            "base_config": base.model_dump(mode="json")}
    if announce:
        shape = " x ".join(str(len(v)) for v in axes.values())
        announce(f"thermojax: sweep of {exp.name}, {len(points)} points ({shape} over {', '.join(axes) or 'no axis'})"
                 f" -> {out}")
    try:
        return run_sweep(exp, points, out, chunk_size=chunk_size or table.chunk_size,
                         headline=headline or table.headline, spec=spec, progress=base.progress, announce=announce)
    except KeyboardInterrupt:
        raise SweepInterrupted(Path(out)) from None


class SweepInterrupted(Exception):
    """A sweep stopped by Ctrl-C; its finished points are in the store."""

    def __init__(self, directory: Path):
        super().__init__(str(directory))
        self.directory = directory


def _headline(summary: dict) -> str:
    lines = []
    for k, v in summary.items():
        if isinstance(v, (int, float, str, bool)):
            lines.append(f"  {k}: {v}")
    for name, fit in summary.get("fits", {}).items():
        value, err = fit["value"], fit.get("stderr", float("nan"))
        if fit.get("exact_recovery"):
            lines.append(f"  fit {name}: {value:.6g} (exact recovery of the generating value {fit.get('true'):.6g}; "
                         f"stderr {err:.1g} is round-off)")
            continue
        ref = {k: fit[k] for k in ("theory", "true", "golden_rule") if k in fit}
        if "compared_with" in fit:
            ref[f"vs {fit['compared_with']}"] = fit.get("kappa", float("nan"))
        refs = ", ".join(f"{k} {v:.6g}" for k, v in ref.items() if isinstance(v, (int, float)))
        lines.append(f"  fit {name}: {value:.6g} +- {err:.2g}" + (f"  ({refs})" if refs else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="thermojax", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="run an experiment from a config")
    p_run.add_argument("config", nargs="?", help=f"shipped name, TOML/JSON path or run directory ({DEFAULT_CONFIG})")
    p_run.add_argument("--out", help="run directory (default runs/<experiment>-<time>); refused if not empty")
    p_run.add_argument("--overwrite", action="store_true", help="replace a non-empty --out as a whole")
    p_run.add_argument("--resume", metavar="DIR", help="finish an interrupted run (its .incomplete directory)")
    p_run.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config value, e.g. --set model.n_levels=200 (repeatable)",
    )
    p_sw = sub.add_parser("sweep", help="run a parameter grid of an experiment (resumable; all devices and hosts)")
    p_sw.add_argument("config", help="shipped name, TOML/JSON path or run directory; its [sweep] table gives axes")
    p_sw.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                      help="a grid axis, e.g. --grid model.coupling=2e-4,4e-4 (repeatable; replaces the table's)")
    p_sw.add_argument("--seeds", type=int, metavar="K", help="repeat each point with seeds seed, ..., seed+K-1")
    p_sw.add_argument("--out", required=True, help="the sweep's store; rerunning with the same --out resumes it")
    p_sw.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                      help="override a base config value (repeatable)")
    p_sw.add_argument("--chunk-size", type=int, metavar="C", help="points per compiled call")
    p_sw.add_argument("--headline", help="headline number drawn against each axis")
    p_sw.add_argument("--coordinator", metavar="HOST:PORT", help="jax.distributed coordinator (explicit launch)")
    p_sw.add_argument("--num-processes", type=int, metavar="N", help="processes in an explicit launch")
    p_sw.add_argument("--process-id", type=int, metavar="I", help="this process's rank in an explicit launch")
    sub.add_parser("list", help="list shipped configs and registered experiments")
    args = parser.parse_args(argv)
    say = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
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
        if args.command == "sweep":
            return _sweep_main(args, say)
        if args.resume:
            if args.config or args.overrides or args.out:
                raise ConfigError("--resume takes the run directory only (its config is fixed)")
            path, result = resume(args.resume, announce=say)
        else:
            path, result = run(args.config, args.out, args.overrides, overwrite=args.overwrite, announce=say)
    except ConfigError as e:
        say(f"thermojax: {e}")
        return 2
    except MemoryError as e:
        say(f"thermojax: refused: {e}")
        return 2
    except Interrupted as e:
        kept = sorted(p.stem for p in (e.work / "stages").glob("*.done"))
        say(f"thermojax: interrupted; {len(kept)} finished stage(s) kept in {e.work} "
            f"({', '.join(kept) or 'none'}); continue with: thermojax run --resume {e.work}")
        return 130
    except KeyboardInterrupt:
        say("thermojax: interrupted")
        return 130
    print(f"results written to {path}")
    print(_headline(result.summary))
    return 0


def _sweep_main(args, say) -> int:
    dist = {"coordinator_address": args.coordinator, "num_processes": args.num_processes,
            "process_id": args.process_id}
    try:
        report = sweep(args.config, args.out, args.grid, args.seeds, args.overrides, chunk_size=args.chunk_size,
                       headline=args.headline, distributed={k: v for k, v in dist.items() if v is not None},
                       announce=say)
    except SweepInterrupted as e:
        stored = len(list((e.directory / "points").glob("*.npz")))
        say(f"thermojax: interrupted; {stored} point record(s) are stored in {e.directory}; rerun the same "
            "command to compute the rest")
        return 130
    counts = (f"{len(report.computed)} computed now, {len(report.reused)} reused, {len(report.redone)} redone "
              f"(corrupt records), of the {len(report.share)} this process owns")
    if report.summary is None:
        print(f"sweep points: {counts}")
        return 0
    print(f"sweep written to {report.directory}: {report.n_points} points; {counts}")
    print(_headline(report.summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
