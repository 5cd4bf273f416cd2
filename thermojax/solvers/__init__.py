"""The public solvers: one per file, as in dynamiqs.

* `sesolve` — Schrödinger equation;
* `mesolve` — Lindblad master equation (or any linear generator);
* `ssesolve` — diffusive stochastic Schrödinger equation (trajectory ensembles);
* `solve_ode` — any ODE through diffrax, returning the same `Result`.
"""

from ._common import solve_ode
from .mesolve import mesolve
from .sesolve import sesolve
from .ssesolve import DiffusiveSSE, ssesolve

__all__ = ["sesolve", "mesolve", "ssesolve", "solve_ode", "DiffusiveSSE"]
