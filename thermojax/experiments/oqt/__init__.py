r"""Objective quantum thermalization (OQT) and SUI experiments.

Source: A. Mukherjee, arXiv:2504.16197 — the SSE (eq. 5), its master equation (eq. 6)
$\dot\rho = -i[H,\rho] + \gamma(\chi\,\mathrm{Tr}\rho - \rho)$, the SUI hybrid with
collapse (eqs. 7, 8); the model is `thermojax.models.oqt`, its physics in
`docs/models/oqt.md`. Modules: `relaxation` (`oqt_relaxation`), `chain`
(`oqt_chain`), `born_rule` (`sui_born_rule`), `hybrid` (`sui_hybrid`); `common` holds the
pieces they share.
"""
