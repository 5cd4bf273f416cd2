"""Heat-chain experiments at small sizes: batching invariances and the figure paths."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from thermojax import cli

# n = 40, lambda = 6.25e-4, delta eps = 0.05: lambda n / de = 0.5, lambda^2 n / de^2 = 0.006
SMALL_FIG4 = ["model.n_levels=40", "model.coupling=6.25e-4", "n_states_cpu=10",
              "d2_times.n_times=51", "progress=false"]


def _fig4(extra=()):
    exp, cfg = cli.load_config("heat_chain_fig4", [*SMALL_FIG4, *extra])
    return exp.run(cfg)


@pytest.fixture(scope="module")
def fig4_reference():
    return _fig4(["chunk_size=10"])


def test_fig4_same_states_whatever_the_chunk(fig4_reference):
    other = _fig4(["chunk_size=3"])
    np.testing.assert_array_equal(other.arrays["D2"], fig4_reference.arrays["D2"])
    assert fig4_reference.arrays["D2"].shape == (10,)
    assert np.all(fig4_reference.arrays["D2"] > 0)


def test_fig4_sharded_over_two_devices_agrees(fig4_reference):
    code = (
        "import json, numpy as np; from thermojax import cli; import jax;"
        f"exp, cfg = cli.load_config('heat_chain_fig4', {SMALL_FIG4 + ['chunk_size=4']!r});"
        "r = exp.run(cfg); print(json.dumps([jax.device_count(), r.arrays['D2'].tolist()]))"
    )
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    n_dev, d2 = json.loads(out.stdout.strip().splitlines()[-1])
    assert n_dev == 2
    np.testing.assert_allclose(d2, fig4_reference.arrays["D2"], rtol=1e-10)


@pytest.mark.slow  # ~15 s of CPU; D² ~ 1/n itself: tests/test_heat_chain.py::test_d2_scales_as_inverse_band_size
def test_fig5_scaling_path(tmp_path):
    overrides = ["model.n_levels=40", "model.coupling=6.25e-4", "n_values=[20, 30, 40]",
                 "n_subunits_values=[2, 3]", "realisations=2", "realisations_vs_N=1",
                 "d2_times.n_times=51", "progress=false"]
    path, result = cli.run("heat_chain_fig5", str(tmp_path / "fig5"), overrides)
    s = result.summary
    assert result.arrays["D2_vs_n"].shape == (3, 2)
    assert np.isfinite(s["fits"]["exponent"]["value"]) and s["fits"]["exponent"]["stderr"] > 0
    assert (path / "d2_scaling.png").is_file()
