r"""Experiments of paper 004: energy diffusion in slowly driven chaotic systems.

`H(t) = H0 + eps t V` with `H0`, `V` from the GOE; exact evolution of eigenstates of
`H(0)` against the Smoluchowski equation (`thermojax.models.driven`):

* `driven_variance` (`variance.py`): Var E against t for several drive rates, the
  fitted D / eps^2 against eps with the adiabatic, golden-rule and sudden regimes;
* `driven_profile` (`profile.py`): snapshots of eta(E, t), exact against the PDE with
  the fitted coefficient and with eq. 47's;
* `driven_coefficient` (`coefficient.py`): the fitted coefficient with its
  jackknife error against the golden rule and eq. 47, and eq. 47's quantum term.

Shared pieces (config keys, realisation loop, fits, jackknife) are in `_common.py`.
"""
