"""Write ``python.inv``: a small intersphinx inventory of the Python documentation.

The documentation build must work offline, and intersphinx can only fetch the
real inventory (https://docs.python.org/3/objects.inv) over the network.  This
script writes an inventory in the same format (Sphinx inventory version 2)
listing only the standard-library objects these pages and workerbridge's
docstrings refer to, with their locations on docs.python.org, so the links in
the built pages still point there.

Run it again after adding an entry below (the nitpicky build names any
reference it cannot resolve)::

    .venv/bin/python docs/_inv/build_python_inv.py
"""

from __future__ import annotations

import os
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
OUTPUT = os.path.join(HERE, "python.inv")

# (name, domain:role, page relative to https://docs.python.org/3/)
# The anchor is the object's name, except where a third element says otherwise.
_BUILTIN_CLASSES = {
    "bool": "library/functions.html",
    "bytearray": "library/stdtypes.html",
    "bytes": "library/stdtypes.html",
    "dict": "library/stdtypes.html",
    "float": "library/functions.html",
    "frozenset": "library/stdtypes.html",
    "int": "library/functions.html",
    "list": "library/stdtypes.html",
    "memoryview": "library/stdtypes.html",
    "object": "library/functions.html",
    "set": "library/stdtypes.html",
    "str": "library/stdtypes.html",
    "tuple": "library/stdtypes.html",
    "type": "library/functions.html",
}

_EXCEPTIONS = [
    "BaseException",
    "BufferError",
    "Exception",
    "FileNotFoundError",
    "ImportError",
    "KeyboardInterrupt",
    "OSError",
    "OverflowError",
    "SystemExit",
    "TimeoutError",
    "TypeError",
    "ValueError",
]

_CF = "library/concurrent.futures.html"
_ASYNCIO_TASK = "library/asyncio-task.html"

ENTRIES: list[tuple[str, str, str]] = [
    *((name, "py:class", page) for name, page in _BUILTIN_CLASSES.items()),
    *((name, "py:exception", "library/exceptions.html") for name in _EXCEPTIONS),
    ("None", "py:data", "library/constants.html"),
    # concurrent.futures
    ("concurrent.futures", "py:module", _CF),
    ("concurrent.futures.Executor", "py:class", _CF),
    ("concurrent.futures.Executor.map", "py:method", _CF),
    ("concurrent.futures.Executor.shutdown", "py:method", _CF),
    ("concurrent.futures.Executor.submit", "py:method", _CF),
    ("concurrent.futures.ProcessPoolExecutor", "py:class", _CF),
    ("concurrent.futures.Future", "py:class", _CF),
    ("concurrent.futures.Future.add_done_callback", "py:method", _CF),
    ("concurrent.futures.Future.cancel", "py:method", _CF),
    ("concurrent.futures.Future.cancelled", "py:method", _CF),
    ("concurrent.futures.Future.done", "py:method", _CF),
    ("concurrent.futures.Future.exception", "py:method", _CF),
    ("concurrent.futures.Future.result", "py:method", _CF),
    ("concurrent.futures.Future.running", "py:method", _CF),
    ("concurrent.futures.CancelledError", "py:exception", _CF),
    ("concurrent.futures.TimeoutError", "py:exception", _CF),
    ("concurrent.futures.process.BrokenProcessPool", "py:exception", _CF),
    ("concurrent.futures.as_completed", "py:function", _CF),
    ("concurrent.futures.wait", "py:function", _CF),
    # asyncio
    ("asyncio", "py:module", "library/asyncio.html"),
    ("asyncio.CancelledError", "py:exception", "library/asyncio-exceptions.html"),
    ("asyncio.Future", "py:class", "library/asyncio-future.html"),
    ("asyncio.Task", "py:class", _ASYNCIO_TASK),
    ("asyncio.Task.cancel", "py:method", _ASYNCIO_TASK),
    ("asyncio.gather", "py:function", _ASYNCIO_TASK),
    ("asyncio.run", "py:function", "library/asyncio-runner.html"),
    ("asyncio.timeout", "py:function", _ASYNCIO_TASK),
    # os, sys, multiprocessing, pickle
    ("os.cpu_count", "py:function", "library/os.html"),
    ("os.fork", "py:function", "library/os.html"),
    ("sys.path", "py:data", "library/sys.html"),
    ("multiprocessing", "py:module", "library/multiprocessing.html"),
    (
        "multiprocessing.shared_memory",
        "py:module",
        "library/multiprocessing.shared_memory.html",
    ),
    ("pickle", "py:module", "library/pickle.html"),
    # typing and collections.abc (they appear in rendered signatures)
    ("collections.abc.Callable", "py:class", "library/collections.abc.html"),
    ("collections.abc.Generator", "py:class", "library/collections.abc.html"),
    ("collections.abc.Iterable", "py:class", "library/collections.abc.html"),
    ("collections.abc.Iterator", "py:class", "library/collections.abc.html"),
    ("collections.abc.Mapping", "py:class", "library/collections.abc.html"),
    ("collections.abc.Sequence", "py:class", "library/collections.abc.html"),
    ("collections.abc.Awaitable", "py:class", "library/collections.abc.html"),
    ("os.PathLike", "py:class", "library/os.html"),
    ("ModuleNotFoundError", "py:exception", "library/exceptions.html"),
    ("sys.stderr", "py:data", "library/sys.html"),
    ("types.TracebackType", "py:class", "library/types.html"),
    ("typing.Any", "py:data", "library/typing.html"),
    ("typing.Literal", "py:data", "library/typing.html"),
    ("typing.Self", "py:data", "library/typing.html"),
]


def _anchor(name: str, role: str) -> str:
    if role == "py:module":
        return "module-" + name
    return name


def render() -> bytes:
    """Return the inventory file's bytes."""
    header = (
        "# Sphinx inventory version 2\n"
        "# Project: Python\n"
        "# Version: 3\n"
        "# The remainder of this file is compressed using zlib.\n"
    ).encode()
    lines = []
    for name, role, page in sorted(set(ENTRIES)):
        anchor = _anchor(name, role)
        uri = f"{page}#{anchor}"
        if anchor == name:
            uri = f"{page}#$"  # "$" stands for the name, as in real inventories
        lines.append(f"{name} {role} 1 {uri} -\n")
    return header + zlib.compress("".join(lines).encode(), 9)


def main() -> None:
    data = render()
    with open(OUTPUT, "wb") as f:
        f.write(data)
    print(f"wrote {OUTPUT} ({len(set(ENTRIES))} entries)")


if __name__ == "__main__":
    main()
