"""Classical-like solids (C. Chafin, arXiv:1412.1347): four experiments on `thermojax.models.solid`.

* `solid_localization` — position spread per atom of a thawed-Gaussian FPU-β lattice
  against the atom mass and time: where the localization claim holds.
* `solid_collision` — two half-chains colliding at ±v (the paper's Fig. 1): normal-mode
  energies, spectral entropy and the fitted equipartition time.
* `planck_counting` — the microcanonical photon-number distribution against Planck's law
  at $1/T = \\partial\\ln g/\\partial E$ as the number of oscillators grows.
* `planck_dynamics` — time-averaged photon-number distribution inside a shell of fixed
  quanta for two couplings (quadratic hopping, two-body), against counting, with OQT on top.
"""
