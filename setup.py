"""Build script: the optional C extensions (shared-memory atomics, the round trip's hot path).

The extensions are optional: where no C compiler is available the package still
installs and uses the pure-Python fallbacks (``workerbridge._atomics_py``, and
the Python paths of ``workerbridge._spin`` and ``workerbridge._protocol``).
"""

from __future__ import annotations

import sys

from setuptools import Extension, setup

ext_modules = []
if sys.platform.startswith("linux"):
    for name in ("_atomics", "_fast"):
        ext_modules.append(
            Extension(
                f"workerbridge.{name}",
                sources=[f"src/workerbridge/{name}.c"],
                extra_compile_args=["-O2", "-std=c11", "-Wall"],
                optional=True,
            )
        )

setup(ext_modules=ext_modules)
