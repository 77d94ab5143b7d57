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

import doctest
import os
import sys

from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util import logging as sphinx_logging

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
nitpicky = True
primary_domain = "py"
# Diagrams and plain literal blocks are text; code says its language.
highlight_language = "none"

# -- HTML ------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"workerbridge {release}"
html_static_path: list[str] = []

# -- autodoc and napoleon ----------------------------------------------------------------
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_typehints_format = "short"
autodoc_member_order = "bysource"
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
nitpick_ignore: list[tuple[str, str]] = [
    # Private type variables of generic signatures (Task[T], Executor.submit ->
    # Task[T], the handler decorator's F).  They are not public objects and have
    # no page to link to.
    ("py:class", "workerbridge._task.T"),
    ("py:obj", "workerbridge._task.T"),
    ("py:class", "workerbridge._executor.T"),
    ("py:class", "workerbridge._registry.F"),
    # Private Literal aliases in WorkerBridge's signature (strategy=, fallback=);
    # the parameter descriptions list their values.
    ("py:class", "Strategy"),
    ("py:class", "Fallback"),
]

# -- doctest -----------------------------------------------------------------------------
# Compare exception messages too (Sphinx ignores them by default).
doctest_default_flags = doctest.ELLIPSIS | doctest.DONT_ACCEPT_TRUE_FOR_1

doctest_global_setup = """
import logging
import workerbridge as wb
from workerbridge import CancellationToken, SharedCounter, SharedProgress

# Examples that crash or kill workers on purpose would otherwise print the
# library's warnings through logging's last-resort handler.
logging.getLogger("workerbridge").addHandler(logging.NullHandler())
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


# -- hooks -------------------------------------------------------------------------------


def _public_bases(
    app: Sphinx, name: str, obj: object, options: object, bases: list[object]
) -> None:
    """Show public names for base classes (where ``:show-inheritance:`` is on).

    The standard library defines ``concurrent.futures.Future`` and its
    relatives in the private module ``concurrent.futures._base``: show their
    documented names.  Leave out ``Generic[T]``, which says nothing to a reader.
    """
    for i, base in reversed(list(enumerate(bases))):
        module = getattr(base, "__module__", "")
        qualname = getattr(base, "__qualname__", "")
        if module == "concurrent.futures._base":
            bases[i] = f":py:class:`concurrent.futures.{qualname}`"
        elif module == "typing":
            del bases[i]


def _check_all_documented(app: Sphinx, env: BuildEnvironment) -> None:
    """Warn (an error under ``-W``) if a name in ``workerbridge.__all__`` has no entry."""
    objects = env.get_domain("py").objects  # type: ignore[attr-defined]
    missing = [n for n in workerbridge.__all__ if f"workerbridge.{n}" not in objects]
    if missing:
        sphinx_logging.getLogger(__name__).warning(
            "names in workerbridge.__all__ missing from the API reference (api.rst): %s",
            ", ".join(missing),
        )


def setup(app: Sphinx) -> None:
    app.connect("autodoc-process-bases", _public_bases)
    app.connect("env-check-consistency", _check_all_documented)
