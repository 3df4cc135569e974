"""The size at which each figure's text prints in the paper, from the figure's PDF and the width at
which ``paper/main.tex`` includes it: a font of s points in a figure W points wide, included at a
width of w points, prints at s w / W. ``python -m amortgap.build.print_size`` prints the table.

Inside a ``minipage`` of width f ``\\linewidth``, ``\\linewidth`` is f times the enclosing one (nested
minipages multiply). The figures are matplotlib's PDFs: each piece of text sets its font and size with a ``Tf`` operator
in a (Flate-compressed) content stream, under a text matrix that rotates but does not scale. The
text width comes from ``main.tex``'s preamble: the paper size of ``\\documentclass`` (letter, or
``a4paper``) less the margins of ``\\usepackage[margin=...]{geometry}``; a layout the module cannot
read is refused, not guessed.
"""

from __future__ import annotations

import argparse
import re
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

PAPER_WIDTHS = {"letterpaper": 8.5, "a4paper": 210 / 25.4}  # inches
UNITS = {"in": 72.0, "cm": 72 / 2.54, "mm": 72 / 25.4, "pt": 72 / 72.27, "bp": 1.0}  # PDF points per unit
MIN_POINTS = 6.0  # the smallest text a printed page may hold


@dataclass(frozen=True)
class Inclusion:
    """One ``\\includegraphics`` of main.tex: the figure file, the width it is included at (PDF
    points), the figure's own width and the smallest font size in it (points)."""

    figure: str
    width: float
    natural_width: float
    smallest_font: float

    @property
    def smallest_printed(self) -> float:
        """The smallest text of the figure as printed, in points."""
        return self.smallest_font * self.width / self.natural_width


def text_width(tex: str) -> float:
    """``\\textwidth`` in PDF points, from the paper size and the geometry package's ``margin``."""
    documentclass = re.search(r"\\documentclass(?:\[([^\]]*)\])?\{article\}", tex)
    geometry = re.search(r"\\usepackage\[margin=([\d.]+)(in|cm|mm|pt|bp)\]\{geometry\}", tex)
    if documentclass is None or geometry is None:
        raise ValueError("main.tex's layout is not \\documentclass[...]{article} with \\usepackage[margin=...]{geometry}: "
                         "teach amortgap.build.print_size its text width")  # fmt: skip
    options = [o.strip() for o in (documentclass.group(1) or "").split(",")]
    paper = next((p for p in PAPER_WIDTHS if p in options), "letterpaper")
    return PAPER_WIDTHS[paper] * 72 - 2 * float(geometry.group(1)) * UNITS[geometry.group(2)]


def font_sizes(pdf: bytes) -> tuple[float, list[float]]:
    """A one-page PDF's width (its MediaBox, points) and the size of every ``Tf`` in its streams."""
    box = re.search(rb"/MediaBox\s*\[\s*([-\d.]+)\s+[-\d.]+\s+([-\d.]+)", pdf)
    if box is None:
        raise ValueError("no MediaBox: not a one-page PDF figure")
    sizes = []
    for stream in re.finditer(rb"stream\r?\n(.*?)endstream", pdf, re.S):
        try:
            content = zlib.decompress(stream.group(1))
        except zlib.error:
            content = stream.group(1)  # not compressed (or not text: then it holds no Tf)
        sizes += [float(size) for size in re.findall(rb"([\d.]+)\s+Tf\b", content)]
    return float(box.group(2)) - float(box.group(1)), sizes


def line_widths(tex: str) -> list[tuple[int, float]]:
    """(position in ``tex``, ``\\linewidth`` there as a fraction of ``\\textwidth``) at every
    ``\\begin{minipage}`` and ``\\end{minipage}``, in order, from the minipages' widths."""
    pattern = r"\\begin\{minipage\}(?:\[[^\]]*\])*\{([^}]*)\}|\\end\{minipage\}"
    stack, changes = [1.0], []
    for match in re.finditer(pattern, tex):
        if match.group(0).startswith("\\end"):
            stack.pop()
        else:
            width = re.fullmatch(r"([\d.]*)\\(?:linewidth|textwidth)", match.group(1).strip())
            if width is None:
                raise ValueError(f"\\begin{{minipage}}{{{match.group(1)}}}: give its width as a fraction of \\linewidth, "
                                 f"which amortgap.build.print_size reads")  # fmt: skip
            stack.append(stack[-1] * float(width.group(1) or 1))
        changes.append((match.end(), stack[-1]))
    return changes


def inclusions(paper: Path) -> list[Inclusion]:
    """Every figure that ``paper/main.tex`` includes with text in it, at its printed width. A figure
    without text (an image grid) has nothing to read and is left out."""
    tex = (paper / "main.tex").read_text()
    line, changes = text_width(tex), line_widths(tex)
    found = []
    for match in re.finditer(r"\\includegraphics(?:\[([^\]]*)\])?\{([^}]+)\}", tex):
        width = re.fullmatch(r"width=([\d.]*)\\(?:linewidth|textwidth)", match.group(1) or "")
        if width is None:
            raise ValueError(f"\\includegraphics[{match.group(1)}]{{{match.group(2)}}}: give its width as a fraction "
                             f"of \\linewidth, which amortgap.build.print_size reads")  # fmt: skip
        here = ([1.0] + [fraction for at, fraction in changes if at <= match.start()])[-1]
        natural, sizes = font_sizes((paper / "figures" / match.group(2)).read_bytes())
        if sizes:
            found.append(Inclusion(match.group(2), float(width.group(1) or 1) * here * line, natural, min(sizes)))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m amortgap.build.print_size", description=__doc__.splitlines()[0])
    parser.add_argument("--paper", type=Path, default=Path("paper"))
    args = parser.parse_args(argv)
    for figure in sorted(inclusions(args.paper), key=lambda f: f.smallest_printed):
        flag = "  below 6 pt" if figure.smallest_printed < MIN_POINTS else ""
        print(f"{figure.smallest_printed:5.2f} pt  {figure.figure} ({figure.smallest_font:g} pt font, "
              f"{figure.natural_width:.0f} pt wide, printed {figure.width:.0f} pt){flag}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
