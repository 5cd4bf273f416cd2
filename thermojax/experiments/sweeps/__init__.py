"""Parameter sweeps of the paper models, run with `thermojax sweep` (`docs/sweeps.md`).

Each module registers an experiment whose config is ONE point (what `thermojax run`
computes) and a `thermojax.sweep.PointKernel` that lets `thermojax sweep` run many
points batched: `kappa_scaling` (`sweep_kappa_scaling`: the heat chain's fitted
kappa over lambda x n and its power law) and `alpha_n` (`sweep_alpha_n`: OQT alpha_N
fits over alpha_N x d x seeds). They reuse the models and the experiments' own
functions; nothing here is new physics except the memory-corrected HAM time of
`kappa_scaling.memory_time`.
"""
