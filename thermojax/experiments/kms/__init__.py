"""Experiments of the KMS open-system paper (Scandi & Alhambra, arXiv:2505.20064).

* `kms_fixed_point` (`fixed_point.py`): the fixed-point error of every generator
  against the coarse-graining time, the coarse-grained exponent fit, the quadrature
  error and the distance to Davies;
* `kms_relaxation` (`relaxation.py`): relaxation from a product state, energy,
  trace distance to the Gibbs state and the smallest eigenvalue of rho(t), gaps;
* `kms_gap` (`gap.py`): spectral gap of the exact-KMS generator against N;
* `kms_finite_bath` (`finite_bath.py`): every generator against the exact reduced
  dynamics of a spin coupled to a random-matrix bath, with fitted lambda^2.

The model is `thermojax.models.kms`; the physics is in `docs/models/kms.md`.
"""
