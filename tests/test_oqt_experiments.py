"""OQT experiments end to end at small sizes, and their config checks.

A. Mukherjee, arXiv:2504.16197 (`thermojax.experiments.oqt`; docs/models/oqt.md).
"""

import json

import numpy as np
import pytest

from thermojax import cli
from thermojax.config import ConfigError

SMALL_RELAXATION = [
    "model.dim=8", "trajectories.t_max=2.0", "trajectories.n_times=11", "trajectories.chunk_size=200",
    "fit.M_values=[200, 400]", "fit.n_batches=20", "norm_drift.dt_values=[0.02, 0.01]",
    'norm_drift.pictures=["interaction"]', "norm_drift.n_traj=64", "progress=false",
]
# n = 40, lambda = 6.25e-4, delta eps = 0.05: lambda n / de = 0.5, lambda^2 n / de^2 = 0.006
SMALL_CHAIN = ["model.n_levels=40", "model.coupling=6.25e-4", "fit.n_states=3", "times.n_times=31",
               "progress=false"]


@pytest.mark.slow  # ~30 s of CPU; the physics it checks is covered by test_oqt_model/_trajectories/_fits
def test_oqt_relaxation_end_to_end(tmp_path):
    path, result = cli.run("oqt_relaxation", str(tmp_path / "relax"), SMALL_RELAXATION)
    s = result.summary
    for name in ("arrays.npz", "summary.json", "config.json", "populations.png", "d_chi.png",
                 "energy_entropy.png", "norm_drift.png", "alpha_n_fit.png"):
        assert (path / name).is_file(), name
    saved = json.loads((path / "summary.json").read_text())
    assert set(saved["fits"]["alpha_N"]) >= {"value", "stderr", "true"}
    # D_chi: closed form = D(0) e^{-2 gamma t} exactly; the ensemble within its errors
    assert s["d_chi"]["closed_form_vs_formula_max_rel"] < 1e-10
    assert s["d_chi"]["ensemble_max_abs_z"] < 4.5
    a = result.arrays
    np.testing.assert_allclose(a["d_chi_closed"], a["d_chi_formula"], rtol=1e-10)
    assert np.all(a["d_chi_ens_err"][1:] > 0)
    f = s["fits"]["alpha_N"]
    assert f["true"] == 1.0 and f["stderr"] > 0 and abs(f["value"] - 1.0) < 4 * f["stderr"]
    assert s["alpha_N_vs_M"]["M"] == [200, 400]
    # the energy mismatch is reported, and the ensemble energy relaxes towards Tr(chi H)
    assert np.isfinite(s["energy_mismatch"]) and s["energy_mismatch"] != 0
    assert s["energy"]["ensemble_minus_closed_max_z"] < 4.5
    assert s["population_closed_form_check"] < 1e-12
    nd = s["norm_drift"]["interaction"]
    assert nd["rms"][1] < nd["rms"][0] and 0.2 < nd["slope_rms"] < 1.0
    assert s["n_diverged_main"] == 0


@pytest.mark.slow  # ~13 s of CPU
def test_oqt_chain_end_to_end(tmp_path):
    path, result = cli.run("oqt_chain", str(tmp_path / "chain"), SMALL_CHAIN)
    s = result.summary
    assert (path / "populations.png").is_file() and (path / "arrays.npz").is_file()
    f = s["fits"]["alpha_N_effective"]
    assert np.isfinite(f["value"]) and f["value"] > 0 and f["stderr"] > 0
    assert 0.3 < f["ratio_to_kappa"] < 3.0
    # OQT predicts no alpha_N: the golden-rule kappa is what it is compared with
    assert f["kappa"] == pytest.approx(s["kappa_golden_rule"]) and f["compared_with"] == "golden-rule kappa"
    assert f["ratio_to_kappa"] == pytest.approx(f["value"] / s["kappa_golden_rule"])
    np.testing.assert_allclose(s["P_chi_bands"], 1 / 3, atol=1e-12)  # degenerate bands: 1/N each
    assert s["population_closed_form_check"] < 1e-12
    a = result.arrays
    np.testing.assert_allclose(a["p_exact"].sum(1), 1.0, atol=1e-10)
    np.testing.assert_allclose(a["p_oqt_full"].sum(1), 1.0, atol=1e-10)
    np.testing.assert_allclose(a["p_oqt_full"][0], a["p_exact"][0], atol=1e-12)


@pytest.mark.parametrize(
    "name, override, key",
    [
        ("oqt_relaxation", "model.alpha_N=-1.0", "model.alpha_N"),
        ("oqt_relaxation", 'model.dim="big"', "model.dim"),
        ("oqt_relaxation", 'model.noise="colored"', "model.noise"),
        ("oqt_relaxation", "trajectories.dt=0.03", "trajectories"),
        ("oqt_relaxation", "fit.M_values=[510]", "fit"),
        ("oqt_relaxation", "norm_drift.dt_values=[0.3, 0.01]", "norm_drift"),
        ("oqt_chain", "oqt.alpha_N_over_kappa=-2.0", "oqt.alpha_N_over_kappa"),
        ("oqt_chain", "fit.n_states=true", "fit.n_states"),
        ("oqt_chain", "initial_subunit=4", "initial_subunit"),
    ],
)
def test_config_errors_name_the_key(name, override, key):
    with pytest.raises(ConfigError, match=f"`{key}"):
        cli.load_config(name, [override])


def test_shipped_configs_validate():
    for name in ("oqt_relaxation", "oqt_chain"):
        exp, cfg = cli.load_config(name)
        assert exp.name == name
