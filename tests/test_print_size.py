"""Every figure's text prints at 6 pt or more in the paper (issue 23, item 5): measured from the
figure's PDF, its font sizes and the width at which main.tex includes it, checked first on a figure
whose printed size is known."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from amortgap.build import print_size  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PREAMBLE = "\\documentclass[11pt]{article}\n\\usepackage[margin=1in]{geometry}\n"

# Figures drawn too wide for their place in the paper, so that their text prints below 6 pt. Their
# sizes are set in amortgap.plots, which nearly every stage imports: they are redrawn in the next
# whole rebuild (issue 23), and each leaves this list then (the test fails while one that prints
# at 6 pt or more is still on it).
TOO_SMALL_UNTIL_REBUILD = {
    "training_protocols/protocol_curves.pdf", "results/gaps_against_units.pdf", "model_setup/learning_curves.pdf",
    "validation/search_shortfalls.pdf", "refinement/frontier.pdf", "width_sweep/width_sweep.pdf",
    "oracle/oracle_posterior.pdf", "oracle/oracle_errors.pdf", "background/gaps_vs_capacity.pdf",
    "background/posterior_contours.pdf",
}  # fmt: skip


def test_a_figures_text_prints_at_its_font_size_times_its_scale(tmp_path):
    (tmp_path / "figures").mkdir()
    fig, ax = plt.subplots(figsize=(4, 3))  # 288 points wide
    ax.set_title("title", fontsize=10)
    ax.set_ylabel("a rotated label", fontsize=8)
    ax.tick_params(labelsize=9)
    fig.savefig(tmp_path / "figures" / "fig.pdf")
    plt.close(fig)
    side_by_side = ("\\begin{minipage}[t]{0.6\\linewidth}\\begin{minipage}{0.5\\linewidth}\\includegraphics[width=\\linewidth]{fig.pdf}"
                    "\\end{minipage}\\end{minipage}\\hfill\\begin{minipage}[t]{0.4\\linewidth}\\end{minipage}\n")  # fmt: skip
    (tmp_path / "main.tex").write_text(PREAMBLE + "\\includegraphics[width=0.5\\linewidth]{fig.pdf}\n" + side_by_side
                                       + "\\includegraphics[width=0.9\\textwidth]{fig.pdf}\n")  # fmt: skip
    half, nested, after = print_size.inclusions(tmp_path)
    assert half.natural_width == pytest.approx(288) and half.width == pytest.approx(0.5 * 468)
    assert half.smallest_font == pytest.approx(8)
    assert half.smallest_printed == pytest.approx(8 * 234 / 288)
    assert nested.width == pytest.approx(0.6 * 0.5 * 468), "a minipage's \\linewidth is its own width"
    assert after.width == pytest.approx(0.9 * 468), "after the minipages, the text width again"


def test_the_text_width_is_the_paper_less_its_margins_and_an_unread_layout_is_refused(tmp_path):
    assert print_size.text_width(PREAMBLE) == pytest.approx(6.5 * 72)
    a4 = "\\documentclass[a4paper,11pt]{article}\n\\usepackage[margin=2cm]{geometry}\n"
    assert print_size.text_width(a4) == pytest.approx((21 - 4) / 2.54 * 72)
    with pytest.raises(ValueError, match="teach amortgap.build.print_size its text width"):
        print_size.text_width("\\documentclass{book}\n")
    (tmp_path / "main.tex").write_text(PREAMBLE + "\\includegraphics[height=3cm]{fig.pdf}\n")
    with pytest.raises(ValueError, match="as a fraction of"):
        print_size.inclusions(tmp_path)
    (tmp_path / "main.tex").write_text(PREAMBLE + "\\begin{minipage}{5cm}\\includegraphics[width=\\linewidth]{fig.pdf}\\end{minipage}\n")
    with pytest.raises(ValueError, match="minipage"):
        print_size.inclusions(tmp_path)


def test_every_figure_of_the_paper_prints_its_text_at_6_pt_or_more():
    figures = {f.figure: f.smallest_printed for f in print_size.inclusions(ROOT / "paper")}
    assert len(figures) >= 15 and TOO_SMALL_UNTIL_REBUILD <= set(figures)
    small = {name: round(size, 2) for name, size in figures.items() if size < print_size.MIN_POINTS}
    assert not set(small) - TOO_SMALL_UNTIL_REBUILD, f"text below 6 pt as printed: {small}"
    assert not TOO_SMALL_UNTIL_REBUILD - set(small), "now at 6 pt or more: take them off TOO_SMALL_UNTIL_REBUILD"
