"""Build tooling, not science: running notebooks with checked parameters (:mod:`.pipeline`), comparing
two builds (:mod:`.compare`), the numeric modes that stand in for other CPUs (:mod:`.numeric_modes`) and
gathering DVC experiments (:mod:`.collect`). ``import amortgap`` never imports this package."""
