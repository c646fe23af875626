"""Sphinx configuration of the AlignSAM-Gym documentation (``make docs`` builds docs/_build/html)."""

import re
from importlib.metadata import version as _version
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import Directive, directives
from docutils.statemachine import StringList

project = "AlignSAM-Gym"
author = "AlignSAM-Gym contributors"
copyright = "2026, AlignSAM-Gym contributors"
release = _version("alignsam-gym")

# No intersphinx: the build must not reach the network.
extensions = ["sphinx.ext.autodoc", "sphinx.ext.viewcode"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}

html_theme = "furo"
html_title = f"AlignSAM-Gym {release}"
exclude_patterns = ["_build"]


# --- Results rendered from the committed result files, and the env docstring's sections as headings ---------------

_BULLET = re.compile(r"^([-+*•]|\d+\.)( |$)")


def _inline(text: str) -> str:
    """Markdown inline code as reStructuredText; outside code an ``@`` is escaped (``NoC@90`` is no e-mail address)
    and a leading list marker too, so a cell stays text."""
    parts = re.split(r"(`[^`]+`)", text)
    text = "".join(f"`{part}`" if part.startswith("`") else part.replace("@", "\\@") for part in parts)
    return "\\" + text if _BULLET.match(text) else text


def markdown_to_rst(markdown: str) -> list[str]:
    """The Markdown that ``policies.benchmarks.tables.render_results`` writes (paragraphs and pipe tables) as
    reStructuredText lines: every pipe table becomes a ``list-table``, so the page shows real HTML tables."""
    lines: list[str] = []
    rows: list[list[str]] = []
    for line in [*markdown.splitlines(), ""]:
        if line.startswith("|"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if not (len(rows) == 1 and all(re.fullmatch(r":?-+:?", cell) for cell in cells)):  # under the header
                rows.append(cells)
            continue
        if rows:
            lines += ["", ".. list-table::", "   :header-rows: 1", ""]
            for row in rows:
                lines += [f"   {'*' if i == 0 else ' '} - {_inline(cell)}" for i, cell in enumerate(row)]
            lines.append("")
            rows = []
        lines.append(_inline(line))
    return lines


class ResultsDirective(Directive):
    """``.. results:: ../experiments/results/NAME/results.json`` with ``:plots: a.png b.png`` (and ``:view: summary``
    for a large grid): the tables that ``alignsam tables`` renders into the README, rendered from the same file at
    build time, then the plots."""

    required_arguments = 1
    option_spec = {"plots": directives.unchanged, "view": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        from policies.benchmarks.tables import render_results

        env = self.state.document.settings.env
        _, absolute = env.relfn2path(self.arguments[0])
        env.note_dependency(absolute)
        lines = markdown_to_rst(render_results(absolute, self.options.get("view", "full")))
        folder = Path(self.arguments[0]).parent
        for plot in (self.options.get("plots") or "").split():
            lines += ["", f".. image:: {folder / 'plots' / plot}", "   :width: 100%", f"   :alt: {plot}", ""]
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source=absolute), self.content_offset, container)
        return container.children


def _sections_as_rubrics(app, what, name, obj, options, lines: list[str]) -> None:
    """Gymnasium-style ``## Section`` lines of a docstring become headings (rubrics) instead of literal text."""
    converted: list[str] = []
    for line in lines:
        match = re.match(r"^#{1,6} (.+?)\s*$", line)  # at the margin: an indented "#" is a code comment
        if match:
            converted += ([""] if converted and converted[-1].strip() else []) + [f".. rubric:: {match.group(1)}", ""]
        else:
            converted.append(line)
    lines[:] = converted


def setup(app) -> dict[str, bool]:
    app.add_directive("results", ResultsDirective)
    app.connect("autodoc-process-docstring", _sections_as_rubrics)
    return {"parallel_read_safe": True}
