"""The experiments, one module each, backed by one notebook each (``notebooks/03x_*.py``).

A study module holds what its notebook runs (or the method modules it calls), how the tables it
wrote are read back (``load``), and what the paper says of them: its tables and its macros
(``numbers``), computed from the tables as written so that a reader can recompute every number.
Adding a number about one experiment to the paper touches that experiment's module, its notebook
and ``paper/main.tex``, and nothing else.

- :mod:`.gap_table`: experiment 1, the gap table in the form of Cremer et al.'s Table 2.
- :mod:`.convergence`: experiment 1b, the gaps at log-spaced epochs of training.
- :mod:`.width_sweep`: experiment 2, encoder width, jointly trained and against frozen decoders.
- :mod:`.refinement`: experiment 3, the tuned compute frontier, HMC and break-even.
- :mod:`.certification`: experiment 4, BDMC certification of log p(x), AIS lengths on real images.
- :mod:`.validation`: experiment 4b, q* from many starts and AIS validated at the gap table's settings.
- :mod:`.oracle`: experiment 5, the exact 2-d oracle on real images.
- :mod:`.synthesis`: what compares experiments: the results chapter's answers.
"""
