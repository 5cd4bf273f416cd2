"""What a new user hit, each as a test: nothing overwritten, nothing mixed, an interrupt
keeps finished stages and --resume finishes them with the same numbers, and sizes that
cannot fit are refused within seconds with the key named."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from thermojax import cli

# Small, fast configs (the same experiments the shipped configs run).
BORN = ["n_traj=40", "t_final=1.0", "n_times=11", "progress=false"]
HYBRID = ["ratios.n=3", "check.n_traj=0", "check.ode=false", "progress=false"]


def _files(path):
    return sorted(p.name for p in path.iterdir())


def test_non_empty_out_is_refused_and_overwrite_replaces_it_whole(tmp_path, capsys):
    out = tmp_path / "existing"
    out.mkdir()
    (out / "notes.txt").write_text("the user's notes")
    (out / "populations.png").write_bytes(b"an old figure")
    assert cli.main(["run", "sui_born_rule", "--out", str(out), *sum([["--set", s] for s in BORN], [])]) == 2
    err = capsys.readouterr().err
    assert "exists and is not empty" in err and "--overwrite" in err
    assert _files(out) == ["notes.txt", "populations.png"]  # untouched
    assert (out / "notes.txt").read_text() == "the user's notes"
    assert cli.main(["run", "sui_born_rule", "--out", str(out), "--overwrite",
                     *sum([["--set", s] for s in BORN], [])]) == 0
    # replaced as a whole: no file of the old run is left beside the new one
    assert _files(out) == ["arrays.npz", "born_rule.png", "config.json", "summary.json"]
    assert not (tmp_path / "existing.incomplete").exists()


def test_run_directory_is_announced_at_the_start_and_accepted_as_config(tmp_path, capsys):
    out = tmp_path / "run1"
    assert cli.main(["run", "sui_hybrid", "--out", str(out), *sum([["--set", s] for s in HYBRID], [])]) == 0
    err = capsys.readouterr().err
    assert f"-> {out}" in err.splitlines()[0]
    # a run directory repeats the run exactly
    out2 = tmp_path / "run2"
    assert cli.main(["run", str(out), "--out", str(out2)]) == 0
    a, b = np.load(out / "arrays.npz"), np.load(out2 / "arrays.npz")
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k])


def test_bad_override_is_blamed_on_the_override(capsys):
    assert cli.main(["run", "heat_chain_fig2", "--set", "model.n=200"]) == 2
    err = capsys.readouterr().err
    assert "with --set model.n=200" in err and "key `model.n`: unknown key" in err


def test_help_example_is_a_real_key():
    parser_help = subprocess.run([sys.executable, "-m", "thermojax.cli", "run", "--help"], capture_output=True,
                                 text=True).stdout
    assert "--set model.n_levels=200" in parser_help
    # and that example validates
    cli.load_config("heat_chain_fig2", ["model.n_levels=200"])


@pytest.mark.parametrize(
    ("config", "override", "key"),
    [
        ("heat_chain_fig2", "model.n_levels=20000", "model.n_levels"),
        ("heat_chain_fig2", "model.n_subunits=1000", "model.n_levels"),
        ("oqt_relaxation", "model.dim=100000", "model.dim"),
        ("sui_born_rule", "n_traj=100000000", "n_traj"),
    ],
)
def test_sizes_that_cannot_fit_are_refused_in_seconds(config, override, key, tmp_path):
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "thermojax.cli", "run", config, "--set", override, "--out", str(tmp_path / "x")],
        capture_output=True, text=True, timeout=120,
    )
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr  # one line, no traceback
    assert f"key `{key}`" in lines[0] and "GiB" in lines[0] and "available" in lines[0]
    assert elapsed < 60  # seconds, not the minutes it took to be killed before
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.incomplete").exists()


def test_library_entry_points_refuse_impossible_sizes_before_allocating():
    import jax

    from thermojax.models.heat_chain import HeatChain
    from thermojax.spectra import goe_matrix

    with pytest.raises(MemoryError, match="n_levels"):
        HeatChain.random(jax.random.key(0), 3, 20000)
    with pytest.raises(MemoryError, match="GOE matrix of dimension 100000"):
        goe_matrix(jax.random.key(0), 100000)


def test_interrupt_keeps_stages_and_resume_equals_an_uninterrupted_run(tmp_path):
    """Ctrl-C after the first stage: one line, the stage kept in DIR.incomplete; --resume
    loads it instead of recomputing and ends with the uninterrupted run's arrays."""
    small = ["fit.M_values=[100, 200]", "fit.n_batches=10", "model.dim=8", "trajectories.n_show=1",
             "norm_drift.n_traj=16", "norm_drift.dt_values=[0.02, 0.01]", "trajectories.t_max=0.5",
             "trajectories.n_times=6", "progress=false"]
    sets = sum([["--set", s] for s in small], [])
    ref = tmp_path / "ref"
    assert cli.main(["run", "oqt_relaxation", "--out", str(ref), *sets]) == 0
    out = tmp_path / "interrupted"
    work = tmp_path / "interrupted.incomplete"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # a shell's background job (as this test run may be) inherits SIGINT ignored, and Python then
    # installs no KeyboardInterrupt handler: the child restores it, as an interactive shell would
    launch = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
              "from thermojax.cli import main; sys.exit(main(sys.argv[1:]))")
    proc = subprocess.Popen([sys.executable, "-c", launch, "run", "oqt_relaxation", "--out", str(out), *sets],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 300
    while not (work / "stages" / "ensemble_M100.done").exists():
        assert proc.poll() is None and time.time() < deadline, "the run ended before its first stage"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, f"the run was not interrupted (exit {proc.returncode}):\n{err[-2000:]}"
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err and lines[-1].startswith("thermojax: interrupted;")
    assert "--resume" in lines[-1] and (work / "stages" / "ensemble_M100.done").exists()
    assert not out.exists()
    assert cli.main(["run", "--resume", str(work)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert "ensemble_M100" in summary["resumed_stages"]
    a, b = np.load(ref / "arrays.npz"), np.load(out / "arrays.npz")
    assert a.files == b.files
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert not work.exists() and _files(out) == _files(ref)
