"""Sphinx configuration of the AlignSAM-Gym documentation (``make docs`` builds docs/_build/html)."""

from importlib.metadata import version as _version

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
