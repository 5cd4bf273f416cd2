"""SUI experiments end to end at small sizes: physics of the results and config errors.

Source: A. Mukherjee, arXiv:2504.16197, eqs. 7–8 (`thermojax.experiments.oqt.born_rule`,
`thermojax.experiments.oqt.hybrid`).
"""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from thermojax import cli
from thermojax.config import ConfigError
from thermojax.models.oqt import (
    OQTModel,
    dephase,
    hybrid_stationary_h0,
    sector_projectors,
    zeno_stationary,
)
from thermojax.spectra import Eigensystem, goe_matrix, random_ket, trace_distance

SMALL_BORN = ["system.dim=4", "system.sector_sizes=[2, 1, 1]", "n_traj=200", "t_final=6.0",
              "dt=0.02", "n_times=3", "decided_threshold=1e-2", "progress=false"]
SMALL_HYBRID = ["system.dim=4", "system.sector_sizes=[2, 1, 1]", "ratios.n=7",
                "check.n_traj=0", "progress=false"]
# the trajectory confirmation of one sweep point (run with -m slow)
TRAJ_CHECK = ["check.n_traj=200", "check.dt=0.01", "check.gamma_t_traj=4.0"]


def test_born_rule_experiment(tmp_path):
    path, result = cli.run("sui_born_rule", str(tmp_path / "born"), SMALL_BORN)
    s = result.summary
    assert s["dof"] == 2 and s["n_diverged"] == 0
    assert s["undecided"] <= 4
    assert s["n_counted"] + s["undecided"] == 200
    assert sum(s["counts"]) == s["n_counted"]
    np.testing.assert_allclose(sum(s["born_probabilities"]), 1.0, atol=1e-12)
    assert s["p_value"] > 0.01  # fixed seed
    assert s["p_value_vs_uniform"] < s["p_value"]
    assert s["mean_weights_max_z"] < 4.5  # E<P_k>(t) stays at the Born value
    saved = json.loads((path / "summary.json").read_text())
    assert saved["chi2"] == pytest.approx(s["chi2"])
    assert (path / "born_rule.png").is_file() and (path / "arrays.npz").is_file()


@pytest.mark.parametrize("trajectories", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_hybrid_experiment(trajectories, tmp_path):
    extra = TRAJ_CHECK if trajectories else []
    path, result = cli.run("sui_hybrid", str(tmp_path / "hybrid"), SMALL_HYBRID + extra)
    s, a = result.summary, result.arrays
    assert s["max_residual"] < 1e-10 and s["null_dim"] == [1]
    assert s["h0_closed_form_max_abs_err"] < 1e-10
    assert s["max_trace_error"] < 1e-12 and s["min_eigenvalue"] > -1e-12
    for name in ("H=0", "H"):
        lim = s["limits"][name]
        # ratio 1e-3 -> chi, ratio 1e3 -> Gamma-dominated reference, both O(1e-3) away
        assert lim["td_chi_at_min_ratio"] < 3e-3 * lim["td_chi_to_gamma_ref"] * 10
        assert lim["td_gamma_ref_at_max_ratio"] < 1e-2
        assert lim["td_chi_to_gamma_ref"] > 0.05  # the two limits are distinct
    # monotone interpolation for H = 0: T(rho, chi) grows, T(rho, D chi) falls
    assert np.all(np.diff(a["h0_td_chi"]) > 0) and np.all(np.diff(a["h0_td_zeno"]) < 0)
    gz = s["gamma_zero"]
    assert gz["born_state_max_abs_err"] < 1e-10 and gz["null_dim"] > 1
    assert s["checks"]["ode"]["max_abs_diff"] < 1e-8
    if trajectories:
        tr = s["checks"]["trajectories"]
        assert tr["n_diverged"] == 0 and tr["max_z_re"] < 4.5 and tr["max_z_im"] < 4.5
    else:
        assert "trajectories" not in s["checks"]
    assert (path / "hybrid_stationary.png").is_file()


def test_stationary_solver_matches_h0_closed_form_and_zeno_limit(getkey):
    """OQTModel.stationary_state against (gamma chi + Gamma D chi)/(gamma + Gamma) at H = 0,
    and against the Zeno state at H != 0 as Gamma grows (error O(|H|^2 / (gamma Gamma)))."""
    d = 6
    proj = sector_projectors([3, 2, 1], getkey())
    psi0 = random_ket(getkey(), d)
    ref = OQTModel.canonical(goe_matrix(getkey(), d), psi0, 0.5)
    es, steady, gamma = ref.eigensystem, ref.steady, 0.5
    es0 = Eigensystem(jnp.zeros(d), es.vectors)
    chi_m = ref.chi_matrix()
    for big_gamma in (1e-2, 1e2):
        m0 = OQTModel(es0, steady, gamma, Gamma=big_gamma, projectors=proj)
        st = m0.stationary_state()
        np.testing.assert_allclose(
            st.rho, hybrid_stationary_h0(chi_m, m0.projectors, gamma, big_gamma), atol=1e-12
        )
    h_eig = ref.hamiltonian_eig()
    errs = []
    for big_gamma in (1e2, 1e3, 1e4):
        m = OQTModel(es, steady, gamma, Gamma=big_gamma, projectors=proj)
        rho_z = zeno_stationary(h_eig, chi_m, m.projectors, gamma)
        errs.append(float(trace_distance(m.stationary_state().rho, rho_z)))
    assert errs[-1] < 1e-3
    ratios = np.array(errs[:-1]) / np.array(errs[1:])
    assert np.all((ratios > 7) & (ratios < 13)), errs  # O(1/Gamma)
    # the Zeno state is stationary for the projected generator, and D(rho_Z) = rho_Z
    rho_z = zeno_stationary(h_eig, chi_m, m.projectors, gamma)
    np.testing.assert_allclose(dephase(rho_z, m.projectors), rho_z, atol=1e-12)
    # helpers fail on wrong input: the H = 0 closed form is not the H != 0 state
    st = OQTModel(es, steady, gamma, Gamma=1.0, projectors=proj).stationary_state()
    assert float(jnp.max(jnp.abs(st.rho - hybrid_stationary_h0(chi_m, m.projectors, gamma, 1.0)))) > 1e-3


@pytest.mark.parametrize(
    "name, overrides, key",
    [
        ("sui_born_rule", ["Gamma=-1.0"], "Gamma"),
        ("sui_born_rule", ["Gamma=0.0"], "Gamma"),
        ("sui_born_rule", ["system.sector_sizes=[4, 2, 1]"], "system"),
        ("sui_born_rule", ["system.sector_sizes=[8]"], "system"),
        ("sui_born_rule", ["system.sector_sizes=[4, 4, 0]"], "system"),
        ("sui_born_rule", ["dt=0.007"], "<root>`: .*dt"),
        ("sui_born_rule", ["decided_threshold=2.0"], "decided_threshold"),
        ("sui_born_rule", ["noise='other'"], "noise"),
        ("sui_born_rule", ["n_trajectories=5"], "n_trajectories"),
        ("sui_hybrid", ["alpha_N=-0.5"], "alpha_N"),
        ("sui_hybrid", ["system.dim=5"], "system"),
        ("sui_hybrid", ["ratios.log10_max=-4.0"], "ratios"),
        ("sui_hybrid", ["check.ratio=0.0"], "check.ratio"),
        ("sui_hybrid", ["chi='thermal'"], "chi"),
    ],
)
def test_config_errors_name_the_key(name, overrides, key, tmp_path):
    with pytest.raises(ConfigError, match=f"key `{key}"):
        cli.run(name, str(tmp_path / "x"), overrides)
