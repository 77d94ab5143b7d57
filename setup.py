"""Build script: the optional C extension for shared-memory atomics.

The extension is optional: where no C compiler is available the package still
installs and uses the pure-Python fallback (``workerbridge._atomics_py``).
"""

from __future__ import annotations

import sys

from setuptools import Extension, setup

ext_modules = []
if sys.platform.startswith("linux"):
    ext_modules.append(
        Extension(
            "workerbridge._atomics",
            sources=["src/workerbridge/_atomics.c"],
            extra_compile_args=["-O2", "-std=c11", "-Wall"],
            optional=True,
        )
    )

setup(ext_modules=ext_modules)
