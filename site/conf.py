"""Sphinx configuration of the amortgap site: the rendered notebooks and the paper, offline.

`python site/build.py` copies this file into the assembled source folder (build/site-src) and runs
Sphinx there. The notebooks are shown as executed by the pipeline (myst-nb never runs them), and
math is typeset by a MathJax copied from Debian's libjs-mathjax into the site, so a reader needs no
internet: nothing is loaded from a CDN.
"""

project = "amortgap"
author = "amortgap contributors"
copyright = "amortgap contributors"
extensions = ["myst_nb", "sphinx.ext.mathjax"]
exclude_patterns = ["_build"]
nb_execution_mode = "off"  # the notebooks were executed by the DVC pipeline; never run them again
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
suppress_warnings = ["mystnb.unknown_mime_type", "myst.header"]
html_theme = "sphinx_book_theme"
html_title = "amortgap"
html_static_path = ["_static"]
html_theme_options = {"repository_url": "", "use_download_button": False, "show_toc_level": 2}
html_last_updated_fmt = None
mathjax_path = "mathjax/MathJax.js?config=TeX-AMS_CHTML"
mathjax3_config = None
# myst-nb marks each notebook "tex2jax_ignore" and its math spans "math": MathJax 2 typesets only those
mathjax2_config = {"messageStyle": "none",
                   "tex2jax": {"processClass": "tex2jax_process|mathjax_process|math|output_area",
                               "ignoreClass": "tex2jax_ignore|mathjax_ignore"}}


def setup(app):
    # MathJax on every page, not only on pages with formulas of their own: the sidebar shows chapter
    # titles with math (such as "is our log p(x) trustworthy?") on every page.
    app.set_html_assets_policy("always")
