"""Heat-conduction chain experiments: paper Figs. 2, 3, 4, 5 and 8.

Source: M. Michel, J. Gemmer, G. Mahler, PRE 73, 016101 (2006), cond-mat/0511727; the
model is `thermojax.models.heat_chain`, its physics in `docs/models/heat_chain.md`.
One module per figure: `relaxation` (Figs. 2, 3), `histogram` (Fig. 4), `scaling`
(Fig. 5), `conductivity` (Fig. 8).
"""
