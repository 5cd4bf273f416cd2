"""Parameter sweeps of the paper models, run with `thermojax sweep` (`docs/sweeps.md`).

Each module registers an experiment whose config is ONE point (what `thermojax run`
computes) and a `thermojax.sweep.PointKernel` that lets `thermojax sweep` run many
points batched: `kappa_scaling` (`sweep_kappa_scaling`: the heat chain's fitted
kappa over lambda x n and its power law) and `alpha_n` (`sweep_alpha_n`: OQT alpha_N
fits over alpha_N x d x seeds). They reuse the models and the experiments' own
functions; the memory-corrected HAM time they fit with is
`thermojax.models.heat_chain.memory_time`.
"""

from ...sweep import PointKernel, run_point
from .. import ExperimentResult


def run_single_point(kernel: PointKernel, cfg) -> ExperimentResult:
    """`thermojax run` of a sweep experiment: the config as given, one point, unbatched."""
    res = run_point(kernel, cfg)
    return ExperimentResult(arrays=res.arrays, summary={**res.summary, "fits": res.headline})
