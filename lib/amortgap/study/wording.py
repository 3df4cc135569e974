"""How the study's numbers read in the paper's prose: a difference's verdict at 95%, a list as a
sentence says it, a count to the figures it can carry, and each family's name inside a macro's name.
Shared by the study modules that write macros (a module apart from :mod:`amortgap.report`, which
every stage runs, so that a change of wording reruns only the stages that use it)."""

from __future__ import annotations

import math

from ..stats import Interval

FAMILY_KEYS = {"diagonal": "Ffg", "planar": "Flow"}  # each encoder family's name inside a macro's name


def compared(difference: Interval) -> str:
    """How a difference's 95% interval reads: "larger" (all above zero), "smaller" (all below) or
    "neither smaller nor larger"."""
    return "larger" if difference.low > 0 else "smaller" if difference.high < 0 else "neither smaller nor larger"


def in_words(items: list[str]) -> str:
    """A list as a sentence says it: "a", "a and b", "a, b and c"."""
    return " and ".join([", ".join(items[:-1]), items[-1]] if len(items) > 1 else items)


def to_significant(value: float, figures: int = 2) -> float:
    """``value`` rounded to ``figures`` significant figures (59,997 -> 60,000 at two): for a number
    whose run-to-run spread makes its last digits noise, such as a count derived from timings."""
    if value == 0 or not math.isfinite(value):
        return value
    return float(round(value, figures - 1 - math.floor(math.log10(abs(value)))))
