"""thermojax: JAX-accelerated, differentiable dynamics of quantum thermalization.

The public API:

* solvers on your own operators: `sesolve`, `mesolve`, `ssesolve`,
  `solve_ode`, all returning one `Result`;
* method objects `ODE`, `Eigen`, `Expm`, `EulerMaruyama`,
  `DiffraxSDE` and the one `Options`;
* building blocks: `thermojax.lindblad`, `thermojax.thermal`,
  `thermojax.spectra` (`Eigensystem`), `thermojax.trajectories`,
  `thermojax.fit`, `thermojax.sweep`;
* the paper models in `thermojax.models`.

Importing thermojax enables 64-bit floats in JAX (`jax_enable_x64`).
"""

import jax

jax.config.update("jax_enable_x64", True)

from . import fit, lindblad, models, spectra, sweep, thermal, trajectories  # noqa: E402
from .fit import FitResult, fit_least_squares  # noqa: E402
from .lindblad import AbstractGenerator, Lindbladian  # noqa: E402
from .options import ODE, DiffraxSDE, Eigen, EulerMaruyama, Expm, Options  # noqa: E402
from .result import EnsembleStats, Result, Status  # noqa: E402
from .solvers import mesolve, sesolve, solve_ode, ssesolve  # noqa: E402
from .spectra import Eigensystem  # noqa: E402

__version__ = "0.2.0"

__all__ = [
    "sesolve",
    "mesolve",
    "ssesolve",
    "solve_ode",
    "Result",
    "Status",
    "EnsembleStats",
    "Options",
    "ODE",
    "Eigen",
    "Expm",
    "EulerMaruyama",
    "DiffraxSDE",
    "Eigensystem",
    "AbstractGenerator",
    "Lindbladian",
    "FitResult",
    "fit_least_squares",
    "fit",
    "lindblad",
    "models",
    "spectra",
    "sweep",
    "thermal",
    "trajectories",
]
