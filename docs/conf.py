"""Sphinx configuration for the workerbridge documentation.

Two builds run in ``make test``, both with warnings as errors:

* ``python -m sphinx -W --keep-going -n -q -b html docs docs/_build/html``
* ``python -m sphinx -W -n -q -b doctest docs docs/_build/doctest`` (every
  ``>>>`` example on every page, and in the docstrings shown by the API
  reference, is executed)

The build needs no network: intersphinx reads the Python inventory from
``_inv/python.inv`` (written by ``_inv/build_python_inv.py``), while the links
it makes still point at docs.python.org.
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# Modules the examples import by name (custom handlers must be importable in
# every worker, which inherits this sys.path).
sys.path.insert(0, os.path.join(HERE, "_snippets"))

import workerbridge  # noqa: E402

project = "workerbridge"
author = "workerbridge developers"
copyright = "2025, workerbridge developers"  # noqa: A001
release = workerbridge.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "sphinx.ext.doctest",
    "sphinx_copybutton",
]

exclude_patterns = ["_build", "_inv", "_snippets"]
default_role = "py:obj"
nitpicky = True
primary_domain = "py"
highlight_language = "python3"

# -- HTML ------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"workerbridge {release}"
html_static_path: list[str] = []

# -- autodoc and napoleon ----------------------------------------------------------------
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_typehints_format = "short"
autodoc_member_order = "bysource"
autodoc_class_signature = "separated"
autodoc_default_options = {"show-inheritance": True}
autodoc_preserve_defaults = True
python_use_unqualified_type_names = True

napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_use_ivar = False
napoleon_preprocess_types = True

# -- intersphinx, offline ----------------------------------------------------------------
intersphinx_mapping = {
    "python": ("https://docs.python.org/3", os.path.join("_inv", "python.inv")),
}

# -- nitpicky: names that cannot be resolved, each with its reason -------------------------
nitpick_ignore: list[tuple[str, str]] = []

# -- doctest -----------------------------------------------------------------------------
doctest_global_setup = """
import workerbridge as wb
from workerbridge import CancellationToken, SharedCounter, SharedProgress
"""

# Every document must leave no bridge behind: a bridge's supervisor thread lives
# until close() returns, so a leftover thread means a doctest forgot to close one.
doctest_global_cleanup = """
import threading as _threading
_left = sorted(t.name for t in _threading.enumerate() if t.name.startswith("workerbridge-"))
assert not _left, f"a doctest left a bridge open: {_left}"
"""

# -- copybutton: copy code without prompts or output -------------------------------------
copybutton_prompt_text = r">>> |\.\.\. |\$ "
copybutton_prompt_is_regexp = True
copybutton_only_copy_prompt_lines = True
