"""Sweeps on JAX's runtime, each as the user runs them (the command line in fresh
processes): four devices of one host give the numbers of one device; two processes
under `jax.distributed` fill the store one process fills; `kill -9` mid-sweep and a
rerun recomputes nothing that was stored, redoes a truncated record and ends with the
uninterrupted run's store, no point duplicated or lost.

XLA reads `--xla_force_host_platform_device_count` when JAX starts, so every run
here is a subprocess; each costs a few seconds of start-up and one compilation.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from thermojax import cli
from thermojax.sweep import SweepStore

# 8 tiny OQT points in one compiled group (d = 4; 2 alpha_N x 4 seeds)
TINY = ["sweep={}", "model.dim=4", "fit.n_traj=64", "fit.n_batches=4", "trajectories.t_max=0.4",
        "trajectories.n_times=5", "trajectories.dt=0.05", "trajectories.chunk_size=32", "progress=false"]
GRID = ["--grid", "model.alpha_N=0.5,1.0", "--seeds", "4"]


def _args(out, chunk):
    return ["sweep", "sweep_alpha_n", *GRID, "--chunk-size", str(chunk), "--out", str(out),
            *sum([["--set", s] for s in TINY], [])]


def _cmd(out, chunk):
    return [sys.executable, "-m", "thermojax.cli", *_args(out, chunk)]


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_"))}
    # keep the test run's compile setting (conftest.py), so that subprocesses round as this process does
    opt = [f for f in os.environ.get("XLA_FLAGS", "").split() if f.startswith("--xla_backend_optimization_level")]
    flags = " ".join(opt + extra.pop("XLA_FLAGS", "").split())
    if flags:
        env["XLA_FLAGS"] = flags
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def _contents(directory: Path) -> dict:
    """id -> (arrays, record without its `run` part): what two runs must agree on."""
    out = {}
    for f in sorted((directory / "points").glob("*.npz")):
        with np.load(f, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files if k != "__record__"}
            meta = json.loads(str(z["__record__"]))
        meta.pop("run")
        out[f.stem] = (arrays, meta)
    return out


def _assert_same_store(a: Path, b: Path, rtol: float = 0.0):
    ca, cb = _contents(a), _contents(b)
    assert sorted(ca) == sorted(cb)  # the same points, none lost, none extra
    for pid in ca:
        (xa, ma), (xb, mb) = ca[pid], cb[pid]
        assert sorted(xa) == sorted(xb)
        for k in xa:
            if rtol:
                np.testing.assert_allclose(xa[k], xb[k], rtol=rtol, atol=1e-15, err_msg=f"{pid}/{k}")
            else:
                np.testing.assert_array_equal(xa[k], xb[k], err_msg=f"{pid}/{k}")
        if rtol:
            for name, h in ma["headline"].items():
                for key, v in h.items():
                    if isinstance(v, float):
                        assert mb["headline"][name][key] == pytest.approx(v, rel=rtol, abs=1e-15), (pid, name, key)
            ma = {k: v for k, v in ma.items() if k not in ("headline", "summary", "arrays_sha256")}
            mb = {k: v for k, v in mb.items() if k not in ("headline", "summary", "arrays_sha256")}
        assert ma == mb, pid


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted single-process, single-device store (chunks of 4 points)."""
    root = tmp_path_factory.mktemp("reference")
    report = cli.sweep("sweep_alpha_n", str(root / "chunk4"), GRID[1:2], 4, TINY, chunk_size=4)
    assert sorted(report.computed) == list(range(8))
    return root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_four_devices_of_one_host_give_the_one_device_numbers(reference, tmp_path):
    out = tmp_path / "four"
    env = _env(XLA_FLAGS="--xla_force_host_platform_device_count=4")
    probe = subprocess.run([sys.executable, "-c", "import jax; print(jax.local_device_count())"], env=env,
                           capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "4"
    proc = subprocess.run(_cmd(out, 4), env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "8 computed now" in proc.stdout
    _assert_same_store(reference / "chunk4", out, rtol=1e-12)
    records = SweepStore(out)
    metas = [json.loads(str(np.load(f)["__record__"])) for f in records.points_dir.glob("*.npz")]
    assert {m["run"]["devices"] for m in metas} == {4}  # each chunk of 4 points sharded over 4 devices


def test_two_processes_with_jax_distributed_fill_the_store_of_one(reference, tmp_path):
    out = tmp_path / "two"
    port = _free_port()
    procs = [
        subprocess.Popen(_cmd(out, 4), env=_env(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2",
                                                JAX_PROCESS_ID=str(i)),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (so, se) in zip(procs, outs):
        assert p.returncode == 0, se
    assert "sweep written to" in outs[0][0] and "4 computed now" in outs[0][0]  # process 0: its share + summary
    assert "sweep points: 4 computed now" in outs[1][0] and "process 1 of 2" in outs[1][1]
    _assert_same_store(reference / "chunk4", out)  # bit for bit
    metas = [json.loads(str(np.load(f)["__record__"])) for f in (out / "points").glob("*.npz")]
    assert sorted(m["run"]["process"] for m in metas) == [0] * 4 + [1] * 4
    summary = json.loads((out / "summary.json").read_text())
    ref = json.loads((reference / "chunk4" / "summary.json").read_text())
    assert summary["table"] == ref["table"]


def test_kill_mid_sweep_then_rerun_recomputes_nothing_stored(reference, tmp_path):
    out = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(out, 4), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    points = out / "points"
    while len(list(points.glob("*.npz")) if points.is_dir() else []) < 2:  # in the first chunk of four
        assert proc.poll() is None and time.time() < deadline, "the sweep ended before the kill"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    stored = {f.stem: f.stat().st_mtime_ns for f in points.glob("*.npz")}
    if len(stored) == 8:
        pytest.skip("the sweep finished between the last check and the kill")
    assert not (out / "summary.json").exists()
    # damage one finished record as a crash of the disk or a careless copy would
    victim = sorted(stored)[0]
    data = (points / f"{victim}.npz").read_bytes()
    (points / f"{victim}.npz").write_bytes(data[: len(data) // 2])
    report = cli.sweep("sweep_alpha_n", str(out), GRID[1:2], 4, TINY, chunk_size=4)
    n_kept = len(stored) - 1
    assert len(report.reused) == n_kept and len(report.redone) == 1
    assert len(report.computed) == 8 - n_kept  # stored points are not computed again
    for pid, mtime in stored.items():
        if pid != victim:
            assert (points / f"{pid}.npz").stat().st_mtime_ns == mtime  # untouched
    _assert_same_store(reference / "chunk4", out)  # bit for bit
    ref_names = sorted(p.name for p in (reference / "chunk4" / "points").iterdir())
    assert sorted(p.name for p in points.iterdir()) == ref_names  # no temporary file left
    # a third run finds everything stored and computes nothing
    again = cli.sweep("sweep_alpha_n", str(out), GRID[1:2], 4, TINY, chunk_size=4)
    assert again.computed == [] and len(again.reused) == 8
