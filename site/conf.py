"""Sphinx configuration of the course site (``make site``; cellutils.site copies this file into
build/site-src/ beside the gathered pages). MyST-NB renders the executed notebooks as they are."""

from cellutils.site import mermaid_directive

project = "cellpaint-course"
author = "cellpaint-course contributors"
copyright = "cellpaint-course contributors; prose and figures CC BY 4.0, code MIT"
root_doc = "docs/start"
extensions = ["myst_nb"]
exclude_patterns = ["_build", "**/.ipynb_checkpoints"]

# the notebooks are shown with the outputs of the run they come from, never re-executed
nb_execution_mode = "off"
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3  # [text](#a-heading) and [text](page.md#a-heading) resolve

html_theme = "sphinx_book_theme"
html_title = "cellpaint-course"
html_theme_options = {"show_toc_level": 2}
html_show_sourcelink = False


def setup(app):
    # the learning path in docs/start.md: a mermaid flowchart drawn offline as an SVG
    app.add_directive("mermaid", mermaid_directive())
