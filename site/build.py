"""Build the amortgap site from the pipeline's committed outputs, offline, without running a notebook.

    python site/build.py [--out build/site] [--root .]

It assembles a Sphinx source folder in build/site-src: the rendered notebooks (one chapter each), a
landing page (the paper's abstract with its generated numbers filled in, the headline figure, links
to every chapter and to the PDF), a figures page (every figure of the paper with its provenance line
linking to the notebook that made it, read from dvc.yaml) and the PDF; then runs sphinx-build.
MathJax comes from Debian's libjs-mathjax (the subset that typesets TeX as HTML), copied into the site.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

MATHJAX = Path("/usr/share/javascript/mathjax")
MATHJAX_PARTS = ["MathJax.js", "config/TeX-AMS_CHTML.js", "extensions", "jax/input/TeX", "jax/element",
                 "jax/output/CommonHTML", "fonts/HTML-CSS/TeX/woff"]  # fmt: skip
HEADLINE_FIGURE = "width_sweep/width_sweep.png"
CHAPTER_TITLES = {"01": "Background", "02": "Model setup", "03": "Experiments", "04": "Results"}


def macros(generated: Path) -> dict[str, str]:
    """Every \\newcommand{\\Name}{value} of the pipeline's generated LaTeX files."""
    pattern = re.compile(r"\\newcommand\{\\(\w+)\}\{(.*)\}\s*$")
    found = {}
    for path in sorted(generated.glob("*.tex")):
        for line in path.read_text().splitlines():
            if match := pattern.match(line):
                found[match[1]] = match[2]
    return found


def latex_to_markdown(text: str, values: dict[str, str]) -> str:
    """The small LaTeX subset of the abstract as Markdown: generated macros filled in, emphasis,
    non-breaking spaces and escaped percent signs; inline math is left to MathJax."""
    def macro(match: re.Match) -> str:
        if match[1] not in values:
            raise KeyError(f"the abstract uses \\{match[1]}, which no generated file defines")
        return values[match[1]].replace(r"\,", "\u2009")
    text = re.sub(r"\\(\w+)\{\}", macro, text)
    text = re.sub(r"\\emph\{([^}]*)\}", r"*\1*", text)
    text = re.sub(r"\\\(|\\\)", "$", text)  # \( ... \) -> $ ... $
    text = re.sub(r"\\\s", " ", text).replace("~", "\u00a0").replace(r"\%", "%").replace("\\\\", " ")
    if leftover := re.findall(r"\\[A-Za-z]+", re.sub(r"\$[^$]*\$", "", text)):
        raise ValueError(f"the abstract uses LaTeX the site cannot convert: {sorted(set(leftover))}")
    return re.sub(r"[ \t]*\n[ \t]*", " ", text).strip()


def abstract(main_tex: Path, values: dict[str, str]) -> str:
    """The paper's abstract as one Markdown paragraph."""
    match = re.search(r"\\begin\{abstract\}(.*?)\\end\{abstract\}", main_tex.read_text(), re.S)
    if match is None:
        raise ValueError(f"{main_tex} has no abstract")
    return latex_to_markdown(match[1], values)


def title(main_tex: Path) -> str:
    match = re.search(r"\\title\{(.*?)\}\n", main_tex.read_text(), re.S)
    return match[1].replace("\\\\", " ") if match else "amortgap"


def provenance(root: Path) -> dict[str, tuple[str, str]]:
    """Figure folder (relative to paper/figures) -> (notebook stem, stage), from dvc.yaml."""
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    found = {}
    for name, stage in stages.items():
        notebook = re.search(r"notebooks/(\w+)\.py", stage.get("cmd", ""))
        for out in stage.get("outs", []):
            path = next(iter(out)) if isinstance(out, dict) else out
            if notebook and path.startswith("paper/figures/"):
                found[path.removeprefix("paper/figures/")] = (notebook[1], name)
    return found


def chapters(rendered: Path) -> list[str]:
    """The rendered notebooks' stems, in reading order."""
    stems = sorted(p.stem for p in rendered.glob("*.ipynb"))
    if not stems:
        raise FileNotFoundError(f"no rendered notebooks in {rendered}: run the pipeline (make repro) first")
    return stems


def without_default_parameters(notebook: dict) -> dict:
    """The notebook with its cell of default parameters hidden (myst-nb's ``remove-cell`` tag): the
    cell papermill injected after it shows the values the pipeline actually used."""
    for cell in notebook["cells"]:
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if "parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
    return notebook


