"""Run directories, configs and the command line."""

import json

import numpy as np
import pytest

from thermojax import cli
from thermojax.config import ConfigError
from thermojax.io import load_run, save_run

# A small relaxation run (eq. 29 holds: lambda n / de = 0.58, lambda^2 n / de^2 = 0.01).
SMALL = ["model.n_levels=32", "model.coupling=9e-4", "times.n_times=21", "d2_times.n_times=101",
         "fit.n_states=3", "progress=false"]


def test_save_load_round_trip(tmp_path):
    arrays = {"x": np.arange(5.0), "z": np.array([[1 + 2j, 3j]]), "k": np.int32(3)}
    summary = {"fits": {"a": {"value": 1.0, "stderr": 0.1}}, "nan": float("nan")}
    out = save_run(tmp_path / "run", arrays=arrays, summary=summary,
                   config={"experiment": "demo", "seed": 7})
    loaded, s = load_run(out)
    assert set(loaded) == set(arrays)
    for k in arrays:
        np.testing.assert_array_equal(loaded[k], arrays[k])
        assert loaded[k].dtype == np.asarray(arrays[k]).dtype
    assert s["seed"] == 7 and s["experiment"] == "demo"
    assert s["fits"]["a"]["value"] == 1.0 and s["nan"] is None
    assert s["environment"]["versions"]["jax"]
    assert json.loads((out / "config.json").read_text()) == {"experiment": "demo", "seed": 7}


def test_save_rejects_object_arrays(tmp_path):
    with pytest.raises(TypeError, match="dtype object"):
        save_run(tmp_path, arrays={"bad": np.array([{}, 1], dtype=object)}, summary={}, config={})


def test_list_shows_shipped_configs(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ["heat_chain_fig2", "heat_chain_fig3", "heat_chain_fig4", "heat_chain_fig5",
                 "heat_chain_fig8"]:
        assert name in out
    # every shipped config validates
    for name in cli.shipped_configs():
        cli.load_config(name)


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.n_levelz=3", "key `model.n_levelz`: unknown key"),
        ("model.n_levels=2.5", "key `model.n_levels`: Input should be a valid integer"),
        ("model.coupling=-1e-3", "key `model.coupling`: Input should be greater than 0"),
        ("model.band_width=5.0", "band_width (5.0) must be < 2 * gap"),
        ("initial_subunit=4", "initial_subunit (4) exceeds model.n_subunits (3)"),
        ("seed='abc'", "key `seed`: Input should be a valid integer"),
    ],
)
def test_config_errors_name_the_key(override, message):
    with pytest.raises(ConfigError) as e:
        cli.load_config("heat_chain_fig2", [override])
    assert message in str(e.value)


def test_unknown_experiment_and_missing_file(tmp_path):
    bad = tmp_path / "x.toml"
    bad.write_text('experiment = "nope"\n')
    with pytest.raises(ConfigError, match="unknown experiment 'nope'"):
        cli.load_config(str(bad))
    with pytest.raises(ConfigError, match="no config file"):
        cli.load_config("does_not_exist")
    assert cli.main(["run", "does_not_exist"]) == 2


@pytest.mark.slow  # ~25 s of CPU; the physics is asserted by tests/test_heat_chain.py
def test_small_relaxation_run_end_to_end(tmp_path, capsys):
    out = tmp_path / "fig2"
    sets = [a for o in SMALL for a in ("--set", o)]
    assert cli.main(["run", "heat_chain_fig2", "--out", str(out), *sets]) == 0
    arrays, s = load_run(out)
    assert (out / "populations.png").is_file() and (out / "fit_loss.png").is_file()
    assert arrays["p_exact"].shape == (21, 3)
    np.testing.assert_allclose(arrays["p_exact"].sum(-1), 1.0, atol=1e-10)
    fits = s["fits"]
    assert abs(fits["lambda_direct"]["value"] / 9e-4 - 1) < 1e-6
    assert fits["kappa"]["stderr"] > 0 and np.isfinite(fits["kappa"]["value"])
    assert s["config"]["model"]["n_levels"] == 32 and s["seed"] == 0
    # the saved config repeats the run
    exp, cfg = cli.load_config(str(out / "config.json"))
    assert cfg.model.n_levels == 32 and exp.name == "heat_chain_relaxation"


def test_conductivity_run(tmp_path):
    overrides = ["n_temperatures=200", "progress=false"]
    path, result = cli.run("heat_chain_fig8", str(tmp_path / "fig8"), overrides)
    assert result.summary["max_rel_diff_eq47_vs_eq51"] < 1e-12
    assert (path / "conductivity.png").is_file()


def test_registry_finds_all_experiments_after_a_direct_module_import():
    code = (
        "import thermojax.experiments.oqt.born_rule; from thermojax.experiments import registry;"
        "print(sorted(registry()))"
    )
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    for name in ["heat_chain_relaxation", "oqt_relaxation", "sui_born_rule"]:
        assert name in out.stdout
