r"""Batches of stochastic trajectories: the SDE interface, integrators and ensembles.

Paper-agnostic. A model describes an Itô SDE
$\mathrm{d}y = f(t, y)\,\mathrm{d}t + g(t, y)\,\mathrm{d}W$ by subclassing
`AbstractSDE`; `solve_trajectory` integrates one path,
`simulate_trajectories` runs chunked, vmapped ensembles with streamed statistics,
`ensemble_mean` is the differentiable mean. The method objects
`thermojax.options.EulerMaruyama` and `thermojax.options.DiffraxSDE`
choose the integrator.
"""

from ._integrate import solve_trajectory
from .ensemble import ensemble_mean, estimate_memory, simulate_trajectories
from .sde import AbstractSDE

__all__ = ["AbstractSDE", "solve_trajectory", "simulate_trajectories", "ensemble_mean", "estimate_memory"]