def landing_page(root: Path, stems: list[str]) -> str:
    main_tex = root / "paper" / "main.tex"
    values = macros(root / "paper" / "generated")
    toc = "\n".join(f"chapters/{stem}" for stem in stems)
    links = "\n".join(f"- [{chapter_label(stem)}](chapters/{stem}.ipynb)" for stem in stems)
    return f"""# {title(main_tex)}

*amortgap contributors* · {{download}}`the paper as a PDF <amortgap.pdf>` · [every figure](figures.md)

{abstract(main_tex, values)}

```{{figure}} figures/{HEADLINE_FIGURE}
:alt: headline figure
:width: 90%

The gaps of jointly trained VAEs by encoder width (95% intervals over seeds and images). Made by
[04_results](chapters/04_results.ipynb) (DVC stage `results`).
```

## Chapters

{links}
- [Figures, each with the notebook that made it](figures.md)
- [Provenance: the models, images and status of every table and figure](provenance.md)
- {{download}}`The paper (PDF) <amortgap.pdf>`

```{{toctree}}
:hidden:
:maxdepth: 1

{toc}
figures
provenance
```
"""


def chapter_label(stem: str) -> str:
    number, _, rest = stem.partition("_")
    kind = CHAPTER_TITLES.get(number[:2], "")
    return f"{number}. {kind}: {rest.replace('_', ' ')}" if kind and kind.lower() != rest.replace("_", " ") else f"{number}. {rest.replace('_', ' ').capitalize()}"


def figures_page(root: Path) -> str:
    """Every PNG under paper/figures with its provenance line."""
    made_by = provenance(root)
    lines = ["# Figures", "", "Every figure of the paper, with the notebook and DVC stage that made it.", ""]
    for folder in sorted(p for p in (root / "paper" / "figures").iterdir() if p.is_dir()):
        notebook, stage = made_by[folder.name]
        for png in sorted(folder.glob("*.png")):
            lines += [f"## {folder.name}/{png.stem}", "", f"```{{figure}} figures/{folder.name}/{png.name}",
                      f":alt: {png.stem.replace('_', ' ')}", ":width: 90%", "",
                      f"Made by [{notebook}](chapters/{notebook}.ipynb) (DVC stage `{stage}`).", "```", ""]
    return "\n".join(lines)


def provenance_page(root: Path) -> str:
    """The paper's provenance table (``paper/generated/provenance.csv``, from ``paper/appendix.py``):
    for every table and figure, its models, images and settings, and whether it is final."""
    table = pd.read_csv(root / "paper" / "generated" / "provenance.csv")
    lines = ["# Provenance", "", "Where every table and figure of the paper comes from: its models, images and",
             "settings, and whether its numbers are final or wait on runs still training.", "",
             "| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(str(v).replace("|", "/") for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def assemble(root: Path, source: Path) -> None:
    """Write the Sphinx source folder ``source`` from the project at ``root``."""
    shutil.rmtree(source, ignore_errors=True)
    (source / "chapters").mkdir(parents=True)
    stems = chapters(root / "notebooks" / "rendered")
    for stem in stems:
        notebook = json.loads((root / "notebooks" / "rendered" / f"{stem}.ipynb").read_text())
        (source / "chapters" / f"{stem}.ipynb").write_text(json.dumps(without_default_parameters(notebook)))
    shutil.copytree(root / "paper" / "figures", source / "figures")
    shutil.copy2(root / "paper" / "main.pdf", source / "amortgap.pdf")
    if not MATHJAX.is_dir():
        raise FileNotFoundError(f"{MATHJAX} is missing: install Debian's libjs-mathjax (make setup does)")
    for part in MATHJAX_PARTS:
        src, dst = MATHJAX / part, source / "_static" / "mathjax" / part
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy2)(src.resolve(), dst)
    shutil.copy2(Path(__file__).with_name("conf.py"), source / "conf.py")
    (source / "index.md").write_text(landing_page(root, stems))
    (source / "figures.md").write_text(figures_page(root))
    (source / "provenance.md").write_text(provenance_page(root))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--out", type=Path, default=Path("build/site"))
    args = parser.parse_args(argv)
    root = args.root.resolve()
    out = args.out if args.out.is_absolute() else root / args.out
    source = out.with_name(out.name + "-src")
    assemble(root, source)
    shutil.rmtree(out, ignore_errors=True)
    return subprocess.call([sys.executable, "-m", "sphinx", "-b", "html", "-q", "-W", "--keep-going",
                            "-d", str(source / "_doctrees"), str(source), str(out)])


if __name__ == "__main__":
    sys.exit(main())
